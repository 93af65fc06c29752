// devices/fw-cfg.ts — QEMU's firmware configuration device, x86 I/O interface (docs/specs/fw_cfg.rst):
//   0x510  selector (16-bit write; selecting rewinds the data offset)
//   0x511  data (8-bit reads advance through the item; past its end they read 0; writes are ignored, QEMU >= 2.4)
//   0x514  DMA address, big-endian: a 32-bit write of the high half at 0x514, then of the low half at 0x518,
//          which starts the transfer described by the FWCfgDmaAccess structure at that guest address.
// The content is immutable configuration shared by all threads (see fw-cfg/content.ts); the record holds only
// the selector, the offset into the selected item and the DMA address halves.
import { u16, u32, clearRecord, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import type { AccessSize, IoHandler, IoRegion } from '../src/bus/types.js';
import { GuestMemoryError, type GuestMemory } from '../src/memory/guest-memory.js';
import { FwCfgItems, itemKey, type FwCfgBlob } from './fw-cfg/content.js';
import { pioRegion, singleRecordDevice } from './registration.js';
import {
  FW_CFG,
  FW_CFG_DMA_ACCESS_SIZE,
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_DMA_SIGNATURE,
  FW_CFG_INVALID,
} from './fw-cfg/keys.js';

export * from './fw-cfg/keys.js';
export { FwCfgContent, FwCfgItems, itemKey, type FwCfgBlob, type FwCfgContentOptions } from './fw-cfg/content.js';

export const FW_CFG_IO_BASE = 0x510;
/** 0x510-0x51B: selector/data at 0x510-0x511, DMA address at 0x514-0x51B (0x512-0x513 read as open bus). */
export const FW_CFG_IO_LENGTH = 12;

// ---- handler offsets (relative to 0x510) ----------------------------------------------------------------------
const OFFSET_SELECTOR = 0; // 16-bit write: select; 8-bit read/write: data (QEMU's "comb" region)
const OFFSET_DATA = 1; // 8-bit data
const OFFSET_DMA_HIGH = 4; // 0x514: high 32 bits of the FWCfgDmaAccess address (big-endian)
const OFFSET_DMA_LOW = 8; // 0x518: low 32 bits; writing it starts the transfer
const DMA_REGISTER_END = 12;

const SIGNATURE_BYTES = new TextEncoder().encode(FW_CFG_DMA_SIGNATURE);

/** What fw_cfg remembers between accesses. */
export const fwCfgState = {
  name: 'fw_cfg',
  version: 1,
  minVersion: 1,
  fields: [
    u16('selector'), // the selected item's key (write-channel bit dropped), or 0xFFFF for none
    u32('offset'), // next byte of the selected item
    u32('dmaAddrHigh'), // DMA address halves as written (already in host order)
    u32('dmaAddrLow'),
  ],
} as const satisfies Descriptor;

export type FwCfgState = StateOf<typeof fwCfgState>;

/**
 * fw_cfg at 0x510 (one IoHandler over the 12-byte window). One instance per thread over the same record and the
 * same content blob; every access runs under the machine lock.
 */
export class FwCfg implements IoHandler {
  private readonly items: FwCfgItems;

  constructor(
    private readonly state: FwCfgState,
    content: FwCfgBlob | FwCfgItems,
    private readonly memory: GuestMemory,
  ) {
    this.items = content instanceof FwCfgItems ? content : new FwCfgItems(content);
  }

  regions(base = FW_CFG_IO_BASE): IoRegion[] {
    return [{ name: 'fw_cfg', space: 'pio', base, length: FW_CFG_IO_LENGTH, handler: this }];
  }

  /** Power-on / reset: the signature item selected at offset 0, as QEMU's fw_cfg_reset does. */
  reset(): void {
    clearRecord(this.state);
    this.state.selector = FW_CFG.SIGNATURE;
  }

  /** Nothing to re-drive: fw_cfg has no interrupt and no timer. */
  restored(): void {}

  read(offset: number, size: AccessSize): number {
    if (offset === OFFSET_SELECTOR || offset === OFFSET_DATA) {
      return size === 1 ? this.readData() : 0; // only byte reads are valid there (QEMU)
    }
    if (offset >= OFFSET_DMA_HIGH && offset + size <= DMA_REGISTER_END && this.items.dma) {
      // Reading the DMA register returns "QEMU CFG" in memory order (a big-endian 64-bit signature).
      let value = 0;
      for (let i = 0; i < size; i++) value |= SIGNATURE_BYTES[offset - OFFSET_DMA_HIGH + i] << (8 * i);
      return value >>> 0;
    }
    return 0xffffffff; // nothing there
  }

  write(offset: number, size: AccessSize, value: number): void {
    const s = this.state;
    if (offset === OFFSET_SELECTOR && size === 2) {
      this.select(value & 0xffff);
      return;
    }
    if (!this.items.dma || size !== 4) return; // data-port writes are ignored; the DMA register takes 32-bit halves
    if (offset === OFFSET_DMA_HIGH) {
      s.dmaAddrHigh = swap32(value);
      s.dmaAddrLow = 0;
    } else if (offset === OFFSET_DMA_LOW) {
      s.dmaAddrLow = swap32(value);
      const address = s.dmaAddrHigh * 0x1_0000_0000 + s.dmaAddrLow;
      s.dmaAddrHigh = 0; // the next transfer starts from a clean address
      s.dmaAddrLow = 0;
      this.dmaTransfer(address);
    }
  }

  // ---- traditional interface --------------------------------------------------------------------------------

  private select(selector: number): void {
    const key = itemKey(selector);
    this.state.selector = this.items.find(key) >= 0 ? key : FW_CFG_INVALID;
    this.state.offset = 0;
  }

  private readData(): number {
    const s = this.state;
    const slot = s.selector === FW_CFG_INVALID ? -1 : this.items.find(s.selector);
    if (slot < 0 || s.offset >= this.items.lengthOf(slot)) return 0;
    const byte = this.items.bytes[this.items.offsetOf(slot) + s.offset];
    s.offset = s.offset + 1;
    return byte;
  }

  // ---- DMA interface ----------------------------------------------------------------------------------------

  /** Run the FWCfgDmaAccess at guest address `at`; report completion (0) or ERROR in its control field. */
  private dmaTransfer(at: number): void {
    const mem = this.memory;
    if (!mem.contains(at, FW_CFG_DMA_ACCESS_SIZE)) {
      this.writeControl(at, FW_CFG_DMA_CTL_ERROR); // likely unwritable too; then the guest just sees no completion
      return;
    }
    const raw = mem.read(at, FW_CFG_DMA_ACCESS_SIZE);
    const access = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const control = access.getUint32(0, false);
    let length = access.getUint32(4, false);
    const target = access.getBigUint64(8, false);

    if (control & FW_CFG_DMA_CTL_SELECT) this.select(control >>> 16);
    const read = (control & FW_CFG_DMA_CTL_READ) !== 0;
    const write = !read && (control & FW_CFG_DMA_CTL_WRITE) !== 0;
    const skip = !read && !write && (control & FW_CFG_DMA_CTL_SKIP) !== 0;
    if (!read && !write && !skip) length = 0;

    const s = this.state;
    let result = 0;
    let address = target;
    while (length > 0 && !(result & FW_CFG_DMA_CTL_ERROR)) {
      const slot = s.selector === FW_CFG_INVALID ? -1 : this.items.find(s.selector);
      const itemLength = slot < 0 ? 0 : this.items.lengthOf(slot);
      let n: number;
      if (s.offset >= itemLength) {
        // Past the end (or nothing selected): reads fill zeros, skips just advance, writes fail.
        n = length;
        if (read && !this.guestFill(address, n)) result |= FW_CFG_DMA_CTL_ERROR;
        if (write) result |= FW_CFG_DMA_CTL_ERROR;
      } else {
        n = Math.min(length, itemLength - s.offset);
        if (read) {
          const from = this.items.offsetOf(slot) + s.offset;
          if (!this.guestWrite(address, this.items.bytes.subarray(from, from + n))) result |= FW_CFG_DMA_CTL_ERROR;
        }
        if (write) result |= FW_CFG_DMA_CTL_ERROR; // no item is writable
        s.offset = s.offset + n;
      }
      address += BigInt(n);
      length -= n;
    }
    this.writeControl(at, result);
  }

  /** Copy into guest RAM; false (never a throw) when the range is not wholly in RAM. */
  private guestWrite(address: bigint, bytes: Uint8Array): boolean {
    const gpa = toGpa(address);
    if (gpa === null || !this.memory.contains(gpa, bytes.length)) return false;
    return guarded(() => this.memory.write(gpa, bytes));
  }

  private guestFill(address: bigint, length: number): boolean {
    const gpa = toGpa(address);
    if (gpa === null || !this.memory.contains(gpa, length)) return false;
    return guarded(() => this.memory.fill(gpa, length, 0));
  }

  /** Store the big-endian control word back into the FWCfgDmaAccess, if it can be stored at all. */
  private writeControl(at: number, control: number): void {
    if (!this.memory.contains(at, 4)) return;
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, control, false);
    guarded(() => this.memory.write(at, bytes));
  }
}

