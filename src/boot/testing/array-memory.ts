// A GuestMemory over plain in-process buffers, for loader tests (no KVM, no mmap). It implements the interface's
// contract fully (bounds checks included), so loaders are tested against the same rules real RAM enforces.
import { GuestMemoryError, type GuestMemory } from '../../memory/guest-memory.js';

interface Region {
  start: number;
  bytes: Uint8Array;
  view: DataView;
}

export class ArrayGuestMemory implements GuestMemory {
  readonly totalSize: number;
  private readonly regions: Region[];

  /** `layout`: RAM regions as { start, size } (e.g. [{ start: 0, size: 64 << 20 }]). */
  constructor(layout: readonly { start: number; size: number }[]) {
    this.regions = layout.map((r) => {
      const bytes = new Uint8Array(r.size);
      return { start: r.start, bytes, view: new DataView(bytes.buffer) };
    });
    this.totalSize = layout.reduce((n, r) => n + r.size, 0);
  }

  private find(gpa: number, length: number): Region | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) return undefined;
    return this.regions.find((r) => gpa >= r.start && gpa + length <= r.start + r.bytes.length);
  }

  private at(gpa: number, length: number): { r: Region; off: number } {
    const r = this.find(gpa, length);
    if (!r) throw new GuestMemoryError(gpa, length);
    return { r, off: gpa - r.start };
  }

  contains(gpa: number, length: number): boolean {
    return this.find(gpa, length) !== undefined;
  }
  readU8(gpa: number): number {
    const { r, off } = this.at(gpa, 1);
    return r.bytes[off];
  }
  readU16(gpa: number): number {
    const { r, off } = this.at(gpa, 2);
    return r.view.getUint16(off, true);
  }
  readU32(gpa: number): number {
    const { r, off } = this.at(gpa, 4);
    return r.view.getUint32(off, true);
  }
  readU64(gpa: number): bigint {
    const { r, off } = this.at(gpa, 8);
    return r.view.getBigUint64(off, true);
  }
  writeU8(gpa: number, v: number): void {
    const { r, off } = this.at(gpa, 1);
    r.bytes[off] = v;
  }
  writeU16(gpa: number, v: number): void {
    const { r, off } = this.at(gpa, 2);
    r.view.setUint16(off, v, true);
  }
  writeU32(gpa: number, v: number): void {
    const { r, off } = this.at(gpa, 4);
    r.view.setUint32(off, v >>> 0, true);
  }
  writeU64(gpa: number, v: bigint): void {
    const { r, off } = this.at(gpa, 8);
    r.view.setBigUint64(off, BigInt.asUintN(64, v), true);
  }
  read(gpa: number, length: number): Uint8Array {
    const { r, off } = this.at(gpa, length);
    return r.bytes.slice(off, off + length);
  }
  write(gpa: number, bytes: Uint8Array): void {
    const { r, off } = this.at(gpa, bytes.length);
    r.bytes.set(bytes, off);
  }
  fill(gpa: number, length: number, value: number): void {
    const { r, off } = this.at(gpa, length);
    r.bytes.fill(value, off, off + length);
  }
  slice(gpa: number, length: number): Uint8Array {
    const { r, off } = this.at(gpa, length);
    return r.bytes.subarray(off, off + length);
  }

  /** Test helper: true if every byte of [gpa, gpa+length) is `value`. */
  allBytes(gpa: number, length: number, value: number): boolean {
    const bytes = this.slice(gpa, length);
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== value) return false;
    return true;
  }
}
