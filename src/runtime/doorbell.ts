// A doorbell from any thread to the main thread's event loop: a word of request bits in a SharedArrayBuffer.
// Ringing is an atomic OR plus a notify (no allocation, no message); the main thread waits with Atomics.waitAsync
// and takes all bits at once, so a burst of rings costs one wake-up.

export class Doorbell {
  /** A device's timers changed (RTC register write, serial FIFO timeout armed): poll timers again. */
  static readonly TIMERS = 1 << 0;
  /** Host input can be offered again (the guest drained a receive FIFO). */
  static readonly INPUT = 1 << 1;

  readonly buffer: SharedArrayBuffer;
  private readonly word: Int32Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.buffer = buffer;
    this.word = new Int32Array(buffer);
  }

  ring(bits: number): void {
    if ((Atomics.or(this.word, 0, bits) & bits) !== bits) Atomics.notify(this.word, 0);
  }

  /** Takes every pending bit (0 if none). */
  take(): number {
    return Atomics.exchange(this.word, 0, 0);
  }

  /** Main thread: resolves with the bits once at least one is set. */
  async wait(): Promise<number> {
    for (;;) {
      const bits = this.take();
      if (bits) return bits;
      const r = Atomics.waitAsync(this.word, 0, 0);
      if (r.async) await r.value;
    }
  }
}
