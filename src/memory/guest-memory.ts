// The interface every user of guest RAM goes through. Implementation: src/memory/ (see GuestRam).
// Guest-physical addresses are plain numbers (< 2^53). Every access is bounds-checked: an address or length that
// is negative, not an integer, overflows, or is not wholly inside one RAM region throws a GuestMemoryError, so
// nothing is ever read or written outside guest RAM on the guest's behalf.

export class GuestMemoryError extends RangeError {
  constructor(
    readonly gpa: number,
    readonly length: number,
    why = 'not in guest RAM',
  ) {
    super(`guest range 0x${gpa.toString(16)}+0x${length.toString(16)} ${why}`);
    this.name = 'GuestMemoryError';
  }
}

export interface GuestMemory {
  /** Total bytes of RAM (all regions). */
  readonly totalSize: number;
  /** True if [gpa, gpa+length) lies wholly inside one RAM region. Never throws. */
  contains(gpa: number, length: number): boolean;

  readU8(gpa: number): number;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  readU64(gpa: number): bigint;
  writeU8(gpa: number, value: number): void;
  writeU16(gpa: number, value: number): void;
  writeU32(gpa: number, value: number): void;
  writeU64(gpa: number, value: bigint): void;

  /** A copy of guest bytes. */
  read(gpa: number, length: number): Uint8Array;
  /** Copy bytes into guest RAM. */
  write(gpa: number, bytes: Uint8Array): void;
  /** Fill a guest range with one byte value. */
  fill(gpa: number, length: number, value: number): void;
  /**
   * A zero-copy view of guest bytes for device DMA. Valid only until the caller returns: never keep it (RAM may be
   * unmapped at checkpoint time, and touching a view of unmapped memory kills the process).
   */
  slice(gpa: number, length: number): Uint8Array;
}
