// A PCI function's configuration space: the bytes (in the function's vmstate record, so every thread and every
// checkpoint sees the same), and per-thread masks that say which bits software may write (wmask) and which it
// clears by writing 1 (w1cmask) — QEMU's PCIDevice model. The masks and the power-on image are built identically in
// every thread by the device's constructor (header, BARs, capabilities), so they are configuration, not state.
//
// BAR sizing falls out of the masks: a BAR's writable bits are its address bits above the size, so writing
// all-ones and reading back gives ~(size - 1) | type bits, as the PCI spec's sizing protocol expects.
import * as R from './constants.js';
import { isPowerOfTwo } from '../../src/util/power-of-two.js';

/** The identity fields of a type 0 header. */
export interface PciIdentity {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  /** Base class << 16 | sub-class << 8 | programming interface. */
  readonly classCode: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  /** 0 = no INTx pin, 1 = INTA# .. 4 = INTD#. */
  readonly interruptPin?: number;
}

export type PciBarKind = 'mmio32' | 'mmio64' | 'io';

/** A BAR as a function declares it: its kind and size (a power of two; >= 16 for memory, >= 4 for I/O). */
export interface PciBarLayout {
  readonly kind: PciBarKind;
  readonly size: number;
  /** Memory BARs only: the prefetchable bit (a 64-bit BAR placed above 4 GiB is normally prefetchable). */
  readonly prefetchable?: boolean;
}

export interface PciConfigOptions {
  /** Visible bytes: 256 (conventional; the rest reads all-ones) or 4096 (PCI Express, extended capabilities). */
  readonly size?: 256 | 4096;
  /** COMMAND bits set at power-on, as firmware leaves them after assigning BARs (default: none). */
  readonly command?: number;
}

export class PciConfigError extends Error {
  override readonly name = 'PciConfigError';
}

export class PciConfigSpace {
  readonly size: 256 | 4096;
  /** The live bytes (a view into the record; always 4096 long). */
  readonly bytes: Uint8Array;
  /** The INTx pin the function declared (0 = none); fixed, unlike the bytes, which may not be reset yet. */
  readonly interruptPin: number;
  private readonly image = new Uint8Array(R.PCIE_CONFIG_SPACE_SIZE);
  private readonly wmask = new Uint8Array(R.PCIE_CONFIG_SPACE_SIZE);
  private readonly w1cmask = new Uint8Array(R.PCIE_CONFIG_SPACE_SIZE);
  private readonly bars: (PciBarLayout | undefined)[] = new Array(R.PCI_NUM_BARS).fill(undefined);
  private romBytes = 0;
  private lastCap = 0;
  private nextCap = R.PCI_STD_HEADER_END;
  private lastExtCap = 0;
  private nextExtCap = R.PCI_EXT_CAP_START;

