// Address-range buses: the port I/O space (64 KiB) and the MMIO space. A vCPU exit is dispatched to the device
// window that covers it; accesses nobody claims read as all-ones and writes vanish, as on a PC's open bus.
import type { AccessSize, AddressSpace, IoHandler, IoRegion } from './types.js';

const PIO_SPACE = 0x10000;

/** Bytes of all-ones for an access width: what an unclaimed read returns. */
const ONES: Record<number, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff, 8: 0xffffffff };
const MASK = ONES;

export class BusConflictError extends Error {
  constructor(space: AddressSpace, a: IoRegion, b: IoRegion) {
    super(
      `${space} window of ${a.name} [0x${a.base.toString(16)}+0x${a.length.toString(16)}) overlaps ` +
        `${b.name} [0x${b.base.toString(16)}+0x${b.length.toString(16)})`,
    );
    this.name = 'BusConflictError';
  }
}

/** Port I/O: a 64 Ki-entry table from port to window, so dispatch is one array load. */
export class PioBus {
  private readonly regions: IoRegion[] = [undefined as unknown as IoRegion];
  private readonly owner = new Uint16Array(PIO_SPACE);

  add(region: IoRegion): void {
    if (region.space !== 'pio') throw new Error(`${region.name}: not a port I/O window`);
    const { base, length } = region;
    if (!Number.isInteger(base) || !Number.isInteger(length) || base < 0 || length <= 0 || base + length > PIO_SPACE) {
      throw new RangeError(`${region.name}: port window 0x${base.toString(16)}+${length} outside the I/O space`);
    }
    for (let p = base; p < base + length; p++) {
      if (this.owner[p] !== 0) throw new BusConflictError('pio', region, this.regions[this.owner[p]]);
    }
    const index = this.regions.push(region) - 1;
    this.owner.fill(index, base, base + length);
  }

  /** The window owning `port`, if any. */
  find(port: number): IoRegion | undefined {
    const i = this.owner[port & 0xffff];
    return i === 0 ? undefined : this.regions[i];
  }

  read(port: number, size: AccessSize): number {
    const region = this.regions[this.owner[port]];
    if (region === undefined) return ONES[size];
    const offset = port - region.base;
    if (offset + size <= region.length) return region.handler.read(offset, size) & MASK[size];
    return splitRead((p, s) => this.read(p, s), port, size);
  }

  write(port: number, size: AccessSize, value: number): void {
    const region = this.regions[this.owner[port]];
    if (region === undefined) return;
    const offset = port - region.base;
    if (offset + size <= region.length) region.handler.write(offset, size, (value & MASK[size]) >>> 0);
    else splitWrite((p, s, v) => this.write(p, s, v), port, size, value);
  }

  get windows(): readonly IoRegion[] {
    return this.regions.slice(1);
  }
}

/** MMIO: windows sorted by base, found by binary search. */
export class MmioBus {
  private readonly sorted: IoRegion[] = [];

  add(region: IoRegion): void {
    if (region.space !== 'mmio') throw new Error(`${region.name}: not an MMIO window`);
    const { base, length } = region;
    if (
      !Number.isSafeInteger(base) ||
      !Number.isSafeInteger(length) ||
      base < 0 ||
      length <= 0 ||
      !Number.isSafeInteger(base + length)
    ) {
      throw new RangeError(`${region.name}: bad MMIO window 0x${base.toString(16)}+${length}`);
    }
    for (const other of this.sorted) {
      if (base < other.base + other.length && other.base < base + length)
        throw new BusConflictError('mmio', region, other);
    }
    this.sorted.push(region);
    this.sorted.sort((a, b) => a.base - b.base);
  }

  find(address: number): IoRegion | undefined {
    const list = this.sorted;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = list[mid];
      if (address < r.base) hi = mid - 1;
      else if (address >= r.base + r.length) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  read(address: number, size: AccessSize): number | bigint {
    if (!isAccessSize(size)) return splitRead((a, s) => this.read(a, s) as number, address, size);
    if (size === 8) {
      const lo = this.read(address, 4) as number;
      const hi = this.read(address + 4, 4) as number;
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    const region = this.find(address);
    if (region === undefined) return ONES[size];
    const offset = address - region.base;
    if (offset + size <= region.length) return (region.handler.read(offset, size) & MASK[size]) >>> 0;
    return splitRead((a, s) => this.read(a, s) as number, address, size);
  }

  write(address: number, size: AccessSize, value: number | bigint): void {
    if (!isAccessSize(size)) {
      splitWrite((a, s, x) => this.write(a, s, x), address, size, Number(value));
      return;
    }
    if (size === 8) {
      const v = BigInt(value);
      this.write(address, 4, Number(v & 0xffffffffn));
      this.write(address + 4, 4, Number((v >> 32n) & 0xffffffffn));
      return;
    }
    const region = this.find(address);
    if (region === undefined) return;
    const offset = address - region.base;
    const n = Number(value);
    if (offset + size <= region.length) region.handler.write(offset, size, (n & MASK[size]) >>> 0);
    else splitWrite((a, s, x) => this.write(a, s, x), address, size, n);
  }

  get windows(): readonly IoRegion[] {
    return this.sorted;
  }
}

/** KVM reports MMIO lengths of 1..8; odd ones (3, 5…) go byte by byte. */
function isAccessSize(size: number): size is AccessSize {
  return size === 1 || size === 2 || size === 4 || size === 8;
}

/**
 * An access that runs off the end of a window becomes `size` byte accesses, each dispatched on its own (as QEMU
 * does); byte i lands in bits 8i..8i+7 of the value. The PCI bus splits with the same helper.
 */
export function splitRead(read: (at: number, size: AccessSize) => number, at: number, size: number): number {
  let value = 0;
  for (let i = 0; i < size; i++) value |= (read(at + i, 1) & 0xff) << (8 * i);
  return value >>> 0;
}

export function splitWrite(
  write: (at: number, size: AccessSize, value: number) => void,
  at: number,
  size: number,
  value: number,
): void {
  for (let i = 0; i < size; i++) write(at + i, 1, (value >>> (8 * i)) & 0xff);
}

/** A window over a handler: the common way devices describe where they sit. */
export function pioWindow(name: string, base: number, length: number, handler: IoHandler): IoRegion {
  return { name, space: 'pio', base, length, handler };
}

export function mmioWindow(name: string, base: number, length: number, handler: IoHandler): IoRegion {
  return { name, space: 'mmio', base, length, handler };
}
