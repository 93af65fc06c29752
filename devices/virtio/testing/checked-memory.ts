// A bounds-enforcing GuestMemory for virtio tests and the virtqueue fuzzer: RAM is plain in-process buffers
// (ArrayGuestMemory), and every access outside RAM is recorded before it throws. Code under test may probe with
// contains(); any access that reaches here out of range is a bug, even if the caller then caught the error.
import { ArrayGuestMemory } from '../../../src/boot/testing/array-memory.js';
import { GuestMemoryError, type GuestMemory } from '../../../src/memory/guest-memory.js';

export interface Violation {
  readonly op: string;
  readonly gpa: number;
  readonly length: number;
}

export class CheckedMemory implements GuestMemory {
  readonly ram: ArrayGuestMemory;
  readonly violations: Violation[] = [];
  /** Accesses made (reads and writes, any width): lets a test check that work was bounded. */
  accesses = 0;

  /** `layout`: RAM regions (default one region of `size` bytes at 0). */
  constructor(layout: number | readonly { start: number; size: number }[]) {
    this.ram = new ArrayGuestMemory(typeof layout === 'number' ? [{ start: 0, size: layout }] : layout);
  }

  get totalSize(): number {
    return this.ram.totalSize;
  }
  contains(gpa: number, length: number): boolean {
    return this.ram.contains(gpa, length);
  }

  private check(op: string, gpa: number, length: number): void {
    this.accesses++;
    if (!this.ram.contains(gpa, length)) {
      this.violations.push({ op, gpa, length });
      throw new GuestMemoryError(gpa, length);
    }
  }

  readU8(gpa: number): number {
    this.check('readU8', gpa, 1);
    return this.ram.readU8(gpa);
  }
  readU16(gpa: number): number {
    this.check('readU16', gpa, 2);
    return this.ram.readU16(gpa);
  }
  readU32(gpa: number): number {
    this.check('readU32', gpa, 4);
    return this.ram.readU32(gpa);
  }
  readU64(gpa: number): bigint {
    this.check('readU64', gpa, 8);
    return this.ram.readU64(gpa);
  }
  writeU8(gpa: number, v: number): void {
    this.check('writeU8', gpa, 1);
    this.ram.writeU8(gpa, v);
  }
  writeU16(gpa: number, v: number): void {
    this.check('writeU16', gpa, 2);
    this.ram.writeU16(gpa, v);
  }
  writeU32(gpa: number, v: number): void {
    this.check('writeU32', gpa, 4);
    this.ram.writeU32(gpa, v);
  }
  writeU64(gpa: number, v: bigint): void {
    this.check('writeU64', gpa, 8);
    this.ram.writeU64(gpa, v);
  }
  read(gpa: number, length: number): Uint8Array {
    this.check('read', gpa, length);
    return this.ram.read(gpa, length);
  }
  write(gpa: number, bytes: Uint8Array): void {
    this.check('write', gpa, bytes.length);
    this.ram.write(gpa, bytes);
  }
  fill(gpa: number, length: number, value: number): void {
    this.check('fill', gpa, length);
    this.ram.fill(gpa, length, value);
  }
  slice(gpa: number, length: number): Uint8Array {
    this.check('slice', gpa, length);
    return this.ram.slice(gpa, length);
  }
}
