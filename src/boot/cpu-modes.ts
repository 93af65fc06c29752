// Initial vCPU state for starting guest code directly in real, 32-bit protected or 64-bit long mode, without a
// BIOS. The result is plain data (`BootCpuState`) that the machine merges over what KVM reports for a fresh vCPU
// (so apicBase, cr8 and the pending-interrupt bitmap keep KVM's values). Protected and long mode need a GDT, a TSS
// (VMX entry requires a usable TR) and, for long mode, identity-mapped page tables: those are written into guest
// RAM at the fixed low addresses below, which a guest must not load over (the loaders check this).
//
// Reserved guest-physical ranges (like Firecracker/kvmtool, low memory that no BIOS image uses here):
//   0x0500 - 0x0fff  boot GDT (0x500), boot TSS (0x600), and the initial stack (top 0x1000, grows down to ~0x700)
//   0x9000 - 0xefff  long mode only: PML4 (0x9000), PDPT (0xa000), four page directories (0xb000 - 0xefff)
// Everything else is the guest's. The IVT and BIOS data area (0x0 - 0x4ff) are left alone for real-mode guests.
//
// Every segment register value below is derived from the same descriptor table that is written to RAM, so a guest
// that reloads a selector (e.g. `mov $0x18, %ax; mov %ax, %ds`) gets exactly the state it started with.
import type { Regs, Segment, Sregs } from '../../kvm/bindings/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { CR0_ET, CR0_NE, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME } from '../../kvm/bindings/x86-control-bits.js';

/** The vCPU state a loader hands to the machine: merged over KVM's reset state. */
export interface BootCpuState {
  regs: Partial<Regs>;
  sregs: Partial<Sregs>;
}

export type CpuMode = 'real' | 'protected' | 'long';

/** A half-open guest-physical range [start, end). */
export interface GuestRange {
  start: number;
  end: number;
}

// ---- Reserved boot memory -------------------------------------------------------------------------------------

/** Boot GDT: null, 64-bit code, 32-bit code, data, 16-byte TSS descriptor (6 slots of 8 bytes). */
export const BOOT_GDT_ADDR = 0x500;
/** Boot TSS (0x68 bytes, zero except the I/O-map base). Only present so TR is valid for VMX entry. */
export const BOOT_TSS_ADDR = 0x600;
/** Initial stack pointer for flat and multiboot guests: a small scratch stack inside the reserved page. */
export const BOOT_STACK_TOP = 0x1000;
/** Long mode: page-map level 4 table. */
export const BOOT_PML4_ADDR = 0x9000;
/** Long mode: page-directory-pointer table (4 entries used: one per GiB). */
export const BOOT_PDPT_ADDR = 0xa000;
/** Long mode: first of four page directories of 2 MiB pages, one page each. */
export const BOOT_PD_ADDR = 0xb000;
/** How much of the physical address space the boot page tables identity-map. */
export const BOOT_IDENTITY_MAP_BYTES = 4 * 1024 * 1024 * 1024;

/** GDT, TSS and initial stack: written/used in every mode except real mode writes nothing (stack only). */
export const RESERVED_BOOT_LOW: Readonly<GuestRange> = Object.freeze({ start: 0x500, end: 0x1000 });
/** Long-mode page tables. */
export const RESERVED_BOOT_PAGE_TABLES: Readonly<GuestRange> = Object.freeze({ start: 0x9000, end: 0xf000 });

/** The ranges a loader must keep the guest image out of when starting the guest in `mode`. */
export function reservedBootRanges(mode: CpuMode): GuestRange[] {
  return mode === 'long' ? [{ ...RESERVED_BOOT_LOW }, { ...RESERVED_BOOT_PAGE_TABLES }] : [{ ...RESERVED_BOOT_LOW }];
}

// ---- Selectors of the boot GDT ---------------------------------------------------------------------------------

/** 64-bit code segment (L=1). Same slot as Firecracker/Linux's __BOOT_CS for 64-bit entry. */
export const SEL_CODE64 = 0x08;
/** 32-bit flat code segment (D=1, 4 GiB). Linux's 32-bit boot protocol also uses 0x10. */
export const SEL_CODE32 = 0x10;
/** Flat read/write data segment (B=1, 4 GiB). Linux's __BOOT_DS. */
export const SEL_DATA = 0x18;
/** TSS (16-byte system descriptor in long mode; the upper half is zero and harmless in 32-bit mode). */
export const SEL_TSS = 0x20;
/** Bytes of the boot GDT (6 slots). */
export const BOOT_GDT_SIZE = 0x30;
/** Size of a 32/64-bit TSS; also its I/O-map base (= no I/O bitmap). */
export const TSS_SIZE = 0x68;

