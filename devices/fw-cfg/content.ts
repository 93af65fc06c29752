// What fw_cfg serves: built once by the machine, immutable afterwards, and shared by every thread.
//
// `FwCfgContent` collects items (by key) and named files, then `build()` lays them out in ONE SharedArrayBuffer:
//   header  (16 bytes): magic "FWCB", format version, item count, flags (bit 0: DMA interface present)
//   index   (16 bytes per item, sorted by key): u16 key, u16 0, u32 0, u32 data offset, u32 data length
//   data    (item bytes back to back)
// all little-endian. The blob is plain data ({ buffer }), so it crosses to worker threads through workerData or
// postMessage without copying; each thread parses the index once into an `FwCfgItems`.
import {
  FW_CFG,
  FW_CFG_ARCH_LOCAL,
  FW_CFG_ENTRY_MASK,
  FW_CFG_FILE_ENTRY_SIZE,
  FW_CFG_ID_DMA,
  FW_CFG_ID_TRADITIONAL,
  FW_CFG_MAX_FILE_PATH,
  FW_CFG_WRITE_CHANNEL,
} from './keys.js';

/** The built content: one shared buffer (see the layout above). */
export interface FwCfgBlob {
  readonly buffer: SharedArrayBuffer;
}

const BLOB_MAGIC = 0x42435746; // "FWCB" little-endian
const BLOB_VERSION = 1;
const HEADER_SIZE = 16;
const INDEX_ENTRY_SIZE = 16;
const FLAG_DMA = 0x1;
const MAX_U32 = 0xffffffff;
/** File keys run from FILE_FIRST up to the end of the generic table. */
const MAX_FILES = FW_CFG_ENTRY_MASK - FW_CFG.FILE_FIRST + 1;

/** The table index of a selector: the arch-local bit and the 14-bit entry; the write-channel bit is ignored. */
export function itemKey(selector: number): number {
  return (selector & FW_CFG_ARCH_LOCAL) | (selector & FW_CFG_ENTRY_MASK);
}

export interface FwCfgContentOptions {
  /** Offer the DMA interface (ID bit 1, registers at 0x514). Default true, as on QEMU's pc machines. */
  readonly dma?: boolean;
}

/** Collects fw_cfg items and files; `build()` produces the shared blob. */
export class FwCfgContent {
  private readonly items = new Map<number, Uint8Array>();
  private readonly files = new Map<string, Uint8Array>();
  private readonly dma: boolean;

  constructor(options: FwCfgContentOptions = {}) {
    this.dma = options.dma ?? true;
  }

  /** Add an item by key (a copy of `data` is kept). SIGNATURE, ID and FILE_DIR are provided by `build()`. */
  add(key: number, data: Uint8Array): this {
    if (!Number.isInteger(key) || key < 0 || key > 0xffff)
      throw new RangeError(`fw_cfg: key ${key} is not a 16-bit selector`);
    if (key & FW_CFG_WRITE_CHANNEL) throw new RangeError(`fw_cfg: key 0x${key.toString(16)} has the write-channel bit`);
    if (key === FW_CFG.SIGNATURE || key === FW_CFG.ID || key === FW_CFG.FILE_DIR) {
      throw new Error(`fw_cfg: key 0x${key.toString(16)} is filled in by build()`);
    }
    if (!(key & FW_CFG_ARCH_LOCAL) && key >= FW_CFG.FILE_FIRST) {
      throw new RangeError(`fw_cfg: key 0x${key.toString(16)} is in the file range; use addFile`);
    }
    if (this.items.has(key)) throw new Error(`fw_cfg: key 0x${key.toString(16)} added twice`);
    checkItemSize(`key 0x${key.toString(16)}`, data.length);
    this.items.set(key, data.slice());
    return this;
  }

  addU16(key: number, value: number): this {
    return this.add(key, littleEndian(value, 2));
  }

  addU32(key: number, value: number): this {
    return this.add(key, littleEndian(value, 4));
  }

