// The machine lock: one mutex shared by the main thread and every vCPU thread (QEMU's BQL in spirit). Device
// handlers run under it, so a device's state record is never touched by two threads at once.
//
// A futex-style mutex over one Int32 in a SharedArrayBuffer (Drepper, "Futexes Are Tricky", mutex #2):
// 0 = free, 1 = held, 2 = held with possible waiters. The uncontended path is one compareExchange each way.
// Node allows Atomics.wait on the main thread, and critical sections are short (one device access).

const FREE = 0;
const HELD = 1;
const CONTENDED = 2;

export class MachineLock {
  readonly buffer: SharedArrayBuffer;
  private readonly word: Int32Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4), offset = 0) {
    this.buffer = buffer;
    this.word = new Int32Array(buffer, offset, 1);
  }

  lock(): void {
    let c = Atomics.compareExchange(this.word, 0, FREE, HELD);
    if (c === FREE) return;
    // Spin briefly: the holder is usually a few hundred nanoseconds from releasing.
    for (let i = 0; i < 100; i++) {
      c = Atomics.compareExchange(this.word, 0, FREE, HELD);
      if (c === FREE) return;
    }
    if (c !== CONTENDED) c = Atomics.exchange(this.word, 0, CONTENDED);
    while (c !== FREE) {
      Atomics.wait(this.word, 0, CONTENDED);
      c = Atomics.exchange(this.word, 0, CONTENDED);
    }
  }

  unlock(): void {
    if (Atomics.sub(this.word, 0, 1) !== HELD) {
      Atomics.store(this.word, 0, FREE);
      Atomics.notify(this.word, 0, 1);
    }
  }

  /** Run `fn` with the lock held. */
  with<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }

  /** True while some thread holds the lock (diagnostics only: the answer may be stale at once). */
  get held(): boolean {
    return Atomics.load(this.word, 0) !== FREE;
  }
}
