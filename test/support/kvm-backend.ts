// Which KVM this host has, for tests and benchmarks that depend on it. With the PVM backend (no VMX/SVM) guest code
// runs in KVM's instruction emulator, which stops a stock Linux before user space (docs/linux.md, "On this host
// (PVM)"); with VMX/SVM the same kernel boots normally. The kvm_pvm module is the tell, as everywhere else in the tree.
import { existsSync } from 'node:fs';
import { NO_VMX_SVM_PREFIX } from './rig-provides.js';

/** True when this host's KVM is the PVM backend (the kvm_pvm module is loaded). */
export function kvmIsPvm(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

/**
 * Which backend this host's KVM uses, from the vendor module loaded (kvm_pvm, kvm_amd, kvm_intel), or null when none
 * is. For the few tests whose documented KVM behaviour differs between backends (e.g. SVM reports one interrupt
 * shadow for both kinds; SVM re-initialises a vCPU before it reports a shutdown, so the registers at a triple fault
 * are gone).
 */
export function kvmBackend(): 'pvm' | 'svm' | 'vmx' | null {
  if (kvmIsPvm()) return 'pvm';
  if (existsSync('/sys/module/kvm_amd')) return 'svm';
  if (existsSync('/sys/module/kvm_intel')) return 'vmx';
  return null;
}

/** The one-line reason a test that needs Linux user space skips with on a PVM host. */
export const PVM_NO_USER_SPACE = `${NO_VMX_SVM_PREFIX} (KVM is PVM): a stock kernel cannot reach user space; the full boot runs on VMX/SVM hosts and in the rig`;

/** Null when a stock Linux guest can reach user space under KVM here, else why not (one line). */
export function linuxUserSpaceUnreachable(): string | null {
  return kvmIsPvm() ? PVM_NO_USER_SPACE : null;
}
