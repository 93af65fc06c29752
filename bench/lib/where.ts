// Where a benchmark runs, because that decides which of its figures mean anything. Natively the absolute times are
// this host's; inside the rig (test/rig/: nested KVM with SVM emulated by QEMU's TCG) every guest instruction and
// every exit costs what the emulator makes it cost, so only ratios taken side by side in the same run (tsvmm/QEMU,
// tsvmm/C) are figures to read, and every bench says so at its top and in its JSON.
import { kvmBackend } from '../../test/support/kvm-backend.js';

export interface BenchWhere {
  /** True inside the rig. */
  rig: boolean;
  /** The KVM backend the guests run on. */
  kvm: 'pvm' | 'svm' | 'vmx' | null;
  /** One line for the top of a bench's output. */
  line: string;
}

const isRig = (): boolean => process.env.TSVMM_IN_RIG === '1';

export function benchWhere(): BenchWhere {
  const rig = isRig();
  const kvm = kvmBackend();
  const line = rig
    ? `where: [rig] nested KVM (${kvm ?? 'none'}) under QEMU TCG (test/rig/): absolute times are the emulator's; read the ratios, measured side by side in this run`
    : `where: native, KVM backend ${kvm ?? 'none'}${kvm === 'pvm' ? " (guest code runs in KVM's instruction emulator)" : ''}`;
  return { rig, kvm, line };
}

/** A bench's default for a knob, smaller inside the rig where the same work takes many times longer. */
export function rigDefault<T>(native: T, inRig: T): T {
  return isRig() ? inRig : native;
}

/** A hang guard: `ms` natively, ten times that inside the rig (Node starts many times slower there, exits cost more). */
export function guardMs(ms: number): number {
  return isRig() ? ms * 10 : ms;
}
