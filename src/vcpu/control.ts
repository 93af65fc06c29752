// The shared control block between the main thread and the vCPU threads: pause/resume/stop requests and each
// vCPU's thread id and run state, in one SharedArrayBuffer. The main thread writes requests; a vCPU thread checks
// them before every KVM_RUN and after every exit, so a request takes effect at the next exit — and the kick
// (immediate_exit + a signal, see kick.ts) makes sure there is a next exit soon even when the guest sits in `hlt`.

/** Global words. */
const PAUSE = 0; // 1 while the main thread wants every vCPU parked
const STOP = 1; // 1 once the machine is ending: vCPU threads leave their loop
const PARKED = 2; // how many vCPUs are parked (or have left their loop)
const GENERATION = 3; // bumped on every resume, so a parked vCPU knows it may go on
const CAPTURE = 4; // bumped when the main thread wants each parked vCPU to save its own state
const CAPTURE_ACKS = 5; // bumped by each vCPU that saved its state (or failed to), to wake the main thread
const GLOBAL_WORDS = 8;

/** Per-vCPU words. */
const TID = 0;
const STATE = 1;
const CAPTURED = 2; // the CAPTURE generation this vCPU last saved its state for (negative: it failed)
const EXITS = 3; // KVM_RUN returns so far (wraps): a diagnostic of whether the vCPU makes progress
const WHERE = 4; // 0 in KVM_RUN (or not yet run), else 1 + the exit reason being handled (0 + 1 for EINTR)
const PER_VCPU_WORDS = 6;

export enum VcpuRunState {
  Starting = 0,
  Running = 1,
  Parked = 2,
  Exited = 3,
}

export class VcpuControl {
  readonly buffer: SharedArrayBuffer;
  readonly vcpuCount: number;
  private readonly words: Int32Array;

  constructor(vcpuCount: number, buffer?: SharedArrayBuffer) {
    this.vcpuCount = vcpuCount;
    this.buffer = buffer ?? new SharedArrayBuffer(4 * (GLOBAL_WORDS + PER_VCPU_WORDS * vcpuCount));
    this.words = new Int32Array(this.buffer);
  }

  private at(vcpu: number, word: number): number {
    return GLOBAL_WORDS + vcpu * PER_VCPU_WORDS + word;
  }

  // ---- vCPU side --------------------------------------------------------------------------------------------

  /** True if the vCPU should not enter the guest now (pause or stop requested). */
  get interrupted(): boolean {
    return (Atomics.load(this.words, PAUSE) | Atomics.load(this.words, STOP)) !== 0;
  }

  get stopping(): boolean {
    return Atomics.load(this.words, STOP) !== 0;
  }

  announce(vcpu: number, tid: number): void {
    Atomics.store(this.words, this.at(vcpu, TID), tid);
    this.setState(vcpu, VcpuRunState.Running);
  }

  /**
   * Park while a pause is requested; returns false if the machine is stopping instead. `whileParked` runs each time
   * the thread wakes without being resumed (a capture request, requestCapture) and once before the first wait.
   */
  park(vcpu: number, whileParked?: () => void): boolean {
    while (Atomics.load(this.words, PAUSE) !== 0 && !this.stopping) {
      const generation = Atomics.load(this.words, GENERATION);
      this.setState(vcpu, VcpuRunState.Parked);
      Atomics.add(this.words, PARKED, 1);
      Atomics.notify(this.words, PARKED);
      while (Atomics.load(this.words, GENERATION) === generation && !this.stopping) {
        whileParked?.();
        Atomics.wait(this.words, GENERATION, generation);
      }
      Atomics.sub(this.words, PARKED, 1);
      this.setState(vcpu, VcpuRunState.Running);
    }
    return !this.stopping;
  }

  /** True if the main thread asked for this vCPU's state and it has not been saved for that request yet. */
  captureWanted(vcpu: number): boolean {
    const want = Atomics.load(this.words, CAPTURE);
    return want !== 0 && Math.abs(Atomics.load(this.words, this.at(vcpu, CAPTURED))) !== want;
  }

  /** The vCPU thread saved its state (or failed to) for the current capture request. */
  captured(vcpu: number, ok: boolean): void {
    const want = Atomics.load(this.words, CAPTURE);
    Atomics.store(this.words, this.at(vcpu, CAPTURED), ok ? want : -want);
    Atomics.add(this.words, CAPTURE_ACKS, 1);
    Atomics.notify(this.words, CAPTURE_ACKS);
  }

  /** The vCPU thread enters KVM_RUN (diagnostics: see where()). */
  enteringGuest(vcpu: number): void {
    Atomics.store(this.words, this.at(vcpu, WHERE), 0);
  }

  /** KVM_RUN returned `exitReason` (-1: an error such as EINTR), which the thread now handles. */
  leftGuest(vcpu: number, exitReason: number): void {
    Atomics.store(this.words, this.at(vcpu, WHERE), exitReason + 1);
    Atomics.add(this.words, this.at(vcpu, EXITS), 1);
  }