  constructor(bytes: Uint8Array, identity: PciIdentity, options: PciConfigOptions = {}) {
    if (bytes.length < R.PCIE_CONFIG_SPACE_SIZE)
      throw new PciConfigError(`config space record must hold ${R.PCIE_CONFIG_SPACE_SIZE} bytes`);
    this.bytes = bytes;
    this.size = options.size ?? 256;
    const pin = identity.interruptPin ?? 0;
    if (pin < 0 || pin > 4) throw new PciConfigError(`interrupt pin ${pin} is not 0..4`);
    this.interruptPin = pin;
    this.setImage(R.PCI_VENDOR_ID, 2, identity.vendorId);
    this.setImage(R.PCI_DEVICE_ID, 2, identity.deviceId);
    this.setImage(R.PCI_COMMAND, 2, options.command ?? 0);
    this.setImage(R.PCI_REVISION_ID, 1, identity.revision);
    this.setImage(R.PCI_CLASS_PROG, 1, identity.classCode & 0xff);
    this.setImage(R.PCI_CLASS_DEVICE, 2, identity.classCode >>> 8);
    this.setImage(R.PCI_HEADER_TYPE, 1, R.PCI_HEADER_TYPE_NORMAL);
    this.setImage(R.PCI_SUBSYSTEM_VENDOR_ID, 2, identity.subsystemVendorId ?? 0);
    this.setImage(R.PCI_SUBSYSTEM_ID, 2, identity.subsystemId ?? 0);
    this.setImage(R.PCI_INTERRUPT_PIN, 1, pin);
    // What software may write in every type 0 header.
    this.setWritable(
      R.PCI_COMMAND,
      2,
      R.PCI_COMMAND_IO |
        R.PCI_COMMAND_MEMORY |
        R.PCI_COMMAND_MASTER |
        R.PCI_COMMAND_PARITY |
        R.PCI_COMMAND_SERR |
        (pin ? R.PCI_COMMAND_INTX_DISABLE : 0),
    );
    this.setW1C(R.PCI_STATUS, 2, R.PCI_STATUS_W1C);
    this.setWritable(R.PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.setWritable(R.PCI_LATENCY_TIMER, 1, 0xff);
    this.setWritable(R.PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // ---- building (constructor time, every thread alike) --------------------------------------------------------

  /** Power-on value of `size` bytes at `offset` (little-endian). */
  setImage(offset: number, size: number, value: number): void {
    if (size > 4) throw new PciConfigError(`setImage: ${size} bytes`);
    for (let i = 0; i < size; i++) this.image[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  /** Bits software may change. */
  setWritable(offset: number, size: number, mask: number): void {
    for (let i = 0; i < size; i++) this.wmask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Bits software clears by writing 1 (never also in wmask). */
  setW1C(offset: number, size: number, mask: number): void {
    for (let i = 0; i < size; i++) {
      this.w1cmask[offset + i] = (mask >>> (8 * i)) & 0xff;
      this.wmask[offset + i] &= ~this.w1cmask[offset + i];
    }
  }

  /**
   * Declares BAR `index` (a 64-bit BAR also takes index + 1) and its power-on address (firmware's assignment;
   * 0 = unassigned).
   */
  defineBar(index: number, layout: PciBarLayout, address = 0): void {
    const { kind, size } = layout;
    const wide = kind === 'mmio64';
    if (!Number.isInteger(index) || index < 0 || index + (wide ? 1 : 0) >= R.PCI_NUM_BARS)
      throw new PciConfigError(`BAR ${index} out of range`);
    if (this.bars[index] || (wide && this.bars[index + 1]) || (index > 0 && this.bars[index - 1]?.kind === 'mmio64')) {
      throw new PciConfigError(`BAR ${index} already defined`);
    }
    const min = kind === 'io' ? 4 : 16;
    const max = kind === 'io' ? 0x10000 : kind === 'mmio32' ? 2 ** 31 : 2 ** 52;
    if (!isPowerOfTwo(size) || size < min || size > max)
      throw new PciConfigError(`BAR ${index}: size ${size} must be a power of two in ${min}..${max}`);
    if (!Number.isSafeInteger(address) || address < 0 || address % size !== 0)
      throw new PciConfigError(`BAR ${index}: address 0x${address.toString(16)} not aligned to its size`);
    this.bars[index] = layout;
    const at = R.PCI_BASE_ADDRESS_0 + 4 * index;
    const lowAddressMask = size >= 2 ** 32 ? 0 : ~(size - 1) >>> 0;
    if (kind === 'io') {
      this.setImage(at, 4, (address | R.PCI_BASE_ADDRESS_SPACE_IO) >>> 0);
      this.setWritable(at, 4, lowAddressMask & R.PCI_BASE_ADDRESS_IO_MASK);
      return;
    }
    const flags =
      (wide ? R.PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (layout.prefetchable ? R.PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    this.setImage(at, 4, ((address % 2 ** 32) | flags) >>> 0);
    this.setWritable(at, 4, lowAddressMask & R.PCI_BASE_ADDRESS_MEM_MASK);
    if (wide) {
      this.setImage(at + 4, 4, Math.floor(address / 2 ** 32));
      this.setWritable(at + 4, 4, size > 2 ** 32 ? ~(Math.floor(size / 2 ** 32) - 1) >>> 0 : 0xffffffff);
    } else if (address >= 2 ** 32) {
      throw new PciConfigError(`BAR ${index}: a 32-bit BAR cannot sit at 0x${address.toString(16)}`);
    }
  }

  /**
   * Declares an expansion ROM of `size` bytes (a power of two, 2 KiB..2 GiB): its BAR at 0x30 sizes as a memory BAR
   * does, and bit 0 enables decoding (with COMMAND.MEMORY). Power-on: unassigned and disabled.
   */
  defineRom(size: number): void {
    if (!isPowerOfTwo(size) || size < 0x800 || size > 2 ** 31)
      throw new PciConfigError(`ROM size ${size} must be a power of two in 2 KiB..2 GiB`);
    this.romBytes = size;
    this.setImage(R.PCI_ROM_ADDRESS, 4, 0);
    this.setWritable(R.PCI_ROM_ADDRESS, 4, ((~(size - 1) & R.PCI_ROM_ADDRESS_MASK) | R.PCI_ROM_ADDRESS_ENABLE) >>> 0);
  }

  /** Bytes of the expansion ROM (0: none). */
  get romSize(): number {
    return this.romBytes;
  }

  /** Where the ROM sits while its enable bit is set (null: no ROM, or disabled); whether it decodes is the bus's call. */
  romAddress(): number | null {
    if (!this.romBytes) return null;
    const value = this.u32(R.PCI_ROM_ADDRESS);
    return value & R.PCI_ROM_ADDRESS_ENABLE ? (value & R.PCI_ROM_ADDRESS_MASK) >>> 0 : null;
  }

  /** BAR i as declared (undefined for unused BARs and the upper half of a 64-bit BAR). */
  barLayout(index: number): PciBarLayout | undefined {
    return this.bars[index];
  }

  /**
   * Appends a capability of `length` bytes (id and next pointer included) to the list and returns its offset.
   * The caller fills its power-on contents and writable bits with setImage / setWritable.
   */
  addCapability(id: number, length: number): number {
    const offset = this.nextCap;
    if (length < 2 || offset + length > R.PCI_CONFIG_SPACE_SIZE)
      throw new PciConfigError(`capability 0x${id.toString(16)} of ${length} bytes does not fit`);
    this.setImage(offset + R.PCI_CAP_LIST_ID, 1, id);
    this.setImage(offset + R.PCI_CAP_LIST_NEXT, 1, 0);
    if (this.lastCap === 0) {
      this.setImage(R.PCI_CAPABILITY_LIST, 1, offset);
      this.setImage(R.PCI_STATUS, 2, this.imageU16(R.PCI_STATUS) | R.PCI_STATUS_CAP_LIST);
    } else {
      this.setImage(this.lastCap + R.PCI_CAP_LIST_NEXT, 1, offset);
    }
    this.lastCap = offset;
    this.nextCap = (offset + length + 3) & ~3;
    return offset;
  }

  /** Appends an extended capability (0x100..0xfff, 4096-byte spaces only); returns its offset. */
  addExtendedCapability(id: number, version: number, length: number): number {
    if (this.size !== R.PCIE_CONFIG_SPACE_SIZE)
      throw new PciConfigError('extended capabilities need a 4096-byte config space');
    const offset = this.nextExtCap;
    if (length < 4 || offset + length > R.PCIE_CONFIG_SPACE_SIZE)
      throw new PciConfigError(`extended capability 0x${id.toString(16)} does not fit`);
    this.setImage(offset, 4, R.pciExtCapHeader(id, version, 0));
    if (this.lastExtCap !== 0) {
      const prev = this.imageU32(this.lastExtCap);
      this.setImage(this.lastExtCap, 4, ((prev & 0x000fffff) | (offset << 20)) >>> 0);
    }
    this.lastExtCap = offset;
    this.nextExtCap = (offset + length + 3) & ~3;
    return offset;
  }

  private imageU16(offset: number): number {
    return this.image[offset] | (this.image[offset + 1] << 8);
  }

  private imageU32(offset: number): number {
    return (
      (this.image[offset] |
        (this.image[offset + 1] << 8) |
        (this.image[offset + 2] << 16) |
        (this.image[offset + 3] << 24)) >>>
      0
    );
  }

  // ---- live state -------------------------------------------------------------------------------------------

  /** Power-on state: the image into the record. */
  reset(): void {
    this.bytes.set(this.image);
  }

  /** A guest (or firmware) read of `size` bytes; bytes past the visible space read as all-ones. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const byte = at >= 0 && at < this.size ? this.bytes[at] : 0xff;
      value |= byte << (8 * i);
    }
    return value >>> 0;
  }

  /** A guest write: only writable bits change, W1C bits clear where a 1 is written; the rest is ignored. */
  write(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      if (at < 0 || at >= this.size) continue;
      const v = (value >>> (8 * i)) & 0xff;
      const w = this.wmask[at];
      let b = (this.bytes[at] & ~w) | (v & w);
      b &= ~(v & this.w1cmask[at]);
      this.bytes[at] = b;
    }
  }

  u8(offset: number): number {
    return this.bytes[offset];
  }

  u16(offset: number): number {
    return this.bytes[offset] | (this.bytes[offset + 1] << 8);
  }

  u32(offset: number): number {
    return (
      (this.bytes[offset] |
        (this.bytes[offset + 1] << 8) |
        (this.bytes[offset + 2] << 16) |
        (this.bytes[offset + 3] << 24)) >>>
      0
    );
  }

  /** Device-side update of read-only bits (status, capability registers): bypasses the write masks. */
  setU16(offset: number, value: number): void {
    this.bytes[offset] = value & 0xff;
    this.bytes[offset + 1] = (value >>> 8) & 0xff;
  }

  get command(): number {
    return this.u16(R.PCI_COMMAND);
  }

  /** Sets or clears status bits the device owns (INTERRUPT), leaving the rest. */
  setStatusBits(bits: number, on: boolean): void {
    const s = this.u16(R.PCI_STATUS);
    this.setU16(R.PCI_STATUS, on ? s | bits : s & ~bits);
  }

  /** The address BAR i holds now (null when undeclared); whether it decodes is the bus's decision. */
  barAddress(index: number): number | null {
    const layout = this.bars[index];
    if (!layout) return null;
    const at = R.PCI_BASE_ADDRESS_0 + 4 * index;
    const low = this.u32(at);
    if (layout.kind === 'io') return (low & R.PCI_BASE_ADDRESS_IO_MASK) >>> 0;
    const base = (low & R.PCI_BASE_ADDRESS_MEM_MASK) >>> 0;
    if (layout.kind === 'mmio32') return base;
    const high = this.u32(at + 4);
    // Past 2^53 is no address we could decode (and no window reaches it).
    if (high >= 2 ** 21) return Number.MAX_SAFE_INTEGER;
    return high * 2 ** 32 + base;
  }
}

/** True if [offset, offset+size) touches [start, start+length). */
export function touches(offset: number, size: number, start: number, length: number): boolean {
  return offset < start + length && start < offset + size;
}
