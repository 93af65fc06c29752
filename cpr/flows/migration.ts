// QEMU's migration state machine, as far as CPR needs it: the parameters and capabilities a client sets, the
// outgoing `migrate` and incoming `migrate-incoming`/-incoming, the status query-migrate reports and the
// MIGRATION events. Both command spellings end up in cpr/flows/reboot.ts (and, for mode cpr-transfer,
// cpr/flows/transfer.ts; for mode cpr-exec, cpr/flows/exec.ts).
import type { Machine } from '../../src/machine/machine.js';
import { CheckpointError } from '../file/checkpoint-file.js';
import {
  saveToFile,
  loadFromFile,
  warmUpFileIo,
  checkNoPassthrough,
  CprError,
  type RamPolicy,
  type LoadReport,
} from './reboot.js';
import { tmpdir } from 'node:os';
import { SnapshotScratch, warmUpRestore, captureSections, WARM_UP_ROUNDS } from './snapshot.js';
import { PhaseClock, nowUs, pauseUs, type PhaseMark } from './timings.js';
import { maxCheckpointBytes, receiveToFile, releaseEnd, saveToStream } from './stream-reboot.js';
import { StreamCancelled, type StreamEnd } from './stream-transport.js';
import type { SaveReport } from './reboot.js';

export type MigMode = 'normal' | 'cpr-reboot' | 'cpr-transfer' | 'cpr-exec';
export type MigrationStatus = 'none' | 'setup' | 'active' | 'completed' | 'failed' | 'cancelled';

/** What query-migrate answers (QEMU's MigrationInfo, the members that mean something here). */
export interface MigrationReport {
  status?: MigrationStatus;
  'total-time'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: { transferred: number; total: number; remaining: number };
}

export class MigrationController {
  mode: MigMode = 'normal';
  readonly capabilities = new Map<string, boolean>();
  /** Parameters a client set that tsvmm accepts without acting on them (reported back by query-migrate-parameters). */
  readonly parameters: Record<string, unknown> = {};
  /** QEMU 10.2's cpr-exec-command: the new image's argv (argv[0] an absolute path), [] until set. */
  cprExecCommand: string[] = [];
  /**
   * This image was exec'd by cpr-exec: guest RAM came over the exec (the checkpoint has none) and the old image's
   * marks with it. Applies to the one incoming load that follows.
   */
  inherited: { marks: PhaseMark[] } | undefined;
  private status: MigrationStatus = 'none';
  private startedUs = 0;
  private endedUs = 0;
  private errorDesc: string | undefined;
  private bytes = 0;
  /** Phase marks of the last save or load (both processes' for a load). */
  marks: PhaseMark[] = [];
  readonly scratch = new SnapshotScratch();
  /** Gives up the stream of the fd:/exec: migration in progress (migrate_cancel). */
  private streamAbort: AbortController | undefined;

  constructor(
    private readonly machine: Machine,
    private readonly emit: (status: MigrationStatus) => void,
  ) {}

  get active(): boolean {
    return this.status === 'setup' || this.status === 'active';
  }

  private set(status: MigrationStatus): void {
    this.status = status;
    this.emit(status);
  }

  /** RAM goes into the file unless x-ignore-shared says shared RAM stays where it is (QEMU's cpr-reboot recipe). */
  private ramPolicy(): RamPolicy {
    return this.capabilities.get('x-ignore-shared') ? 'skip-shared' : 'always';
  }

  /**
   * Outgoing migration to a file (`migrate {uri: "file:…"}`): returns once it has started, as QEMU's migrate does;
   * completion is seen through query-migrate and the MIGRATION events. `policy` overrides the capability rule
   * (cpr-save always keeps persistent shared RAM out of the file).
   */
  startOutgoing(path: string, policy: RamPolicy = this.ramPolicy()): Promise<void> {
    this.checkOutgoing('a file: URI');
    return this.runOutgoing(() => saveToFile(this.machine, path, policy, this.scratch));
  }

  /**
   * Outgoing migration into a stream (`migrate {uri: "fd:NAME"}` or `"exec:COMMAND"`), started as startOutgoing;
   * the fd of an fd: end is the controller's from here on (closed when done or refused).
   */
  startOutgoingStream(to: StreamEnd): Promise<void> {
    try {
      this.checkOutgoing(`an ${to.kind}: URI`);
    } catch (e) {
      releaseEnd(to);
      throw e;
    }
    const abort = new AbortController();
    this.streamAbort = abort;
    return this.runOutgoing(() =>
      saveToStream(this.machine, to, this.ramPolicy(), this.scratch, abort.signal).finally(() => {
        this.streamAbort = undefined;
      }),
    );
  }

  /**
   * QMP migrate_cancel: an fd:/exec: migration in progress gives up its stream at once (a command is killed), and
   * ends `cancelled` with the guest running on (outgoing) or still waiting (incoming). A file save or load is not
   * cancellable half-way; nothing happens then, as nothing happens when no migration runs.
   */
  cancel(): void {
    this.streamAbort?.abort();
  }

  /** What refuses a reboot-mode save at once, before the migration starts. */
  private checkOutgoing(what: string): void {
    if (this.active) throw new CprError('a migration is already in progress');
    if (this.mode === 'cpr-transfer')
      throw new CprError(`mode cpr-transfer needs migrate with a cpr channel, not ${what}`);
    if (this.mode === 'cpr-exec') throw new CprError('mode cpr-exec saves through cpr/flows/exec.ts');
    checkNoPassthrough(this.machine.parts(), this.machine.runState); // refused by migrate itself, as QEMU's blockers are
  }

