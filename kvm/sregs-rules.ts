// KVM's own consistency rules for the special registers (arch/x86/kvm/x86.c: kvm_is_valid_sregs, kvm_is_valid_cr0):
// KVM_SET_SREGS refuses a set that breaks one with EINVAL. Checking them ourselves names the broken rule, and lets
// a checkpoint refuse to carry a state that no KVM would take back (cpr/flows/snapshot.ts), and a restore refuse
// it before it changes anything (vcpu-state.ts). The CPUID-dependent checks (reserved CR4 bits, the guest's
// physical address width for CR3) stay KVM's.
import type { Sregs } from './bindings/types.js';
import { CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR4_PAE, EFER_LME, EFER_LMA } from './bindings/x86-control-bits.js';
import { hex } from '../src/util/hex.js';

/** The first of KVM's CPUID-independent rules that `s` breaks, in words, or null when it keeps them all. */
export function sregsRuleBroken(s: Sregs): string | null {
  if (s.cr0 >> 32n !== 0n) return 'CR0 has bits set above bit 31';
  if ((s.cr0 & CR0_NW) !== 0n && (s.cr0 & CR0_CD) === 0n) return 'CR0.NW is set without CR0.CD';
  if ((s.cr0 & CR0_PG) !== 0n && (s.cr0 & CR0_PE) === 0n) return 'CR0.PG is set without CR0.PE';
  if ((s.efer & EFER_LME) !== 0n && (s.cr0 & CR0_PG) !== 0n) {
    if ((s.cr4 & CR4_PAE) === 0n) return 'long mode (EFER.LME and CR0.PG) without CR4.PAE';
    if ((s.efer & EFER_LMA) === 0n) return 'EFER.LME and CR0.PG without EFER.LMA';
  } else {
    if ((s.efer & EFER_LMA) !== 0n) return 'EFER.LMA is set outside long mode';
    if (s.cs.l !== 0) return 'a 64-bit code segment (CS.L) outside long mode';
  }
  return null;
}

/** The registers sregsRuleBroken looks at, for a message. */
export function describeSregs(s: Sregs): string {
  return (
    `cr0=${hex(s.cr0)} cr3=${hex(s.cr3)} cr4=${hex(s.cr4)} efer=${hex(s.efer)} apic_base=${hex(s.apicBase)} ` +
    `cs=${hex(s.cs.selector)} l=${s.cs.l} db=${s.cs.db}`
  );
}
