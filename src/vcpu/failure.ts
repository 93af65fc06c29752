// Failure reports: when KVM cannot (or will not) run the guest, say what happened, where, in which CPU mode, and
// which instruction bytes sat at RIP — the first things anyone debugging a test guest needs.
import type { Regs, Sregs } from '../../kvm/bindings/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { linearToPhysical } from '../runtime/page-walk.js';
import { hex, hexDigits } from '../util/hex.js';

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
  if (sregs.efer & EFER_LMA && sregs.cs.l) return regs.rip;
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
  if (n === 0) return `(guest-physical ${hex(gpa)} is not RAM)`;
  return [...mem.read(gpa, n)].map((b) => hexDigits(b, 2)).join(' ');
}

/** The architectural INIT/reset state's CS:IP: f000:fff0 with CS base 0xffff0000, in real mode. */
const INIT_CS_SELECTOR = 0xf000;
const INIT_CS_BASE = 0xffff_0000n;
const INIT_RIP = 0xfff0n;

/**
 * True when the vCPU holds the INIT state (CS:IP f000:fff0, CS base 0xffff0000, CR0.PE clear). That is what KVM on
 * AMD SVM leaves behind a KVM_EXIT_SHUTDOWN: the VMCB is undefined after a shutdown intercept, so KVM re-initialises
 * the vCPU before it returns (arch/x86/kvm/svm/svm.c, shutdown_interception). On VMX (and PVM) the registers still
 * hold the state at the fault. No guest runs at f000:fff0 here: tsvmm has no BIOS, nothing is mapped there.
 */
export function isInitState(regs: Regs, sregs: Sregs): boolean {
  return (
    regs.rip === INIT_RIP &&
    sregs.cs.selector === INIT_CS_SELECTOR &&
    sregs.cs.base === INIT_CS_BASE &&
    (sregs.cr0 & CR0_PE) === 0n
  );
}

/** What a triple-fault report says instead of registers when KVM has already re-initialised the vCPU. */
const SHUTDOWN_STATE_LOST =
  'RIP and CPU mode at the fault: unknown — KVM re-initialised the vCPU when it exited for the shutdown (AMD SVM does: ' +
  'the VMCB is undefined after a shutdown intercept), so its registers now hold the INIT state (CS:IP f000:fff0, real mode)';

/**
 * A multi-line report: a title, then RIP/mode/bytes and a register dump, each line prefixed for stderr. Without
 * registers, `unavailable` says why.
 */
export function formatFailure(
  title: string,
  details: string[],
  regs: Regs | null,
  sregs: Sregs | null,
  mem: GuestMemory,
  unavailable = '(registers could not be read)',
): string {
  const lines = [`tsvmm: ${title}`, ...details.map((d) => `  ${d}`)];
  if (regs && sregs) {
    const csIp = `${hexDigits(sregs.cs.selector, 4)}:${hexDigits(regs.rip)}`;
    lines.push(`  RIP ${hex(regs.rip, 16)} (CS:IP ${csIp}), ${cpuMode(sregs, regs.rflags)}`);
    lines.push(`  instruction bytes at RIP: ${instructionBytes(mem, sregs, regs)}`);
    lines.push(`  RAX ${hex(regs.rax, 16)} RBX ${hex(regs.rbx, 16)} RCX ${hex(regs.rcx, 16)} RDX ${hex(regs.rdx, 16)}`);
    lines.push(`  RSI ${hex(regs.rsi, 16)} RDI ${hex(regs.rdi, 16)} RSP ${hex(regs.rsp, 16)} RBP ${hex(regs.rbp, 16)}`);
    lines.push(
      `  RFLAGS ${hex(regs.rflags, 8)} CR0 ${hex(sregs.cr0, 8)} CR3 ${hex(sregs.cr3, 8)} CR4 ${hex(sregs.cr4, 8)} EFER ${hex(sregs.efer, 4)}`,
    );
  } else {
    lines.push(`  ${unavailable}`);
  }
  return lines.join('\n');
}

/**
 * A triple fault's report (KVM_EXIT_SHUTDOWN): RIP, mode, bytes and registers at the fault where KVM kept them
 * (VMX, PVM); where it re-initialised the vCPU first (SVM), one line saying the state at the fault is lost rather
 * than a report of f000:fff0 in real mode.
 */
export function formatShutdown(title: string, regs: Regs | null, sregs: Sregs | null, mem: GuestMemory): string {
  if (regs && sregs && isInitState(regs, sregs)) return formatFailure(title, [], null, null, mem, SHUTDOWN_STATE_LOST);
  return formatFailure(title, [], regs, sregs, mem);
}
