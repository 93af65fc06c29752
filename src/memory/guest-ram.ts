// GuestRam: the bounds-checked GuestMemory over RAM mapped in this process (rust-vmm's GuestMemoryMmap).
//
// Built from plain regions {gpa, size, hostAddress}, so any thread can build its own GuestRam over the same
// process-wide mapping: a worker receives the regions by postMessage and constructs one.
//
// Views: a koffi view costs ~25 µs per MiB to create and its bookkeeping is freed only after the event loop turns,
// so RAM is never viewed whole. Each region is cut into windows of `chunkSize` bytes, created on first touch and
// cached. Window i covers [i·chunk, (i+1)·chunk + overlap): the overlap lets any access of up to `overlap` bytes
// that starts in window i be served by it, so a u64 or a DMA buffer that crosses a chunk boundary still takes the
// fast path. Longer ranges that cross a boundary are copied piece by piece (read/write/fill) or get a one-off view
// (slice). The window of the last access is kept in fields, so a hit costs a subtraction, two compares and one
// DataView/typed-array operation.
//
// Lifetime: release() drops every view this GuestRam holds and makes later accesses throw. It MUST be called, in
// every thread that built a GuestRam over a mapping, before that mapping is unmapped: touching a view of unmapped
// memory kills the process.
import { view } from '../sys/libc.js';
import { GuestMemoryError, type GuestMemory } from './guest-memory.js';
import { MiB } from '../util/sizes.js';

/** One contiguous block of guest-physical RAM and where it is mapped in this process. Plain data. */
export interface RamRegion {
  readonly gpa: number;
  readonly size: number;
  readonly hostAddress: bigint;
}

/** Bytes per lazily created view. */
export const DEFAULT_CHUNK_SIZE = 64 * MiB;
/** Extra bytes each view reaches past its chunk, so short accesses across a chunk boundary stay on the fast path. */
export const DEFAULT_CHUNK_OVERLAP = 1 * MiB;

export interface GuestRamOptions {
  chunkSize?: number;
  overlap?: number;
}

interface Window {
  /** The guest-physical address of the window's first byte. */
  readonly start: number;
  readonly length: number;
  readonly bytes: Uint8Array;
  readonly data: DataView;
}

interface Region {
  readonly gpa: number;
  readonly size: number;
  readonly end: number;
  readonly hostAddress: bigint;
  windows: Array<Window | undefined>;
}

const EMPTY_BUFFER = new ArrayBuffer(0);

export class GuestRam implements GuestMemory {
  readonly regions: readonly RamRegion[];
  readonly totalSize: number;
  readonly chunkSize: number;
  readonly overlap: number;
  private readonly table: Region[];
  private released = false;
  private windowsCreated = 0;
  private oneOffViews = 0;

  // The window of the last access. -Infinity makes every fast-path test fail until a window is entered.
  private curStart = Number.NEGATIVE_INFINITY;
  private curLength = 0;
  private curBytes: Uint8Array = new Uint8Array(EMPTY_BUFFER);
  private curData: DataView = new DataView(EMPTY_BUFFER);

  constructor(regions: readonly RamRegion[], options: GuestRamOptions = {}) {
    const { chunkSize = DEFAULT_CHUNK_SIZE, overlap = DEFAULT_CHUNK_OVERLAP } = options;
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096)
      throw new RangeError(`GuestRam: chunkSize ${chunkSize} must be an integer ≥ 4096`);
    // Fixed-width accesses (≤ 8 bytes) rely on the overlap to never straddle two windows.
    if (!Number.isSafeInteger(overlap) || overlap < 8)
      throw new RangeError(`GuestRam: overlap ${overlap} must be an integer ≥ 8`);
    this.chunkSize = chunkSize;
    this.overlap = overlap;

