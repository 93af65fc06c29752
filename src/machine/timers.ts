// The main thread's clock work: device timers (the RTC's periodic and alarm interrupts, the UART's FIFO timeout)
// polled when due and whenever a thread rings the doorbell to say they changed, and the --timeout that ends a guest
// that does not finish.
import type { MachineLock } from '../sync/lock.js';
import type { MachineDevice } from '../runtime/device-table.js';
import { Doorbell } from '../runtime/doorbell.js';

export class MachineTimers {
  private started = false;
  private stopped = false;
  private poll: NodeJS.Timeout | null = null;
  private timeout: NodeJS.Timeout | null = null;

  constructor(
    private readonly devices: readonly MachineDevice[],
    private readonly lock: MachineLock,
    private readonly doorbell: Doorbell,
    private readonly log: (line: string) => void,
  ) {}

  /** Starts polling; with `timeoutMs` (--timeout), says so and runs `expire` once that much time has passed. */
  start(timeoutMs: number | null, expire: () => void): void {
    this.started = true;
    void this.serveDoorbell();
    this.schedule();
    if (timeoutMs === null) return;
    this.timeout = setTimeout(() => {
      this.log(`timeout: the guest did not finish within ${timeoutMs / 1000} s`);
      expire();
    }, timeoutMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timeout) clearTimeout(this.timeout);
    if (this.poll) clearTimeout(this.poll);
  }

  /** Runs what is due on every device with timers and sleeps until the earliest next deadline. */
  schedule(): void {
    if (this.stopped || !this.started) return;
    if (this.poll) clearTimeout(this.poll);
    this.poll = null;
    let next: number | null = null;
    this.lock.with(() => {
      for (const d of this.devices) {
        const ms = d.pollTimers?.() ?? null;
        if (ms !== null && (next === null || ms < next)) next = ms;
      }
    });
    if (next !== null) this.poll = setTimeout(() => this.schedule(), Math.max(0, Math.ceil(next)));
  }

  private async serveDoorbell(): Promise<void> {
    while (!this.stopped) {
      const bits = await this.doorbell.wait();
      if (this.stopped) return;
      if (bits & Doorbell.TIMERS) this.schedule();
    }
  }
}
