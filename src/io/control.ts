// The handshake between the main thread and the I/O thread, in one SharedArrayBuffer plus a control eventfd the
// I/O thread's epoll watches (so a request reaches it even while it sleeps in epoll_wait).
//
// pause: the main thread sets REQUEST = PAUSE and writes the eventfd; the I/O thread finishes the batch it is on
// (under the machine lock), sets STATE = PARKED and waits on GENERATION. A checkpoint saves device state only once
// the vCPUs and the I/O thread are all parked, so no handler runs during the save. resume bumps GENERATION; stop
// sets REQUEST = STOP, bumps GENERATION (a parked thread wakes) and writes the eventfd (a waiting one wakes).
import * as libc from '../sys/libc.js';

const REQUEST = 0;
const STATE = 1;
const GENERATION = 2;
const TID = 3;
const WORDS = 4;

export enum IoRequest {
  Run = 0,
  Pause = 1,
  Stop = 2,
}
export enum IoThreadState {
  Starting = 0,
  Running = 1,
  Parked = 2,
  Exited = 3,
}

export class IoThreadControl {
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;
  private readonly one = new BigUint64Array([1n]);
  private readonly drain = new BigUint64Array(1);

  /** `wakeFd`: the control eventfd (created by the main thread with create()). */
  constructor(
    readonly wakeFd: number,
    buffer?: SharedArrayBuffer,
  ) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 * WORDS);
    this.words = new Int32Array(this.buffer);
  }

  /** Main thread: a new control block and its eventfd. */
  static create(): IoThreadControl {
    return new IoThreadControl(libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
  }

  // ---- I/O thread side --------------------------------------------------------------------------------------

  get request(): IoRequest {
    return Atomics.load(this.words, REQUEST) as IoRequest;
  }

  announce(tid: number): void {
    Atomics.store(this.words, TID, tid);
    this.setState(IoThreadState.Running);
  }

  /** Clears the control eventfd's counter (after epoll reported it). */
  drainWake(): void {
    libc.read(this.wakeFd, this.drain);
  }

  /** Parks while a pause is requested; false when the thread should stop instead. */
  park(): boolean {
    while (Atomics.load(this.words, REQUEST) === IoRequest.Pause) {
      const generation = Atomics.load(this.words, GENERATION);
      this.setState(IoThreadState.Parked);
      while (Atomics.load(this.words, GENERATION) === generation) Atomics.wait(this.words, GENERATION, generation);
      this.setState(IoThreadState.Running);
    }
    return Atomics.load(this.words, REQUEST) !== IoRequest.Stop;
  }

  exited(): void {
    this.setState(IoThreadState.Exited);
  }

  private setState(state: IoThreadState): void {
    Atomics.store(this.words, STATE, state);
    Atomics.notify(this.words, STATE);
  }

  // ---- main-thread side -------------------------------------------------------------------------------------

  get state(): IoThreadState {
    return Atomics.load(this.words, STATE) as IoThreadState;
  }

  get tid(): number {
    return Atomics.load(this.words, TID);
  }

  private wake(): void {
    libc.write(this.wakeFd, this.one);
  }

  requestPause(): void {
    if (Atomics.load(this.words, REQUEST) === IoRequest.Stop) return;
    Atomics.store(this.words, REQUEST, IoRequest.Pause);
    this.wake();
  }

  resume(): void {
    if (Atomics.load(this.words, REQUEST) === IoRequest.Stop) return;
    Atomics.store(this.words, REQUEST, IoRequest.Run);
    Atomics.add(this.words, GENERATION, 1);
    Atomics.notify(this.words, GENERATION);
  }

  requestStop(): void {
    Atomics.store(this.words, REQUEST, IoRequest.Stop);
    Atomics.add(this.words, GENERATION, 1);
    Atomics.notify(this.words, GENERATION);
    this.wake();
  }

  /** True once the thread is parked or gone (or has not started: it checks the request before its first wait). */
  private quiet(): boolean {
    const s = this.state;
    return s === IoThreadState.Parked || s === IoThreadState.Exited;
  }

  /** Resolves true once parked or gone, false after `timeoutMs`. */
  async waitParked(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.state;
      if (this.quiet()) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const r = Atomics.waitAsync(this.words, STATE, s, Math.min(left, 50));
      if (r.async) await r.value;
    }
  }

  /** Blocking variant (a checkpoint's pause must not wait for an event-loop turn). */
  waitParkedSync(timeoutMs = 5000): boolean {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.state;
      if (this.quiet()) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, STATE, s, Math.min(left, 50));
    }
  }

  /** Main thread, after the thread exited: the eventfd closed. */
  close(): void {
    try {
      libc.close(this.wakeFd);
    } catch {
      /* already closed */
    }
  }
}
