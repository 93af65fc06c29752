// The machine's run state, in QEMU's RunState names (qapi/run-state.json) so QMP query-status reports what QEMU
// would, and the transitions between them as a table: a move the table does not list is a bug in tsvmm and throws,
// as QEMU's runstate_set() aborts on one.

/** The run states tsvmm has (a subset of QEMU's). */
export type RunState =
  | 'prelaunch' // created, vCPUs never ran (-S)
  | 'running'
  | 'paused' // stopped by the host (QMP stop)
  | 'inmigrate' // waiting for incoming state (-incoming)
  | 'finish-migrate' // stopping to save state
  | 'postmigrate' // state saved; the VM must not run again here
  | 'suspended' // the guest suspended to RAM (ACPI S3) until a wake-up
  | 'shutdown' // the guest powered off (with -no-shutdown), or the machine ended
  | 'guest-panicked' // the guest panicked, with -action panic=pause
  | 'internal-error'; // KVM could not run the guest

/**
 * Which state may follow which. Each row is QEMU's (system/runstate.c, runstate_transitions_def) as far as tsvmm has
 * the states, and differs where tsvmm does:
 * - `shutdown` and `internal-error` follow any state: the machine ends from anywhere (quit, a signal, --timeout, a
 *   failure) and records how in its run state, where QEMU exits. An internal error is final.
 * - a guest's request that a vCPU sent just before a host stop is handled after it: a stopped VM (paused,
 *   finish-migrate, postmigrate) may still become suspended or guest-panicked, or stop in `shutdown`.
 * - a checkpoint of a VM that is not running keeps its state while saving (no finish-migrate): suspended, inmigrate,
 *   shutdown and guest-panicked go straight to postmigrate, or to paused when the save fails.
 * - cpr-load restores into a VM started with -S: prelaunch goes to paused or suspended as the checkpoint says.
 * - an S3 wake-up passes through paused (firmware resumes the guest, then the vCPUs run).
 */
const TRANSITIONS: Readonly<Record<RunState, readonly RunState[]>> = {
  prelaunch: ['running', 'inmigrate', 'paused', 'suspended', 'finish-migrate', 'shutdown', 'internal-error'],
  inmigrate: ['running', 'paused', 'suspended', 'postmigrate', 'shutdown', 'internal-error'],
  running: ['paused', 'suspended', 'finish-migrate', 'guest-panicked', 'shutdown', 'internal-error'],
  paused: ['running', 'suspended', 'finish-migrate', 'guest-panicked', 'shutdown', 'internal-error'],
  suspended: ['running', 'paused', 'postmigrate', 'guest-panicked', 'shutdown', 'internal-error'],
  'finish-migrate': ['running', 'paused', 'suspended', 'postmigrate', 'guest-panicked', 'shutdown', 'internal-error'],
  postmigrate: ['finish-migrate', 'suspended', 'guest-panicked', 'shutdown', 'internal-error'],
  shutdown: ['prelaunch', 'paused', 'postmigrate', 'internal-error'],
  'guest-panicked': ['prelaunch', 'paused', 'postmigrate', 'shutdown', 'internal-error'],
  'internal-error': [],
};

/** States a host stop may leave for another stopped state without the guest running (a checkpoint's finish-migrate). */
const STOPPED_BY_HOST: ReadonlySet<RunState> = new Set(['paused', 'prelaunch', 'postmigrate', 'finish-migrate']);

/** tsvmm tried a move the table does not allow: a bug, reported with both states. */
export class RunStateTransitionError extends Error {
  override readonly name = 'RunStateTransitionError';
  constructor(
    readonly from: RunState,
    readonly to: RunState,
  ) {
    super(`invalid run state transition: '${from}' -> '${to}'`);
  }
}

export class LifeCycle {
  private current: RunState = 'prelaunch';
  private endingNow = false;

  get state(): RunState {
    return this.current;
  }

  get running(): boolean {
    return this.current === 'running';
  }

  /** True once the machine has begun to end: from then on nothing but the end runs. */
  get ending(): boolean {
    return this.endingNow;
  }

  /** True if the VM was stopped by the host (or never started) rather than by the guest or an error. */
  get stoppedByHost(): boolean {
    return STOPPED_BY_HOST.has(this.current);
  }

  /** Throws unless `next` may follow the current state (staying in it always may). */
  check(next: RunState): void {
    if (next !== this.current && !TRANSITIONS[this.current].includes(next))
      throw new RunStateTransitionError(this.current, next);
  }

  to(next: RunState): void {
    this.check(next);
    this.current = next;
  }

  /** Marks the machine as ending; false if it already was. */
  beginEnding(): boolean {
    if (this.endingNow) return false;
    this.endingNow = true;
    return true;
  }
}