  addU64(key: number, value: number | bigint): this {
    const v = BigInt(value);
    if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`fw_cfg: ${value} does not fit in 64 bits`);
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, v, true);
    return this.add(key, bytes);
  }

  /** A string item as QEMU's fw_cfg_add_string stores it: the UTF-8 bytes and a terminating NUL. */
  addString(key: number, value: string): this {
    const utf8 = new TextEncoder().encode(value);
    const bytes = new Uint8Array(utf8.length + 1);
    bytes.set(utf8);
    return this.add(key, bytes);
  }

  /** A named file (printable ASCII, at most 55 characters). Files get keys from FILE_FIRST in name order. */
  addFile(name: string, data: Uint8Array): this {
    if (name.length === 0 || name.length > FW_CFG_MAX_FILE_PATH - 1 || !/^[\x20-\x7e]+$/.test(name)) {
      throw new RangeError(
        `fw_cfg: file name '${name}' must be 1-${FW_CFG_MAX_FILE_PATH - 1} printable ASCII characters`,
      );
    }
    if (this.files.has(name)) throw new Error(`fw_cfg: file '${name}' added twice`);
    if (this.files.size >= MAX_FILES) throw new RangeError(`fw_cfg: more than ${MAX_FILES} files`);
    checkItemSize(`file '${name}'`, data.length);
    this.files.set(name, data.slice());
    return this;
  }

  /** Lay everything out in one SharedArrayBuffer. */
  build(): FwCfgBlob {
    const all = new Map(this.items);
    all.set(FW_CFG.SIGNATURE, new TextEncoder().encode('QEMU'));
    all.set(FW_CFG.ID, littleEndian(FW_CFG_ID_TRADITIONAL | (this.dma ? FW_CFG_ID_DMA : 0), 4));
    if (!all.has(FW_CFG.UUID)) all.set(FW_CFG.UUID, new Uint8Array(16)); // QEMU always has one (zeros by default)

    // Files in byte order of their names (QEMU sorts with strcmp), keys assigned in that order.
    const names = [...this.files.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const dir = new Uint8Array(4 + names.length * FW_CFG_FILE_ENTRY_SIZE);
    const dv = new DataView(dir.buffer);
    dv.setUint32(0, names.length, false);
    names.forEach((name, i) => {
      const data = this.files.get(name)!;
      const at = 4 + i * FW_CFG_FILE_ENTRY_SIZE;
      dv.setUint32(at, data.length, false);
      dv.setUint16(at + 4, FW_CFG.FILE_FIRST + i, false);
      dv.setUint16(at + 6, 0, false);
      for (let c = 0; c < name.length; c++) dir[at + 8 + c] = name.charCodeAt(c);
      all.set(FW_CFG.FILE_FIRST + i, data);
    });
    all.set(FW_CFG.FILE_DIR, dir);

    const keys = [...all.keys()].sort((a, b) => a - b);
    const indexEnd = HEADER_SIZE + keys.length * INDEX_ENTRY_SIZE;
    let total = indexEnd;
    for (const k of keys) total += all.get(k)!.length;
    if (total > MAX_U32) throw new RangeError(`fw_cfg: ${total} bytes of content exceed the 4 GiB format limit`);

    const buffer = new SharedArrayBuffer(total);
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    view.setUint32(0, BLOB_MAGIC, true);
    view.setUint32(4, BLOB_VERSION, true);
    view.setUint32(8, keys.length, true);
    view.setUint32(12, this.dma ? FLAG_DMA : 0, true);
    let dataAt = indexEnd;
    keys.forEach((key, i) => {
      const data = all.get(key)!;
      const at = HEADER_SIZE + i * INDEX_ENTRY_SIZE;
      view.setUint16(at, key, true);
      view.setUint32(at + 8, dataAt, true);
      view.setUint32(at + 12, data.length, true);
      bytes.set(data, dataAt);
      dataAt += data.length;
    });
    return { buffer };
  }
}

/** One thread's read-only view of a blob: the index as a key → (offset, length) table. */
export class FwCfgItems {
  /** All of the blob's bytes; an item's data is `bytes.subarray(offset, offset + length)`. */
  readonly bytes: Uint8Array;
  readonly dma: boolean;
  private readonly slot = new Map<number, number>();
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;

  constructor(blob: FwCfgBlob) {
    const { buffer } = blob;
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < HEADER_SIZE)
      throw new Error('fw_cfg: not a content blob');
    const view = new DataView(buffer);
    if (view.getUint32(0, true) !== BLOB_MAGIC) throw new Error('fw_cfg: content blob has a bad magic');
    if (view.getUint32(4, true) !== BLOB_VERSION)
      throw new Error(`fw_cfg: content blob version ${view.getUint32(4, true)} is not ${BLOB_VERSION}`);
    const count = view.getUint32(8, true);
    if (count > (buffer.byteLength - HEADER_SIZE) / INDEX_ENTRY_SIZE)
      throw new Error('fw_cfg: content blob index is truncated');
    this.dma = (view.getUint32(12, true) & FLAG_DMA) !== 0;
    this.bytes = new Uint8Array(buffer);
    this.offsets = new Uint32Array(count);
    this.lengths = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const at = HEADER_SIZE + i * INDEX_ENTRY_SIZE;
      const key = view.getUint16(at, true);
      const offset = view.getUint32(at + 8, true);
      const length = view.getUint32(at + 12, true);
      if (offset + length > buffer.byteLength)
        throw new Error(`fw_cfg: item 0x${key.toString(16)} lies outside the blob`);
      if (itemKey(key) !== key || this.slot.has(key))
        throw new Error(`fw_cfg: bad or repeated key 0x${key.toString(16)}`);
      this.slot.set(key, i);
      this.offsets[i] = offset;
      this.lengths[i] = length;
    }
  }

  /** The slot of an item (by normalized key), or -1 if there is no such item. */
  find(key: number): number {
    return this.slot.get(key) ?? -1;
  }

  offsetOf(slot: number): number {
    return this.offsets[slot];
  }

  lengthOf(slot: number): number {
    return this.lengths[slot];
  }

  /** A copy of an item's bytes (for tests and diagnostics), or undefined. */
  get(selector: number): Uint8Array | undefined {
    const slot = this.find(itemKey(selector));
    return slot < 0 ? undefined : this.bytes.slice(this.offsets[slot], this.offsets[slot] + this.lengths[slot]);
  }
}

/** fw_cfg sizes are 32-bit: an item's data (a key's or a file's) must fit. */
function checkItemSize(what: string, length: number): void {
  if (length > MAX_U32) throw new RangeError(`fw_cfg: ${what} is larger than 4 GiB`);
}

function littleEndian(value: number, size: 2 | 4): Uint8Array {
  const max = size === 2 ? 0xffff : MAX_U32;
  if (!Number.isInteger(value) || value < 0 || value > max)
    throw new RangeError(`fw_cfg: ${value} does not fit in ${size * 8} bits`);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  if (size === 2) view.setUint16(0, value, true);
  else view.setUint32(0, value, true);
  return bytes;
}
