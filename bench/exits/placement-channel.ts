// The prototype's exit mailbox between a vCPU worker and the main thread (bench/exits/placement.ts): one exit in
// flight at a time, handed over with sequence numbers in a SharedArrayBuffer. The plain field stores happen before
// the sequentially consistent store of the sequence number, so the other side sees them once it sees the number.
import type { VcpuFeatures } from '../../kvm/vcpu-features.js';
import type { CharOutTransfer } from '../../src/chardev/char-out.js';
import type { PlacementMode } from './placement.js';

export class Channel {
  /** Word indices. */
  static readonly REQUEST = 0;
  static readonly RESPONSE = 1;
  static readonly PORT = 2;
  static readonly SIZE = 3;
  static readonly DIRECTION = 4;
  static readonly VALUE = 5;
  /** A request number that means "the guest is done: stop serving". */
  static readonly STOP = -1;

  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;

  constructor(buffer = new SharedArrayBuffer(8 * 4)) {
    this.buffer = buffer;
    this.words = new Int32Array(buffer);
  }

  get request(): number {
    return Atomics.load(this.words, Channel.REQUEST);
  }
  get port(): number {
    return this.words[Channel.PORT];
  }
  get size(): number {
    return this.words[Channel.SIZE];
  }
  /** KVM_EXIT_IO_IN (0) or KVM_EXIT_IO_OUT (1). */
  get direction(): number {
    return this.words[Channel.DIRECTION];
  }
  get value(): number {
    return this.words[Channel.VALUE] >>> 0;
  }
  set value(v: number) {
    this.words[Channel.VALUE] = v | 0;
  }

  /**
   * Worker: post exit number `seq` and wait until the main thread has answered it: asleep in Atomics.wait, or
   * (`spin`) polling, which keeps the thread on its core and so avoids the wake-up on both sides.
   */
  call(seq: number, port: number, size: number, direction: number, value: number, spin = false): number {
    const w = this.words;
    w[Channel.PORT] = port;
    w[Channel.SIZE] = size;
    w[Channel.DIRECTION] = direction;
    w[Channel.VALUE] = value | 0;
    Atomics.store(w, Channel.REQUEST, seq);
    if (spin) {
      while (Atomics.load(w, Channel.RESPONSE) !== seq) {
        /* poll */
      }
      return w[Channel.VALUE] >>> 0;
    }
    Atomics.notify(w, Channel.REQUEST, 1);
    for (let r = Atomics.load(w, Channel.RESPONSE); r !== seq; r = Atomics.load(w, Channel.RESPONSE)) {
      Atomics.wait(w, Channel.RESPONSE, r);
    }
    return w[Channel.VALUE] >>> 0;
  }

  /** Main thread: exit number `seq` is handled. */
  answer(seq: number): void {
    Atomics.store(this.words, Channel.RESPONSE, seq);
    Atomics.notify(this.words, Channel.RESPONSE, 1);
  }

  /** Worker: no more exits; wakes the main thread's wait. */
  stop(): void {
    Atomics.store(this.words, Channel.REQUEST, Channel.STOP);
    Atomics.notify(this.words, Channel.REQUEST, 1);
  }
}

/** What the prototype's worker receives. */
export interface PlacementInit {
  mode: PlacementMode;
  vcpuFd: number;
  mmapSize: number;
  features: VcpuFeatures;
  loopPort: number;
  arena: SharedArrayBuffer;
  stateOffset: number;
  output: CharOutTransfer;
  lock: SharedArrayBuffer;
  channel: SharedArrayBuffer;
}

/** What it measured: loop-port exits and the performance.now() stamps (ms) of the first and last one. */
export interface PlacementResult {
  mode: PlacementMode;
  count: number;
  firstMs: number;
  lastMs: number;
  /** All port-I/O exits, including the serial polling after the loop. */
  ioExits: number;
}
