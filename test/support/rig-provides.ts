// Skip reasons the rig (test/rig/) can lift. A test that skips for a reason starting with one of these prefixes
// (after its name and ": ") makes the test runner run its whole file again inside the rig, which has what the host
// lacked: a real /dev/kvm (nested, SVM-backed, so a stock Linux reaches user space even where the host's KVM is
// PVM) and reserved huge pages.

/** Every skip reason for "this host has no usable /dev/kvm" starts with this (kvm/testing/test-guest.ts kvmMissing()). */
export const KVM_MISSING_PREFIX = 'no usable /dev/kvm';

/** Every skip reason for "KVM here is PVM, which cannot do this" starts with this (test/support/kvm-backend.ts). */
export const NO_VMX_SVM_PREFIX = 'no VMX/SVM here';

/** Every skip reason for "no huge pages are reserved here" starts with this. */
export const HUGE_PAGES_MISSING_PREFIX = 'no free huge pages';

export const RIG_PROVIDES = [KVM_MISSING_PREFIX, NO_VMX_SVM_PREFIX, HUGE_PAGES_MISSING_PREFIX] as const;

/** True when a `name: reason` skip line is one the rig can lift. */
export function rigCanLift(skip: string): boolean {
  return RIG_PROVIDES.some((prefix) => skip.includes(`: ${prefix}`));
}