  /** The vCPU thread has left its loop for good. */
  exited(vcpu: number): void {
    this.setState(vcpu, VcpuRunState.Exited);
    Atomics.add(this.words, PARKED, 1);
    Atomics.notify(this.words, PARKED);
  }

  // ---- main-thread side -------------------------------------------------------------------------------------

  tid(vcpu: number): number {
    return Atomics.load(this.words, this.at(vcpu, TID));
  }

  state(vcpu: number): VcpuRunState {
    return Atomics.load(this.words, this.at(vcpu, STATE)) as VcpuRunState;
  }

  /**
   * Where vCPU `vcpu` is, for a diagnostic (a guest that does not finish): its run state, whether it is in KVM_RUN
   * or handling an exit (its KVM_EXIT_* reason; -1: KVM_RUN failed, e.g. EINTR), and its exits so far.
   */
  where(vcpu: number): { state: VcpuRunState; inGuest: boolean; exitReason: number; exits: number } {
    const where = Atomics.load(this.words, this.at(vcpu, WHERE));
    return {
      state: this.state(vcpu),
      inGuest: where === 0,
      exitReason: where - 1,
      exits: Atomics.load(this.words, this.at(vcpu, EXITS)) >>> 0,
    };
  }

  private setState(vcpu: number, state: VcpuRunState): void {
    Atomics.store(this.words, this.at(vcpu, STATE), state);
    Atomics.notify(this.words, this.at(vcpu, STATE));
  }

  /**
   * Asks every parked vCPU to save its own state now (in parallel, each on the thread it last ran on) and returns
   * the request's number for capturedFor() and waitCaptured(). Only once nothing else can change what they save:
   * the vCPUs are parked and so is every thread that injects interrupts (the I/O thread's completions).
   */
  requestCapture(): number {
    const request = Atomics.add(this.words, CAPTURE, 1) + 1;
    // Wakes the parked threads without resuming them (GENERATION does not move): park() runs whileParked.
    Atomics.notify(this.words, GENERATION);
    return request;
  }

  /** Whether vCPU `vcpu` has answered capture request `request` (saved, failed, or left its loop for good). */
  private answered(vcpu: number, request: number): boolean {
    return (
      Math.abs(Atomics.load(this.words, this.at(vcpu, CAPTURED))) === request ||
      this.state(vcpu) === VcpuRunState.Exited
    );
  }

  /**
   * Waits until every vCPU has answered capture request `request`, at most `timeoutMs`; `sync` blocks this thread
   * (for a checkpoint inside the guest's pause) instead of yielding to the event loop. A vCPU that did not answer
   * in time is read by the caller itself (capturedFor is false for it).
   */
  async waitCaptured(request: number, timeoutMs: number, sync: boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acks = Atomics.load(this.words, CAPTURE_ACKS);
      let all = true;
      for (let v = 0; v < this.vcpuCount; v++) if (!this.answered(v, request)) all = false;
      const left = deadline - Date.now();
      if (all || left <= 0) return;
      if (sync) Atomics.wait(this.words, CAPTURE_ACKS, acks, Math.min(left, 50));
      else {
        const r = Atomics.waitAsync(this.words, CAPTURE_ACKS, acks, Math.min(left, 50));
        if (r.async) await r.value;
      }
    }
  }

  /** True if vCPU `vcpu` saved its state for capture request `request`. */
  capturedFor(vcpu: number, request: number): boolean {
    return Atomics.load(this.words, this.at(vcpu, CAPTURED)) === request;
  }

  requestPause(): void {
    Atomics.store(this.words, PAUSE, 1);
  }

  requestStop(): void {
    Atomics.store(this.words, STOP, 1);
    Atomics.add(this.words, GENERATION, 1);
    Atomics.notify(this.words, GENERATION);
  }

  resume(): void {
    Atomics.store(this.words, PAUSE, 0);
    Atomics.add(this.words, GENERATION, 1);
    Atomics.notify(this.words, GENERATION);
  }

  get parkedCount(): number {
    return Atomics.load(this.words, PARKED);
  }

  /** Resolves once every vCPU is parked or gone (or after `timeoutMs`, with false). */
  async waitAllParked(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parked = Atomics.load(this.words, PARKED);
      if (parked >= this.vcpuCount) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const r = Atomics.waitAsync(this.words, PARKED, parked, Math.min(left, 50));
      if (r.async) await r.value;
    }
  }

  /** Blocking variant for callers that must not yield to the event loop (e.g. a fatal path). */
  waitAllParkedSync(timeoutMs = 5000): boolean {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parked = Atomics.load(this.words, PARKED);
      if (parked >= this.vcpuCount) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, PARKED, parked, Math.min(left, 50));
    }
  }
}