// ---- Control-register and flag bits ----------------------------------------------------------------------------

// The control-register and EFER bits live in kvm/bindings/x86-control-bits.ts, below every layer that uses them.
export { CR0_PE, CR0_ET, CR0_NE, CR0_PG, CR4_PAE, EFER_LME, EFER_LMA };
/** RFLAGS bit 1 is reserved and always 1; everything else (IF included) starts clear. */
export const RFLAGS_RESERVED = 0x2n;

/** Page-table entry: present. */
export const PTE_P = 1n << 0n;
/** Page-table entry: writable. */
export const PTE_RW = 1n << 1n;
/** Page-table entry: page-level write-through. */
export const PTE_PWT = 1n << 3n;
/** Page-table entry: page-level cache disable. */
export const PTE_PCD = 1n << 4n;
/** Page-directory entry: this entry maps a 2 MiB page (page size). */
export const PTE_PS = 1n << 7n;
/** The 3-4 GiB window (PCI hole: LAPIC, IOAPIC, BARs) is mapped uncached, as firmware would via MTRRs. */
export const PCI_HOLE_START = 3 * 1024 * 1024 * 1024;

// ---- Descriptor encoding ---------------------------------------------------------------------------------------

/** Code segment type: execute/read, accessed. */
export const SEG_TYPE_CODE = 0xb;
/** Data segment type: read/write, accessed. */
export const SEG_TYPE_DATA = 0x3;
/** System segment type: busy 32-bit (or, in long mode, 64-bit) TSS. VMX requires type 11 for a usable TR. */
export const SEG_TYPE_TSS_BUSY = 0xb;
/** System segment type: LDT. */
export const SEG_TYPE_LDT = 0x2;

/**
 * Encodes a segment as an 8-byte GDT descriptor. `limit` in `Segment` is the expanded byte limit (as KVM holds
 * it); with g=1 the descriptor stores limit >> 12.
 */
export function encodeDescriptor(seg: Segment): bigint {
  const rawLimit = seg.g ? seg.limit >>> 12 : seg.limit;
  if (rawLimit > 0xfffff) throw new RangeError(`segment limit 0x${seg.limit.toString(16)} does not fit a descriptor`);
  const base = seg.base & 0xffffffffn;
  const access = BigInt((seg.type & 0xf) | (seg.s << 4) | ((seg.dpl & 3) << 5) | (seg.present << 7));
  const flags = BigInt(seg.avl | (seg.l << 1) | (seg.db << 2) | (seg.g << 3));
  return (
    BigInt(rawLimit & 0xffff) |
    ((base & 0xffffffn) << 16n) |
    (access << 40n) |
    (BigInt((rawLimit >>> 16) & 0xf) << 48n) |
    (flags << 52n) |
    (((base >> 24n) & 0xffn) << 56n)
  );
}

/** Decodes an 8-byte GDT descriptor into KVM's segment shape (the inverse of encodeDescriptor). */
export function decodeDescriptor(desc: bigint, selector: number): Segment {
  const rawLimit = Number((desc & 0xffffn) | (((desc >> 48n) & 0xfn) << 16n));
  const base = ((desc >> 16n) & 0xffffffn) | (((desc >> 56n) & 0xffn) << 24n);
  const access = Number((desc >> 40n) & 0xffn);
  const flags = Number((desc >> 52n) & 0xfn);
  const g = (flags >> 3) & 1;
  return {
    base,
    selector,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    type: access & 0xf,
    s: (access >> 4) & 1,
    dpl: (access >> 5) & 3,
    present: (access >> 7) & 1,
    avl: flags & 1,
    l: (flags >> 1) & 1,
    db: (flags >> 2) & 1,
    g,
    unusable: 0,
  };
}

function flatSegment(selector: number, type: number, l: 0 | 1, db: 0 | 1): Segment {
  return { base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db, s: 1, l, g: 1, avl: 0, unusable: 0 };
}

