// The e820 memory map a guest is told about (multiboot mmap, later Linux boot_params). Built from the machine's RAM
// regions the way SeaBIOS reports them under QEMU, so a guest sees the same map under tsvmm: the legacy window
// 0x9fc00-0x100000 is not usable RAM (EBDA reserved, VGA/option-ROM area absent, BIOS area 0xf0000 reserved, where
// MP/ACPI tables go).

/** E820 entry types (ACPI "address range types"). */
export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export const E820_UNUSABLE = 5;

export interface E820Entry {
  /** Guest-physical start. */
  addr: number;
  /** Length in bytes (> 0). */
  size: number;
  type: number;
}

/** A RAM region as the machine lays it out. */
export interface RamRegion {
  start: number;
  size: number;
}

/** Start of the extended BIOS data area SeaBIOS reserves (the last KiB below 640 KiB). */
export const EBDA_START = 0x9fc00;
/** End of conventional memory (VGA window starts here). */
export const LOW_MEMORY_END = 0xa0000;
/** The system BIOS area, reported reserved. */
export const BIOS_AREA_START = 0xf0000;
/** 1 MiB: start of extended memory. */
export const HIGH_MEMORY_START = 0x100000;

/**
 * Builds the e820 map for RAM `regions` plus any extra `reserved` ranges, sorted by address. RAM inside
 * [EBDA_START, HIGH_MEMORY_START) is split out: [EBDA_START, 640K) and [0xf0000, 1M) become reserved, the VGA and
 * option-ROM window is left out.
 */
export function e820FromRam(regions: readonly RamRegion[], reserved: readonly RamRegion[] = []): E820Entry[] {
  const out: E820Entry[] = [];
  const add = (addr: number, end: number, type: number) => {
    if (end > addr) out.push({ addr, size: end - addr, type });
  };
  for (const r of regions) {
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.size) || r.start < 0 || r.size <= 0) {
      throw new RangeError(`bad RAM region start=${r.start} size=${r.size}`);
    }
    const end = r.start + r.size;
    // Usable below the EBDA, the two reserved legacy pieces where RAM covers them, usable above 1 MiB.
    add(r.start, Math.min(end, EBDA_START), E820_RAM);
    add(Math.max(r.start, EBDA_START), Math.min(end, LOW_MEMORY_END), E820_RESERVED);
    add(Math.max(r.start, BIOS_AREA_START), Math.min(end, HIGH_MEMORY_START), E820_RESERVED);
    add(Math.max(r.start, HIGH_MEMORY_START), end, E820_RAM);
  }
  for (const r of reserved) add(r.start, r.start + r.size, E820_RESERVED);
  out.sort((a, b) => a.addr - b.addr || a.type - b.type);
  return out;
}

/**
 * Multiboot's mem_lower / mem_upper in KiB, derived from the map: usable memory from 0 (at most 640 KiB), and
 * contiguous usable memory from 1 MiB up to the first hole.
 */
export function lowerUpperKiB(map: readonly E820Entry[]): { lower: number; upper: number } {
  const usable = map.filter((e) => e.type === E820_RAM).sort((a, b) => a.addr - b.addr);
  const contiguousFrom = (addr: number): number => {
    let end = addr;
    for (const e of usable) {
      if (e.addr <= end && e.addr + e.size > end) end = e.addr + e.size;
    }
    return end - addr;
  };
  const lower = Math.min(contiguousFrom(0), LOW_MEMORY_END);
  const upper = contiguousFrom(HIGH_MEMORY_START);
  return { lower: Math.floor(lower / 1024), upper: Math.min(Math.floor(upper / 1024), 0xffffffff) };
}
