// A single-producer single-consumer byte ring in a SharedArrayBuffer, with an eventfd that tells the consumer's
// epoll loop there is something to read. It carries host input from the main thread (where chardevs read their
// sockets and stdin) to the I/O thread (where a virtio device's queues live). Bounded: the producer takes only what
// fits and the chardev's InputPump keeps the rest, exactly as with a UART FIFO.
import * as libc from '../sys/libc.js';

const HEAD = 0; // next byte to read (consumer-owned), a running count
const TAIL = 1; // next byte to write (producer-owned), a running count
const HEADER_BYTES = 8;

/** Plain data another thread needs to attach. */
export interface ByteRingInit {
  readonly buffer: SharedArrayBuffer;
  readonly fd: number;
}

export class ByteRing {
  private readonly indices: Int32Array;
  private readonly data: Uint8Array;
  private readonly one = new BigUint64Array([1n]);
  readonly capacity: number;

  private constructor(readonly init: ByteRingInit) {
    this.indices = new Int32Array(init.buffer, 0, 2);
    this.data = new Uint8Array(init.buffer, HEADER_BYTES);
    this.capacity = this.data.length;
  }

  /** Main thread: a new ring of `capacity` bytes (a power of two) and its eventfd. */
  static create(capacity = 4096): ByteRing {
    if (!Number.isInteger(capacity) || capacity < 1 || (capacity & (capacity - 1)) !== 0)
      throw new RangeError(`byte ring: capacity ${capacity} is not a power of two`);
    const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    return new ByteRing({ buffer: new SharedArrayBuffer(HEADER_BYTES + capacity), fd });
  }

  static attach(init: ByteRingInit): ByteRing {
    return new ByteRing(init);
  }

  get fd(): number {
    return this.init.fd;
  }

  /** Bytes waiting to be read. */
  get length(): number {
    return (Atomics.load(this.indices, TAIL) - Atomics.load(this.indices, HEAD)) >>> 0;
  }

  /** Producer: copies in as much of `bytes` as fits, wakes the consumer; returns how many were taken. */
  write(bytes: Uint8Array): number {
    const head = Atomics.load(this.indices, HEAD);
    const tail = Atomics.load(this.indices, TAIL);
    const room = this.capacity - ((tail - head) >>> 0);
    const n = Math.min(room, bytes.length);
    for (let i = 0; i < n; i++) this.data[(tail + i) & (this.capacity - 1)] = bytes[i];
    if (n === 0) return 0;
    Atomics.store(this.indices, TAIL, (tail + n) | 0); // publishes the bytes written above
    libc.write(this.init.fd, this.one);
    return n;
  }

  /** Consumer: the bytes waiting, up to the end of the buffer (call again after consume() for the rest). */
  peek(): Uint8Array {
    const head = Atomics.load(this.indices, HEAD);
    const available = (Atomics.load(this.indices, TAIL) - head) >>> 0;
    const start = head & (this.capacity - 1);
    return this.data.slice(start, start + Math.min(available, this.capacity - start));
  }

  /** Consumer: `n` bytes of the last peek() were used. */
  consume(n: number): void {
    const head = Atomics.load(this.indices, HEAD);
    const available = (Atomics.load(this.indices, TAIL) - head) >>> 0;
    if (!Number.isInteger(n) || n < 0 || n > available) throw new RangeError(`byte ring: consume ${n} of ${available}`);
    Atomics.store(this.indices, HEAD, (head + n) | 0);
  }

  /** Main thread, when the machine ends. */
  close(): void {
    libc.close(this.init.fd);
  }
}
