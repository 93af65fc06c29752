// What every Linux-guest bench needs of the host before it builds anything: KVM that is not PVM (a stock kernel
// cannot reach user space on PVM: these benches run on VMX/SVM hosts and in the rig) and Debian's generic kernel.
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { kvmIsPvm, PVM_NO_USER_SPACE } from '../../test/support/kvm-backend.js';
import { linuxGuestKernel, type LinuxGuestKernel } from '../../test/support/linux-guest.js';

/**
 * The guest kernel for bench `name`, or null when the bench cannot run here by design (PVM: a `skipped` line is
 * printed). Throws when something the bench needs is missing (no KVM, no kernel).
 */
export function linuxBenchKernel(name: string): LinuxGuestKernel | null {
  const kvm = kvmMissing();
  if (kvm) throw new Error(`bench/${name} needs KVM: ${kvm}`);
  if (kvmIsPvm()) {
    process.stdout.write(`bench/${name}: skipped: ${PVM_NO_USER_SPACE}\n`);
    return null;
  }
  const k = linuxGuestKernel();
  if (!k.kernel) throw new Error(`bench/${name}: ${k.reason}`);
  return k.kernel;
}
