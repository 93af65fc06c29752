// The vCPU state at a Linux kernel's first instruction, for the two entries tsvmm uses. Both start from the
// generic mode states of ../cpu-modes.ts (same GDT at 0x500, TSS, stack and, for long mode, identity page tables)
// and adjust them to what each ABI text requires:
//  - 64-bit boot protocol (boot.rst): long mode, paging on, the kernel, zero page and command line identity-mapped
//    (the boot page tables map all of the first 4 GiB), a GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18) as 4 GiB
//    flat segments, CS = __BOOT_CS, DS = ES = SS = __BOOT_DS, interrupts off, RSI = boot_params. The generic GDT
//    has a 32-bit code segment in slot 0x10, so that slot is rewritten as a 64-bit one (L=1).
//  - PVH (Xen's docs/misc/pvh.pandoc, quoted in Linux's arch/x86/platform/pvh/head.S): 32-bit protected mode,
//    CR0 = PE only among the writable bits, CR4 = 0, EFER.LME = 0, CS a flat 32-bit execute/read segment,
//    DS/ES (we also give SS/FS/GS) flat 32-bit read/write, TR a 32-bit busy TSS with base 0 and limit 0x67, IF = 0,
//    EBX = the hvm_start_info address. The generic TSS descriptor (base 0x600) is rewritten with base 0 to match.
import type { Segment } from '../../../kvm/bindings/types.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import {
  BOOT_GDT_ADDR,
  BOOT_SEGMENTS,
  BOOT_STACK_TOP,
  CR0_ET,
  CR0_PE,
  SEL_TSS,
  TSS_SIZE,
  encodeDescriptor,
  longModeState,
  protectedModeState,
  type BootCpuState,
} from '../cpu-modes.js';

/** __BOOT_CS of the boot protocol (GDT entry 2). For the 64-bit entry it must be a 64-bit code segment. */
export const LINUX_BOOT_CS = 0x10;
/** __BOOT_DS of the boot protocol (GDT entry 3). */
export const LINUX_BOOT_DS = 0x18;

/** The 64-bit code segment as __BOOT_CS: flat, execute/read, L=1. */
export const LINUX_BOOT_CS64: Readonly<Segment> = Object.freeze({ ...BOOT_SEGMENTS.code64, selector: LINUX_BOOT_CS });

/**
 * 64-bit boot protocol entry: writes the GDT (with __BOOT_CS as a 64-bit segment), TSS and identity page tables;
 * RIP = `entry`, RSI = `bootParams`, RBX = RBP = RDI = 0.
 */
export function linux64EntryState(mem: GuestMemory, entry: number, bootParams: number): BootCpuState {
  const cpu = longModeState(mem, { entry, stack: BOOT_STACK_TOP });
  mem.writeU64(BOOT_GDT_ADDR + LINUX_BOOT_CS, encodeDescriptor(LINUX_BOOT_CS64));
  cpu.sregs.cs = { ...LINUX_BOOT_CS64 };
  if (cpu.sregs.ds?.selector !== LINUX_BOOT_DS) throw new Error('boot GDT: the data segment is not at __BOOT_DS');
  cpu.regs.rsi = BigInt(bootParams);
  return cpu;
}

/** The TSS as the PVH ABI wants TR: 32-bit busy TSS, base 0, limit 0x67. */
export const PVH_TR: Readonly<Segment> = Object.freeze({ ...BOOT_SEGMENTS.tss, base: 0n, limit: TSS_SIZE - 1 });

/** PVH entry: 32-bit protected mode, paging off, EBX = `startInfo`, RIP = `entry`. */
export function pvhEntryState(mem: GuestMemory, entry: number, startInfo: number): BootCpuState {
  const cpu = protectedModeState(mem, { entry, stack: BOOT_STACK_TOP });
  mem.writeU64(BOOT_GDT_ADDR + SEL_TSS, encodeDescriptor(PVH_TR));
  cpu.sregs.tr = { ...PVH_TR };
  cpu.sregs.cr0 = CR0_PE | CR0_ET; // ET reads as 1 on every CPU; every writable bit but PE is clear
  cpu.sregs.cr4 = 0n;
  cpu.sregs.efer = 0n;
  cpu.regs.rbx = BigInt(startInfo);
  return cpu;
}
