// The last check on a captured vCPU state before it leaves the process (cpr/flows/snapshot.ts).
import { describeSregs, sregsRuleBroken } from '../../kvm/sregs-rules.js';
import { recordToSregs, type VcpuRecord } from '../machine-state/index.js';
import { CprError } from './cpr-error.js';

/**
 * A captured vCPU state that breaks KVM's own rules for the special registers would be refused by every restore
 * (KVM_SET_SREGS: EINVAL), after the old process has let go of the guest in reboot mode. So it is not saved: KVM is
 * asked once more, and a second answer that breaks them too fails the checkpoint while the guest can still run on
 * here. The rig's nested SVM (TCG) once answered a 32-bit guest without paging with a 64-bit CS and CR0.PG
 * (docs/cpr.md, "A soak").
 */
export function keptByKvmRules(i: number, record: VcpuRecord, readAgain: () => VcpuRecord): VcpuRecord {
  const first = recordToSregs(record.sregs);
  const broken = sregsRuleBroken(first);
  if (broken === null) return record;
  const again = readAgain();
  const second = recordToSregs(again.sregs);
  const brokenAgain = sregsRuleBroken(second);
  const what = `vCPU ${i}: KVM_GET_SREGS answered with special registers KVM itself refuses (${broken}): ${describeSregs(first)}`;
  if (brokenAgain !== null)
    throw new CprError(`${what}; asked again: ${describeSregs(second)} (${brokenAgain}); the state was not saved`);
  process.stderr.write(`tsvmm: ${what}; asked again: ${describeSregs(second)}, which is saved\n`);
  return again;
}
