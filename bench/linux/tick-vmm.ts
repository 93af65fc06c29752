// One VMM process (tsvmm or QEMU) running the ticking Linux guest: spawned with a QMP socket, its stdout (the
// guest's debug console bytes) stamped chunk by chunk on the CLOCK_REALTIME axis as the chunks arrive here.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { realtimeUs } from '../cpr-pause/clock.js';
import type { Qmp } from '../cpr-pause/qmp.js';
import { connectQmp } from '../cpr-pause/vmm.js';

export class TickVmm {
  readonly qmpPath: string;
  /** The guest's serial console (the kernel's log), one file per process: a failure report shows its end. */
  readonly serialPath: string;
  readonly child: ChildProcess;
  readonly spawnUs: number;
  exitUs: number | null = null;
  status: number | null = null;
  stderr = '';
  qmp: Qmp | null = null;
  readonly exited: Promise<number | null>;
  /** Ticks (bytes) received, and the arrival of the first and the last chunk, with their first/last byte. */
  ticks = 0;
  firstUs: number | null = null;
  firstByte: number | null = null;
  lastUs: number | null = null;
  lastByte: number | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    dir: string,
    argv: (qmpPath: string, serialPath: string) => string[],
  ) {
    this.qmpPath = join(dir, `${name}.qmp`);
    this.serialPath = join(dir, `${name}.serial`);
    const full = argv(this.qmpPath, this.serialPath);
    this.spawnUs = realtimeUs();
    this.child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => {
      const at = realtimeUs();
      if (d.length === 0) return;
      if (this.firstUs === null) {
        this.firstUs = at;
        this.firstByte = d[0];
      }
      this.lastUs = at;
      this.lastByte = d[d.length - 1];
      this.ticks += d.length;
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code) => {
        this.exitUs = realtimeUs();
        this.status = code;
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      });
      this.child.on('error', (e) => {
        this.exitUs ??= realtimeUs();
        this.stderr += `spawn failed: ${e.message}\n`;
        resolve(null);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.exitUs === null;
  }

  failure(): string | null {
    if (this.running) return null;
    const serial = existsSync(this.serialPath) ? readFileSync(this.serialPath, 'latin1') : null;
    return (
      `${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) after ${(((this.exitUs ?? realtimeUs()) - this.spawnUs) / 1e6).toFixed(1)} s, ` +
      `${this.ticks} ticks; stderr: ${this.stderr.trim() || '(none)'}\n` +
      (serial === null
        ? 'no serial console file'
        : `--- its serial console (${serial.length} bytes, end) ---\n${serial.slice(-3000)}`)
    );
  }

  /** Resolves once `n` ticks have arrived from this process; rejects if it ends first or after `timeoutMs`. */
  async waitTicks(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.ticks < n) {
      const why = this.failure();
      if (why) throw new Error(`waiting for ${n} ticks (have ${this.ticks}): ${why}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: ${this.ticks} of ${n} ticks within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async connect(timeoutMs: number): Promise<Qmp> {
    this.qmp ??= await connectQmp(this.qmpPath, timeoutMs, () => this.failure());
    return this.qmp;
  }

  async kill(): Promise<void> {
    this.qmp?.close();
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}
