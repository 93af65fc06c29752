// Translating a guest linear address to a guest-physical one by walking the guest's page tables through
// GuestMemory (bounds-checked), for failure reports: "the instruction bytes at RIP" need the physical address.
// Handles no paging, 32-bit paging (with 4 MiB pages when PSE), PAE and 4-level long-mode paging (2 MiB / 1 GiB
// pages). 5-level paging (CR4.LA57) is reported as untranslatable.
import type { GuestMemory } from '../memory/guest-memory.js';
import { CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA } from '../../kvm/bindings/x86-control-bits.js';

const PRESENT = 1n;
const PAGE_SIZE_BIT = 1n << 7n;
const ADDR_MASK_64 = 0x000f_ffff_ffff_f000n;

export interface PagingRegs {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** The guest-physical address of `linear`, or null if it is not mapped (or a table lies outside RAM). */
export function linearToPhysical(mem: GuestMemory, regs: PagingRegs, linear: bigint): bigint | null {
  if ((regs.cr0 & CR0_PG) === 0n) return linear & 0xffff_ffffn;
  const read64 = (gpa: bigint): bigint | null => (mem.contains(Number(gpa), 8) ? mem.readU64(Number(gpa)) : null);
  const read32 = (gpa: bigint): bigint | null =>
    mem.contains(Number(gpa), 4) ? BigInt(mem.readU32(Number(gpa))) : null;

  if (regs.efer & EFER_LMA) {
    if (regs.cr4 & CR4_LA57) return null;
    let table = regs.cr3 & ADDR_MASK_64;
    for (let level = 4; level >= 1; level--) {
      const shift = BigInt(12 + 9 * (level - 1));
      const entry = read64(table + ((linear >> shift) & 0x1ffn) * 8n);
      if (entry === null || (entry & PRESENT) === 0n) return null;
      if ((level === 3 || level === 2) && entry & PAGE_SIZE_BIT) {
        const pageMask = (1n << shift) - 1n;
        return (entry & ADDR_MASK_64 & ~pageMask) | (linear & pageMask);
      }
      table = entry & ADDR_MASK_64;
    }
    return table | (linear & 0xfffn);
  }
  if (regs.cr4 & CR4_PAE) {
    const pdpte = read64((regs.cr3 & 0xffff_ffe0n) + ((linear >> 30n) & 3n) * 8n);
    if (pdpte === null || (pdpte & PRESENT) === 0n) return null;
    const pde = read64((pdpte & ADDR_MASK_64) + ((linear >> 21n) & 0x1ffn) * 8n);
    if (pde === null || (pde & PRESENT) === 0n) return null;
    if (pde & PAGE_SIZE_BIT) return (pde & ADDR_MASK_64 & ~0x1f_ffffn) | (linear & 0x1f_ffffn);
    const pte = read64((pde & ADDR_MASK_64) + ((linear >> 12n) & 0x1ffn) * 8n);
    if (pte === null || (pte & PRESENT) === 0n) return null;
    return (pte & ADDR_MASK_64) | (linear & 0xfffn);
  }
  const pde = read32((regs.cr3 & 0xffff_f000n) + ((linear >> 22n) & 0x3ffn) * 4n);
  if (pde === null || (pde & PRESENT) === 0n) return null;
  if (pde & PAGE_SIZE_BIT && regs.cr4 & CR4_PSE) return (pde & 0xffc0_0000n) | (linear & 0x3f_ffffn);
  const pte = read32((pde & 0xffff_f000n) + ((linear >> 12n) & 0x3ffn) * 4n);
  if (pte === null || (pte & PRESENT) === 0n) return null;
  return (pte & 0xffff_f000n) | (linear & 0xfffn);
}