/** The guest's big-endian halves arrive as little-endian port values: swap to get the number the guest meant. */
function swap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

function toGpa(address: bigint): number | null {
  return address <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(address) : null;
}

/** Run a checked guest-memory access; a GuestMemoryError becomes `false`, anything else is a bug and propagates. */
function guarded(access: () => void): boolean {
  try {
    access();
    return true;
  } catch (e) {
    if (e instanceof GuestMemoryError) return false;
    throw e;
  }
}

/** The device table's spec: the items it serves, built once by the machine (they cross to every thread). */
export interface FwCfgSpec {
  readonly kind: 'fw-cfg';
  readonly id: string;
  readonly content: FwCfgBlob;
}

/** Always present at 0x510, serving what the machine plan built from the configuration (QEMU's pc items). */
export const fwCfgDevice = singleRecordDevice({
  kind: 'fw-cfg',
  descriptor: fwCfgState,
  plan: ({ fwCfg }: { fwCfg(): FwCfgBlob }): FwCfgSpec[] => [{ kind: 'fw-cfg', id: 'fw-cfg', content: fwCfg() }],
  create: (state, env, spec: FwCfgSpec) => {
    const dev = new FwCfg(state, spec.content, env.memory);
    return {
      regions: [pioRegion(spec.id, FW_CFG_IO_BASE, FW_CFG_IO_LENGTH, dev)],
      reset: () => dev.reset(),
      restored: () => dev.restored(),
    };
  },
});
