// Building `struct boot_params` (the "zero page") for the 64-bit boot protocol: a page of zeros, the kernel's own
// setup header copied in (a bzImage) or a minimal one (an ELF vmlinux entered at startup_64), then the fields a loader
// writes, and the e820 map (boot.rst "64-bit Boot Protocol", zero-page.rst).
import type { E820Entry } from '../e820.js';
import { LinuxBootError } from './error.js';
import {
  BOOT_E820_ENTRY,
  BOOT_E820_ENTRY_SIZE,
  BOOT_PARAMS,
  BOOT_PARAMS_SIZE,
  E820_MAX_ENTRIES_ZEROPAGE,
  SETUP_HEADER,
  SETUP_HEADER_MAX_END,
  type SetupHeaderField,
} from './layout.js';
import { hex } from '../../util/hex.js';

export interface ZeroPageSpec {
  /** The image's setup header bytes [0x1f1, end), copied first; null for an ELF kernel (no header of its own). */
  header: Uint8Array | null;
  /** setup_header fields to write over the copy. */
  fields: Partial<Record<SetupHeaderField, number>>;
  /** The memory map (sorted or not: written sorted by address). */
  e820: readonly E820Entry[];
  /** Physical address of the ACPI RSDP, if the machine has ACPI tables. */
  acpiRsdpAddr?: number;
}

/** Writes one setup_header field into a boot_params buffer, checking that the value fits the field. */
export function writeHeaderField(page: DataView, field: SetupHeaderField, value: number): void {
  const [at, size] = SETUP_HEADER[field];
  if (!Number.isSafeInteger(value) || value < 0 || (size < 8 && value >= 2 ** (size * 8))) {
    throw new LinuxBootError(`${field} = ${value} does not fit its ${size}-byte field`);
  }
  switch (size) {
    case 1:
      page.setUint8(at, value);
      break;
    case 2:
      page.setUint16(at, value, true);
      break;
    case 4:
      page.setUint32(at, value, true);
      break;
    default:
      page.setBigUint64(at, BigInt(value), true);
  }
}

/** Checks a memory map and returns it sorted by address. */
export function checkedMemoryMap(e820: readonly E820Entry[]): E820Entry[] {
  if (e820.length === 0) throw new LinuxBootError('no memory map given');
  if (e820.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new LinuxBootError(
      `memory map has ${e820.length} entries; boot_params holds at most ${E820_MAX_ENTRIES_ZEROPAGE}`,
    );
  }
  for (const e of e820) {
    if (
      !Number.isSafeInteger(e.addr) ||
      !Number.isSafeInteger(e.size) ||
      e.addr < 0 ||
      e.size <= 0 ||
      !Number.isInteger(e.type) ||
      e.type < 0 ||
      e.type > 0xffffffff
    ) {
      throw new LinuxBootError(`bad memory map entry addr=${e.addr} size=${e.size} type=${e.type}`);
    }
  }
  return [...e820].sort((a, b) => a.addr - b.addr || a.type - b.type);
}

/** The 4096 bytes of boot_params for `spec`. */
export function buildZeroPage(spec: ZeroPageSpec): Uint8Array {
  const page = new Uint8Array(BOOT_PARAMS_SIZE);
  const dv = new DataView(page.buffer);
  if (spec.header) {
    if (BOOT_PARAMS.hdr + spec.header.length > SETUP_HEADER_MAX_END) {
      throw new LinuxBootError(
        `setup header of ${spec.header.length} bytes does not fit boot_params (ends past ${hex(SETUP_HEADER_MAX_END)})`,
      );
    }
    page.set(spec.header, BOOT_PARAMS.hdr);
  }
  for (const [field, value] of Object.entries(spec.fields) as [SetupHeaderField, number][]) {
    writeHeaderField(dv, field, value);
  }
  const map = checkedMemoryMap(spec.e820);
  page[BOOT_PARAMS.e820_entries] = map.length;
  map.forEach((e, i) => {
    const at = BOOT_PARAMS.e820_table + i * BOOT_E820_ENTRY_SIZE;
    dv.setBigUint64(at + BOOT_E820_ENTRY.addr, BigInt(e.addr), true);
    dv.setBigUint64(at + BOOT_E820_ENTRY.size, BigInt(e.size), true);
    dv.setUint32(at + BOOT_E820_ENTRY.type, e.type, true);
  });
  if (spec.acpiRsdpAddr !== undefined) {
    if (!Number.isSafeInteger(spec.acpiRsdpAddr) || spec.acpiRsdpAddr <= 0) {
      throw new LinuxBootError(`bad ACPI RSDP address ${spec.acpiRsdpAddr}`);
    }
    dv.setBigUint64(BOOT_PARAMS.acpi_rsdp_addr, BigInt(spec.acpiRsdpAddr), true);
  }
  return page;
}
