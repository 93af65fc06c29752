// Failure reports: when KVM cannot (or will not) run the guest, say what happened, where, in which CPU mode, and
// which instruction bytes sat at RIP — the first things anyone debugging a test guest needs.
import type { Regs, Sregs } from '../../kvm/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { linearToPhysical } from '../machine/page-walk.js';

const CR0_PE = 1n;
const EFER_LMA = 1n << 10n;
const RFLAGS_VM = 1n << 17n;
const INSTRUCTION_BYTES = 16;

/** The CPU mode from control registers and CS, in words a reader knows. */
export function cpuMode(sregs: Sregs, rflags: bigint): string {
  if ((sregs.cr0 & CR0_PE) === 0n) return 'real mode';
  if (rflags & RFLAGS_VM) return 'virtual-8086 mode';
  if (sregs.efer & EFER_LMA) return sregs.cs.l ? 'long mode (64-bit)' : 'long mode (compatibility, 32-bit)';
  return sregs.cs.db ? 'protected mode (32-bit)' : 'protected mode (16-bit)';
}

/** Where the CPU fetches from: CS base + RIP, except in 64-bit mode where the CS base is ignored. */
export function linearRip(sregs: Sregs, regs: Regs): bigint {
  if ((sregs.efer & EFER_LMA) && sregs.cs.l) return regs.rip;
  return (sregs.cs.base + regs.rip) & 0xffff_ffffn;
}

/** Up to 16 bytes at RIP as hex, or why they cannot be shown. */
export function instructionBytes(mem: GuestMemory, sregs: Sregs, regs: Regs): string {
  const linear = linearRip(sregs, regs);
  const physical = linearToPhysical(mem, sregs, linear);
  if (physical === null) return `(RIP 0x${linear.toString(16)} is not mapped by the guest's page tables)`;
  const gpa = Number(physical);
  let n = INSTRUCTION_BYTES;
  while (n > 0 && !mem.contains(gpa, n)) n--;
  if (n === 0) return `(guest-physical 0x${gpa.toString(16)} is not RAM)`;
  return [...mem.read(gpa, n)].map(b => b.toString(16).padStart(2, '0')).join(' ');
}

const hex = (v: bigint, width = 16) => `0x${v.toString(16).padStart(width, '0')}`;

/** A multi-line report: a title, then RIP/mode/bytes and a register dump, each line prefixed for stderr. */
export function formatFailure(title: string, details: string[], regs: Regs | null, sregs: Sregs | null, mem: GuestMemory): string {
  const lines = [`tsvmm: ${title}`, ...details.map(d => `  ${d}`)];
  if (regs && sregs) {
    lines.push(`  RIP ${hex(regs.rip)} (CS:IP ${sregs.cs.selector.toString(16).padStart(4, '0')}:${regs.rip.toString(16)}), ${cpuMode(sregs, regs.rflags)}`);
    lines.push(`  instruction bytes at RIP: ${instructionBytes(mem, sregs, regs)}`);
    lines.push(`  RAX ${hex(regs.rax)} RBX ${hex(regs.rbx)} RCX ${hex(regs.rcx)} RDX ${hex(regs.rdx)}`);
    lines.push(`  RSI ${hex(regs.rsi)} RDI ${hex(regs.rdi)} RSP ${hex(regs.rsp)} RBP ${hex(regs.rbp)}`);
    lines.push(`  RFLAGS ${hex(regs.rflags, 8)} CR0 ${hex(sregs.cr0, 8)} CR3 ${hex(sregs.cr3, 8)} CR4 ${hex(sregs.cr4, 8)} EFER ${hex(sregs.efer, 4)}`);
  } else {
    lines.push('  (registers could not be read)');
  }
  return lines.join('\n');
}
