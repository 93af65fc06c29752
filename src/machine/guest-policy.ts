// What the guest's requests and the threads' failures do to the machine, as the command line chose: a reset reboots
// or (-no-reboot) ends tsvmm; a power-off ends it or (-no-shutdown) stops the VM; a panic follows -action panic=;
// a failure ends tsvmm with the status that names it (README, "Exit status").
import type { MachineConfig } from './config.js';
import type { MachineEvent } from './events.js';
import { ExitStatus } from '../util/exit-status.js';
import type { ThreadReport } from './threads.js';

type Failure = Extract<ThreadReport, { type: 'failure' }>;

/** What the policy may do to the machine. */
export interface PolicyActions {
  /** End tsvmm with `status`; the guest caused it (QMP SHUTDOWN with guest: true and `reason`). */
  end(status: number, reason: 'guest-shutdown' | 'guest-reset' | 'guest-panic'): void;
  reset(reason: string): Promise<void>;
  suspend(): Promise<void>;
  /** Park everything and report `state` until QMP resets or quits the VM. */
  stop(state: 'shutdown' | 'guest-panicked'): Promise<void>;
  /** Log `message` and end tsvmm with `status`. */
  fail(status: number, message: string): void;
  /** Record the internal-error run state (before fail()). */
  internalError(): void;
  /** The vCPUs go on (they parked when one of them reported the request), if the VM is running. */
  goOn(): void;
  emit(event: MachineEvent): void;
  log(line: string): void;
}

const failureStatus: Record<Failure['kind'], number> = {
  'internal-error': ExitStatus.kvmInternalError,
  'fail-entry': ExitStatus.failEntry,
  'triple-fault': ExitStatus.tripleFault,
  'unexpected-exit': ExitStatus.kvmInternalError,
  'vmm-error': ExitStatus.internalError,
};

export class GuestPolicy {
  constructor(
    private readonly config: Pick<MachineConfig, 'noReboot' | 'noShutdown' | 'panicAction'>,
    private readonly act: PolicyActions,
  ) {}

  /** One event from a vCPU, the I/O thread or a main-thread device. */
  handle(event: Exclude<ThreadReport, { type: 'crash' }>): void {
    switch (event.type) {
      case 'exit':
        // pvpanic's status (126) is even, so no isa-debug-exit write can give it: it is the guest panicking.
        if (event.status === ExitStatus.guestPanic) this.panicked(event.reason);
        else this.act.end(event.status & 0xff, 'guest-shutdown');
        break;
      case 'power-off':
        this.shutdown('guest-shutdown', ExitStatus.ok);
        break;
      case 'suspend':
        this.inBackground(this.act.suspend(), 'suspend');
        break;
      case 'reset':
        if (this.config.noReboot) this.act.end(ExitStatus.ok, 'guest-reset');
        else this.inBackground(this.act.reset(event.reason), 'reset');
        break;
      case 'failure':
        if (event.kind === 'triple-fault' && !this.config.noReboot) {
          this.act.log(event.report.replace(/^tsvmm: /, ''));
          this.inBackground(this.act.reset('triple fault'), 'reset');
          break;
        }
        this.act.internalError();
        this.act.fail(failureStatus[event.kind], event.report.replace(/^tsvmm: /, ''));
        break;
    }
  }

  /**
   * The guest powered off (or panicked with -action panic=shutdown): tsvmm ends with `status`, or with -no-shutdown
   * the VM stops in run state `shutdown` (SHUTDOWN, then STOP, as QEMU sends them) until QMP resets or quits it.
   */
  private shutdown(reason: 'guest-shutdown' | 'guest-panic', status: number): void {
    if (!this.config.noShutdown) {
      this.act.end(status, reason);
      return;
    }
    this.act.emit({ event: 'SHUTDOWN', data: { guest: true, reason } });
    this.inBackground(this.act.stop('shutdown'), "stopping after the guest's shutdown");
  }

  /**
   * The guest reported a panic (pvpanic): one notice, QMP's GUEST_PANICKED, then what -action panic= says — end with
   * 126 (default; QEMU's exit-failure exits 1), power off, stop in `guest-panicked`, or nothing.
   */
  private panicked(notice: string): void {
    this.act.log(notice);
    switch (this.config.panicAction ?? 'exit-failure') {
      case 'exit-failure':
        this.act.emit({ event: 'GUEST_PANICKED', data: { action: 'poweroff' } });
        this.act.end(ExitStatus.guestPanic, 'guest-panic');
        break;
      case 'shutdown':
        this.act.emit({ event: 'GUEST_PANICKED', data: { action: 'poweroff' } });
        this.shutdown('guest-panic', ExitStatus.ok);
        break;
      case 'pause':
        this.act.emit({ event: 'GUEST_PANICKED', data: { action: 'pause' } });
        this.inBackground(this.act.stop('guest-panicked'), 'stopping the panicked guest');
        break;
      case 'none':
        this.act.emit({ event: 'GUEST_PANICKED', data: { action: 'run' } });
        this.act.goOn();
        break;
    }
  }

  /** Work the event handler does not wait for; its failure ends tsvmm as an internal error. */
  private inBackground(work: Promise<void>, what: string): void {
    void work.catch((e) => this.act.fail(ExitStatus.internalError, `${what} failed: ${e.stack ?? e}`));
  }
}