/** The boot GDT's segments, exactly as written to RAM. */
export const BOOT_SEGMENTS: Readonly<Record<'code64' | 'code32' | 'data' | 'tss', Readonly<Segment>>> = Object.freeze({
  code64: Object.freeze(flatSegment(SEL_CODE64, SEG_TYPE_CODE, 1, 0)),
  code32: Object.freeze(flatSegment(SEL_CODE32, SEG_TYPE_CODE, 0, 1)),
  data: Object.freeze(flatSegment(SEL_DATA, SEG_TYPE_DATA, 0, 1)),
  tss: Object.freeze({
    base: BigInt(BOOT_TSS_ADDR),
    limit: TSS_SIZE - 1,
    selector: SEL_TSS,
    type: SEG_TYPE_TSS_BUSY,
    present: 1,
    dpl: 0,
    db: 0,
    s: 0,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  }),
});

/** LDTR as KVM's reset leaves it: selector 0, a present (valid-for-VMX) but unused LDT. */
const RESET_LDT: Segment = {
  base: 0n,
  limit: 0xffff,
  selector: 0,
  type: SEG_TYPE_LDT,
  present: 1,
  dpl: 0,
  db: 0,
  s: 0,
  l: 0,
  g: 0,
  avl: 0,
  unusable: 0,
};

/** Writes the boot GDT and TSS to guest RAM (reserved range 0x500-0x6ff). */
export function writeBootGdt(mem: GuestMemory): void {
  mem.fill(BOOT_GDT_ADDR, BOOT_GDT_SIZE, 0);
  mem.writeU64(BOOT_GDT_ADDR + SEL_CODE64, encodeDescriptor(BOOT_SEGMENTS.code64));
  mem.writeU64(BOOT_GDT_ADDR + SEL_CODE32, encodeDescriptor(BOOT_SEGMENTS.code32));
  mem.writeU64(BOOT_GDT_ADDR + SEL_DATA, encodeDescriptor(BOOT_SEGMENTS.data));
  // A system descriptor in long mode is 16 bytes: the low 8 as usual, then base[63:32] (zero here) and zeros.
  mem.writeU64(BOOT_GDT_ADDR + SEL_TSS, encodeDescriptor(BOOT_SEGMENTS.tss));
  mem.writeU64(BOOT_GDT_ADDR + SEL_TSS + 8, 0n);
  mem.fill(BOOT_TSS_ADDR, TSS_SIZE, 0);
  mem.writeU16(BOOT_TSS_ADDR + 0x66, TSS_SIZE); // I/O-map base at the TSS limit: no I/O permission bitmap
}

/**
 * Writes identity-mapping page tables for the first 4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] -> four
 * page directories of 512 entries each. The 3-4 GiB window (MMIO) is mapped cache-disabled.
 */
export function writeIdentityPageTables(mem: GuestMemory): void {
  mem.fill(RESERVED_BOOT_PAGE_TABLES.start, RESERVED_BOOT_PAGE_TABLES.end - RESERVED_BOOT_PAGE_TABLES.start, 0);
  mem.writeU64(BOOT_PML4_ADDR, BigInt(BOOT_PDPT_ADDR) | PTE_P | PTE_RW);
  const twoMiB = 2 * 1024 * 1024;
  for (let gib = 0; gib < 4; gib++) {
    const pd = BOOT_PD_ADDR + gib * 0x1000;
    mem.writeU64(BOOT_PDPT_ADDR + gib * 8, BigInt(pd) | PTE_P | PTE_RW);
    for (let i = 0; i < 512; i++) {
      const phys = (gib * 512 + i) * twoMiB;
      const cache = phys >= PCI_HOLE_START ? PTE_PCD | PTE_PWT : 0n;
      mem.writeU64(pd + i * 8, BigInt(phys) | PTE_P | PTE_RW | PTE_PS | cache);
    }
  }
}

function zeroGprs(): Regs {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0n,
    rflags: RFLAGS_RESERVED,
  };
}

export interface ModeEntry {
  /** Guest-physical address of the first instruction. */
  entry: number;
  /** Initial stack pointer (default BOOT_STACK_TOP). */
  stack?: number;
}

function checkAddress(what: string, value: number, limit: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= limit) {
    throw new RangeError(`${what} 0x${value.toString(16)} is outside 0..0x${(limit - 1).toString(16)} for this mode`);
  }
}

/**
 * Real mode, as a BIOS leaves it before jumping to a boot sector: CS:IP = (entry & 0xf0000) >> 4 : entry & 0xffff,
 * other segments 0, SS:SP = 0:stack, IDT = the real-mode IVT. Writes nothing to RAM.
 */