    const sorted = [...regions].sort((a, b) => a.gpa - b.gpa);
    this.table = sorted.map((r, i) => {
      const what = `GuestRam: region ${i} {gpa 0x${Number(r.gpa).toString(16)}, size 0x${Number(r.size).toString(16)}}`;
      if (!Number.isSafeInteger(r.gpa) || r.gpa < 0) throw new RangeError(`${what}: gpa is not a non-negative integer`);
      if (!Number.isSafeInteger(r.size) || r.size <= 0) throw new RangeError(`${what}: size is not a positive integer`);
      if (!Number.isSafeInteger(r.gpa + r.size)) throw new RangeError(`${what}: ends beyond 2^53`);
      if (typeof r.hostAddress !== 'bigint' || r.hostAddress <= 0n)
        throw new RangeError(`${what}: hostAddress is not a mapped address`);
      const previous = sorted[i - 1];
      if (previous !== undefined && previous.gpa + previous.size > r.gpa)
        throw new RangeError(`${what}: overlaps the region at 0x${previous.gpa.toString(16)}`);
      return { gpa: r.gpa, size: r.size, end: r.gpa + r.size, hostAddress: r.hostAddress, windows: [] };
    });
    this.regions = Object.freeze(
      this.table.map((r) => Object.freeze({ gpa: r.gpa, size: r.size, hostAddress: r.hostAddress })),
    );
    this.totalSize = this.table.reduce((sum, r) => sum + r.size, 0);
  }

  /** How many chunk views exist now (they are created lazily; for tests and statistics). */
  get windowCount(): number {
    return this.table.reduce((n, r) => n + r.windows.filter((w) => w !== undefined).length, 0);
  }

  /** Views created since construction: chunk windows, and one-off views for long straddling slices. */
  get viewsCreated(): { windows: number; oneOff: number } {
    return { windows: this.windowsCreated, oneOff: this.oneOffViews };
  }

  get isReleased(): boolean {
    return this.released;
  }

  contains(gpa: number, length: number): boolean {
    return this.lookup(gpa, length) !== null;
  }

  /** The host address of [gpa, gpa+length), which must lie in one region: for KVM memslots and VFIO DMA maps. */
  hostAddressOf(gpa: number, length: number): bigint {
    const r = this.find(gpa, length);
    return r.hostAddress + BigInt(gpa - r.gpa);
  }

  readU8(gpa: number): number {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 1 <= this.curLength && Number.isInteger(o)) return this.curBytes[o];
    const e = this.enter(gpa, 1);
    return this.curBytes[e];
  }

  readU16(gpa: number): number {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 2 <= this.curLength && Number.isInteger(o)) return this.curData.getUint16(o, true);
    const e = this.enter(gpa, 2);
    return this.curData.getUint16(e, true);
  }

  readU32(gpa: number): number {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 4 <= this.curLength && Number.isInteger(o)) return this.curData.getUint32(o, true);
    const e = this.enter(gpa, 4);
    return this.curData.getUint32(e, true);
  }

  readU64(gpa: number): bigint {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 8 <= this.curLength && Number.isInteger(o)) return this.curData.getBigUint64(o, true);
    const e = this.enter(gpa, 8);
    return this.curData.getBigUint64(e, true);
  }

  /** Stores the low 8 bits of `value`. */
  writeU8(gpa: number, value: number): void {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 1 <= this.curLength && Number.isInteger(o)) {
      this.curBytes[o] = value;
      return;
    }
    const e = this.enter(gpa, 1);
    this.curBytes[e] = value;
  }

  /** Stores the low 16 bits of `value`, little endian. */
  writeU16(gpa: number, value: number): void {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 2 <= this.curLength && Number.isInteger(o)) {
      this.curData.setUint16(o, value, true);
      return;
    }
    const e = this.enter(gpa, 2);
    this.curData.setUint16(e, value, true);
  }

  /** Stores the low 32 bits of `value`, little endian. */
  writeU32(gpa: number, value: number): void {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 4 <= this.curLength && Number.isInteger(o)) {
      this.curData.setUint32(o, value, true);
      return;
    }
    const e = this.enter(gpa, 4);
    this.curData.setUint32(e, value, true);
  }

  /** Stores `value` modulo 2^64, little endian. */
  writeU64(gpa: number, value: bigint): void {
    const o = gpa - this.curStart;
    if (o >= 0 && o + 8 <= this.curLength && Number.isInteger(o)) {
      this.curData.setBigUint64(o, value, true);
      return;
    }
    const e = this.enter(gpa, 8);
    this.curData.setBigUint64(e, value, true);
  }

  read(gpa: number, length: number): Uint8Array {
    const o = gpa - this.curStart;
    if (o >= 0 && o + length <= this.curLength && Number.isInteger(o) && Number.isInteger(length) && length >= 0) {
      return this.curBytes.slice(o, o + length);
    }
    const r = this.find(gpa, length);
    const out = new Uint8Array(length);
    this.pieces(r, gpa, length, (w, at, pos, n) => out.set(w.bytes.subarray(at, at + n), pos));
    return out;
  }

  write(gpa: number, bytes: Uint8Array): void {
    const length = bytes.length;
    const o = gpa - this.curStart;
    if (o >= 0 && o + length <= this.curLength && Number.isInteger(o)) {
      this.curBytes.set(bytes, o);
      return;
    }
    const r = this.find(gpa, length);
    this.pieces(r, gpa, length, (w, at, pos, n) => w.bytes.set(bytes.subarray(pos, pos + n), at));
  }

  fill(gpa: number, length: number, value: number): void {
    const o = gpa - this.curStart;
    if (o >= 0 && o + length <= this.curLength && Number.isInteger(o) && Number.isInteger(length) && length >= 0) {
      this.curBytes.fill(value & 0xff, o, o + length);
      return;
    }
    const r = this.find(gpa, length);
    this.pieces(r, gpa, length, (w, at, _pos, n) => w.bytes.fill(value & 0xff, at, at + n));
  }

  /**
   * A zero-copy view of [gpa, gpa+length) for device DMA. Valid only until the caller returns: never store it, and
   * never touch it after release() (the RAM may be unmapped then, and touching it kills the process).
   */
  slice(gpa: number, length: number): Uint8Array {
    const o = gpa - this.curStart;
    if (o >= 0 && o + length <= this.curLength && Number.isInteger(o) && Number.isInteger(length) && length >= 0) {
      return this.curBytes.subarray(o, o + length);
    }
    const r = this.find(gpa, length);
    if (length === 0) return new Uint8Array(0);
    const e = this.enter(gpa, length);
    if (e >= 0) return this.curBytes.subarray(e, e + length);
    // Longer than the overlap and crossing a chunk boundary: a view of exactly this range, used once.
    this.oneOffViews++;
    return new Uint8Array(view(r.hostAddress + BigInt(gpa - r.gpa), length));
  }

  /**
   * Drops every view, so the mapping can be unmapped safely; every later access throws GuestMemoryError.
   * Slices handed out earlier must already be dead (they were valid only during their call).
   */
  release(): void {
    this.released = true;
    for (const r of this.table) r.windows = [];
    this.curStart = Number.NEGATIVE_INFINITY;
    this.curLength = 0;
    this.curBytes = new Uint8Array(EMPTY_BUFFER);
    this.curData = new DataView(EMPTY_BUFFER);
  }

  /**
   * The slow path: checks [gpa, gpa+length), makes the window holding gpa current, and returns gpa's offset in it,
   * or -1 if the range runs past that window (only possible for lengths above `overlap`).
   */
  private enter(gpa: number, length: number): number {
    const r = this.find(gpa, length);
    const w = this.windowAt(r, gpa, length);
    this.curStart = w.start;
    this.curLength = w.length;
    this.curBytes = w.bytes;
    this.curData = w.data;
    const o = gpa - w.start;
    return o + length <= w.length ? o : -1;
  }

  private windowAt(r: Region, gpa: number, length: number): Window {
    if (this.released) throw new GuestMemoryError(gpa, length, 'is not accessible: guest RAM was released');
    const index = Math.floor((gpa - r.gpa) / this.chunkSize);
    return r.windows[index] ?? this.createWindow(r, index);
  }

  private createWindow(r: Region, index: number): Window {
    const offset = index * this.chunkSize;
    const length = Math.min(this.chunkSize + this.overlap, r.size - offset);
    const buffer = view(r.hostAddress + BigInt(offset), length);
    const w: Window = { start: r.gpa + offset, length, bytes: new Uint8Array(buffer), data: new DataView(buffer) };
    r.windows[index] = w;
    this.windowsCreated++;
    return w;
  }

  /** Walks a checked range window by window: fn(window, offset in window, offset in range, byte count). */
  private pieces(
    r: Region,
    gpa: number,
    length: number,
    fn: (w: Window, at: number, pos: number, n: number) => void,
  ): void {
    let pos = 0;
    while (pos < length) {
      const at = gpa + pos;
      const w = this.windowAt(r, at, length - pos);
      const o = at - w.start;
      const n = Math.min(length - pos, w.length - o);
      fn(w, o, pos, n);
      pos += n;
    }
  }

  /** The region wholly holding [gpa, gpa+length), or null. Never throws. */
  private lookup(gpa: number, length: number): Region | null {
    if (typeof gpa !== 'number' || !Number.isSafeInteger(gpa) || gpa < 0) return null;
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) return null;
    const end = gpa + length;
    if (!Number.isSafeInteger(end)) return null;
    for (const r of this.table) {
      if (gpa >= r.gpa && end <= r.end) return r;
    }
    return null;
  }

  /** lookup(), or a GuestMemoryError that says what is wrong with the range. */
  private find(gpa: number, length: number): Region {
    const r = this.lookup(gpa, length);
    if (r !== null) return r;
    const g = typeof gpa === 'number' ? gpa : Number.NaN;
    const l = typeof length === 'number' ? length : Number.NaN;
    if (!Number.isSafeInteger(g) || g < 0)
      throw new GuestMemoryError(g, l, 'has an invalid address (not a non-negative integer)');
    if (!Number.isSafeInteger(l) || l < 0)
      throw new GuestMemoryError(g, l, 'has an invalid length (not a non-negative integer)');
    if (!Number.isSafeInteger(g + l)) throw new GuestMemoryError(g, l, 'overflows');
    const start = this.table.find((x) => g >= x.gpa && g < x.end);
    if (start !== undefined) {
      throw new GuestMemoryError(
        g,
        l,
        `runs past the end of RAM region [0x${start.gpa.toString(16)}, 0x${start.end.toString(16)})`,
      );
    }
    throw new GuestMemoryError(g, l);
  }
}
