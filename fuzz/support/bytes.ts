// Reading a fuzzer's input as a script of small numbers: each read takes the next bytes and, once the input is used
// up, yields zeros, so every input (even empty) is a complete script and a short one ends early.
export class ByteScript {
  private at = 0;

  constructor(readonly data: Uint8Array) {}

  get done(): boolean {
    return this.at >= this.data.length;
  }

  u8(): number {
    return this.at < this.data.length ? this.data[this.at++] : 0;
  }

  u16(): number {
    return this.u8() | (this.u8() << 8);
  }

  u32(): number {
    return (this.u16() | (this.u16() << 16)) >>> 0;
  }

  /** One of `items`, chosen by the next byte. */
  pick<T>(items: readonly T[]): T {
    return items[this.u8() % items.length];
  }

  /** Up to `max` of the following bytes (fewer at the end of the input). */
  bytes(max: number): Uint8Array {
    const n = Math.min(max, this.data.length - this.at);
    const out = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** Everything not read yet. */
  rest(): Uint8Array {
    return this.bytes(this.data.length);
  }
}