export function realModeState(opts: ModeEntry): BootCpuState {
  checkAddress('real-mode entry', opts.entry, 0x100000);
  const stack = opts.stack ?? BOOT_STACK_TOP;
  checkAddress('real-mode stack pointer', stack, 0x10000);
  const csBase = opts.entry & 0xf0000;
  const real = (selector: number, type: number): Segment => ({
    base: BigInt(selector << 4),
    limit: 0xffff,
    selector,
    type,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  });
  const data = real(0, SEG_TYPE_DATA);
  return {
    regs: { ...zeroGprs(), rip: BigInt(opts.entry - csBase), rsp: BigInt(stack) },
    sregs: {
      cs: real(csBase >>> 4, SEG_TYPE_CODE),
      ds: data,
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      // TR as KVM's reset has it: a busy TSS at 0 with a 64 KiB limit, valid for VMX and never used in real mode.
      tr: { ...BOOT_SEGMENTS.tss, base: 0n, limit: 0xffff, selector: 0 },
      ldt: { ...RESET_LDT },
      gdt: { base: 0n, limit: 0xffff },
      idt: { base: 0n, limit: 0x3ff },
      cr0: CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}

/**
 * 32-bit flat protected mode, paging off: CS = SEL_CODE32, DS/ES/FS/GS/SS = SEL_DATA, TR = SEL_TSS, IF = 0.
 * Writes the boot GDT and TSS.
 */
export function protectedModeState(mem: GuestMemory, opts: ModeEntry): BootCpuState {
  checkAddress('protected-mode entry', opts.entry, 2 ** 32);
  const stack = opts.stack ?? BOOT_STACK_TOP;
  checkAddress('protected-mode stack pointer', stack, 2 ** 32);
  writeBootGdt(mem);
  const data = BOOT_SEGMENTS.data;
  return {
    regs: { ...zeroGprs(), rip: BigInt(opts.entry), rsp: BigInt(stack) },
    sregs: {
      cs: { ...BOOT_SEGMENTS.code32 },
      ds: { ...data },
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      tr: { ...BOOT_SEGMENTS.tss },
      ldt: { ...RESET_LDT },
      gdt: { base: BigInt(BOOT_GDT_ADDR), limit: BOOT_GDT_SIZE - 1 },
      idt: { base: 0n, limit: 0 },
      cr0: CR0_PE | CR0_ET | CR0_NE,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}

/**
 * 64-bit long mode with the first 4 GiB identity-mapped: CS = SEL_CODE64 (L=1), data segments SEL_DATA,
 * CR0 = PE|ET|NE|PG, CR4 = PAE, EFER = LME|LMA, CR3 = BOOT_PML4_ADDR. Writes the GDT, TSS and page tables.
 */
export function longModeState(mem: GuestMemory, opts: ModeEntry): BootCpuState {
  checkAddress('long-mode entry', opts.entry, BOOT_IDENTITY_MAP_BYTES);
  const stack = opts.stack ?? BOOT_STACK_TOP;
  checkAddress('long-mode stack pointer', stack, BOOT_IDENTITY_MAP_BYTES + 1);
  writeBootGdt(mem);
  writeIdentityPageTables(mem);
  const data = BOOT_SEGMENTS.data;
  return {
    regs: { ...zeroGprs(), rip: BigInt(opts.entry), rsp: BigInt(stack) },
    sregs: {
      cs: { ...BOOT_SEGMENTS.code64 },
      ds: { ...data },
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      tr: { ...BOOT_SEGMENTS.tss },
      ldt: { ...RESET_LDT },
      gdt: { base: BigInt(BOOT_GDT_ADDR), limit: BOOT_GDT_SIZE - 1 },
      idt: { base: 0n, limit: 0 },
      cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
      cr3: BigInt(BOOT_PML4_ADDR),
      cr4: CR4_PAE,
      efer: EFER_LME | EFER_LMA,
    },
  };
}

/** The state for `mode`, writing whatever tables that mode needs. */
export function bootCpuState(mem: GuestMemory, mode: CpuMode, opts: ModeEntry): BootCpuState {
  switch (mode) {
    case 'real':
      return realModeState(opts);
    case 'protected':
      return protectedModeState(mem, opts);
    case 'long':
      return longModeState(mem, opts);
    default:
      throw new TypeError(`unknown CPU mode ${String(mode)}`);
  }
}

/** True if [a.start, a.end) and [b.start, b.end) share a byte. */
export function rangesOverlap(a: GuestRange, b: GuestRange): boolean {
  return a.start < b.end && b.start < a.end;
}

/** Formats a range for error messages: [0x100000, 0x102000). */
export function formatRange(r: GuestRange): string {
  return `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`;
}