  private runOutgoing(save: () => Promise<SaveReport>): Promise<void> {
    this.begin();
    return save().then(
      (report) => {
        this.marks = report.marks;
        this.bytes = report.bytes;
        this.end();
      },
      (e: Error) => {
        this.end(e);
        throw e;
      },
    );
  }

  /**
   * Incoming migration from a stream (fd:/exec:): received into a private file, then loaded as incomingFromFile
   * does. Settles when the load is done; the fd of an fd: end is the controller's from here on.
   */
  async incomingFromStream(from: StreamEnd, clock: PhaseClock, stayPaused: boolean): Promise<LoadReport> {
    if (this.active) {
      releaseEnd(from);
      throw new CprError('a migration is already in progress');
    }
    this.begin();
    const abort = new AbortController();
    this.streamAbort = abort;
    try {
      const report = await receiveToFile(
        from,
        maxCheckpointBytes(this.machine),
        (path) => this.load(path, clock, stayPaused),
        (receive) => clock.timeAsync('receive', receive),
        abort.signal,
      );
      this.end();
      return report;
    } catch (e) {
      this.end(e as Error);
      throw e;
    } finally {
      this.streamAbort = undefined;
    }
  }

  private load(path: string, clock: PhaseClock, stayPaused: boolean): LoadReport {
    const report = loadFromFile(this.machine, path, clock, {
      stayPaused,
      scratch: this.scratch,
      inherited: this.inherited,
    });
    this.inherited = undefined;
    this.marks = report.marks;
    return report;
  }

  /** Incoming migration from a file: verify, restore, and resume the guest if it was running (unless `stayPaused`). */
  incomingFromFile(path: string, clock: PhaseClock, stayPaused: boolean): LoadReport {
    if (this.active) throw new CprError('a migration is already in progress');
    this.begin();
    try {
      const report = this.load(path, clock, stayPaused);
      this.end();
      return report;
    } catch (e) {
      this.end(e as Error);
      throw e;
    }
  }

  /**
   * In a VM that waits for incoming state (-S / -incoming defer): run the restore path on its own power-on state
   * until V8 has compiled it, so the real load later runs fast code. Round by round, yielding in between, and it
   * stops as soon as a load begins: a load that arrives early must not wait for the warm-up.
   */
  async warmUpIncoming(clock: PhaseClock): Promise<void> {
    const parts = this.machine.parts();
    const startUs = nowUs();
    const stillWaiting = () =>
      !this.active &&
      this.status === 'none' &&
      (this.machine.runState === 'inmigrate' || this.machine.runState === 'prelaunch');
    // Never rejects: the caller starts it and goes on (src/cli/main.ts), so a throw here would be an unhandled
    // rejection ending tsvmm; a warm-up that fails only leaves the real restore slower.
    try {
      for (let i = 0; i < WARM_UP_ROUNDS && stillWaiting(); i++) {
        warmUpRestore(parts, this.scratch, new PhaseClock('new'));
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (stillWaiting()) warmUpFileIo(tmpdir(), captureSections(parts, 'paused', this.scratch, new PhaseClock('new')));
    } catch {
      // nothing to undo: a warm-up round restores the very state it has just captured
    }
    clock.mark('warm-up', startUs, nowUs());
  }

  /** A migration starts: `setup`, then `active` (QEMU's MIGRATION events for both). */
  private begin(): void {
    this.startedUs = nowUs();
    this.errorDesc = undefined;
    this.set('setup');
    this.set('active');
  }

  /** It ended: `completed`, or with `error` `failed` (`cancelled` when migrate_cancel stopped it). */
  private end(error?: Error): void {
    this.endedUs = nowUs();
    if (error) this.errorDesc = error.message;
    this.set(error === undefined ? 'completed' : error instanceof StreamCancelled ? 'cancelled' : 'failed');
  }

  /** Records a finished transfer- or exec-mode migration (cpr/flows/transfer.ts, exec.ts run them). */
  recordTransfer(marks: PhaseMark[], ok: boolean, error?: string): void {
    this.marks = marks;
    this.endedUs = nowUs();
    this.errorDesc = error;
    this.set(ok ? 'completed' : 'failed');
  }

  /** The outgoing state went out and the migration completed, without ending it (cpr-exec execs next). */
  recordSaved(marks: PhaseMark[], bytes: number): void {
    this.marks = marks;
    this.bytes = bytes;
    this.end();
  }

  beginTransfer(): void {
    this.begin();
  }

  report(): MigrationReport {
    if (this.status === 'none') return {};
    const out: MigrationReport = { status: this.status };
    const end = this.active ? nowUs() : this.endedUs;
    out['total-time'] = Math.round((end - this.startedUs) / 1000);
    const pause = pauseUs(this.marks) ?? stopToEnd(this.marks);
    if (pause !== null && !this.active) out.downtime = Math.round(pause / 1000);
    out['setup-time'] = 0;
    if (this.errorDesc) out['error-desc'] = this.errorDesc;
    if (this.bytes) out.ram = { transferred: this.bytes, total: this.bytes, remaining: 0 };
    return out;
  }
}

/** The old process's own view of the pause: from stopping the vCPUs to the state being written. */
function stopToEnd(marks: readonly PhaseMark[]): number | null {
  const old = marks.filter((m) => m.process === 'old');
  const stop = old.find((m) => m.phase === 'stop-vcpus');
  if (!stop || old.length === 0) return null;
  return Math.max(...old.map((m) => m.endUs)) - stop.startUs;
}

export { CprError, CheckpointError };
