// Where guest RAM sits in an x86 PC's physical address space. Below 4 GiB the top gigabyte is the PCI hole: PCI
// BARs, the IOAPIC (0xfec00000), the local APIC (0xfee00000) and the BIOS flash all live there, so RAM beyond
// 3 GiB is placed above 4 GiB instead. One backend holds all the RAM; each region says where in it it starts.

/** Start of the PCI hole: RAM below, MMIO above. */
export const X86_PCI_HOLE_START = 0xc000_0000;
/** End of the PCI hole (4 GiB): RAM above 3 GiB continues here. */
export const X86_PCI_HOLE_END = 0x1_0000_0000;
export const X86_PCI_HOLE_SIZE = X86_PCI_HOLE_END - X86_PCI_HOLE_START;
/** Where the RAM above the hole starts. */
export const X86_HIGH_RAM_START = X86_PCI_HOLE_END;

/** One contiguous piece of guest RAM: guest-physical address, size, and offset into the backend. */
export interface RamLayoutRegion {
  readonly gpa: number;
  readonly size: number;
  readonly offset: number;
}

/** `[0, min(size, 3 GiB))` and, for more RAM, `[4 GiB, 4 GiB + size - 3 GiB)` at backend offset 3 GiB. */
export function x86RamLayout(ramSize: number): RamLayoutRegion[] {
  if (!Number.isSafeInteger(ramSize) || ramSize <= 0)
    throw new RangeError(`RAM size ${ramSize} is not a positive byte count`);
  const low = Math.min(ramSize, X86_PCI_HOLE_START);
  const regions: RamLayoutRegion[] = [{ gpa: 0, size: low, offset: 0 }];
  if (ramSize > low) {
    const high = ramSize - low;
    if (!Number.isSafeInteger(X86_HIGH_RAM_START + high))
      throw new RangeError(`RAM size ${ramSize} does not fit the address space`);
    regions.push({ gpa: X86_HIGH_RAM_START, size: high, offset: low });
  }
  return regions;
}
