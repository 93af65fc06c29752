// The shared control block between the main thread and the vCPU threads: pause/resume/stop requests and each
// vCPU's thread id and run state, in one SharedArrayBuffer. The main thread writes requests; a vCPU thread checks
// them before every KVM_RUN and after every exit, so a request takes effect at the next exit — and the kick
// (immediate_exit + a signal, see kick.ts) makes sure there is a next exit soon even when the guest sits in `hlt`.

/** Global words. */
const PAUSE = 0; // 1 while the main thread wants every vCPU parked
const STOP = 1; // 1 once the machine is ending: vCPU threads leave their loop
const PARKED = 2; // how many vCPUs are parked (or have left their loop)
const GENERATION = 3; // bumped on every resume, so a parked vCPU knows it may go on
const CAPTURE = 4; // bumped when the main thread wants each vCPU to save its own state as it parks
const GLOBAL_WORDS = 8;

/** Per-vCPU words. */
const TID = 0;
const STATE = 1;
const CAPTURED = 2; // the CAPTURE generation this vCPU last saved its state for (negative: it failed)
const PER_VCPU_WORDS = 4;

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

  /** Park while a pause is requested; returns false if the machine is stopping instead. */
  park(vcpu: number): boolean {
    while (Atomics.load(this.words, PAUSE) !== 0 && !this.stopping) {
      const generation = Atomics.load(this.words, GENERATION);
      this.setState(vcpu, VcpuRunState.Parked);
      Atomics.add(this.words, PARKED, 1);
      Atomics.notify(this.words, PARKED);
      while (Atomics.load(this.words, GENERATION) === generation && !this.stopping) {
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

  private setState(vcpu: number, state: VcpuRunState): void {
    Atomics.store(this.words, this.at(vcpu, STATE), state);
    Atomics.notify(this.words, this.at(vcpu, STATE));
  }

  /**
   * Asks every vCPU to save its own state as it parks (in parallel, on the thread the vCPU last ran on) and
   * returns the request's number for capturedFor().
   */
  requestCapture(): number {
    return Atomics.add(this.words, CAPTURE, 1) + 1;
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
