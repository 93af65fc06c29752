// Skip reasons the rig (test/rig/) can lift. A test that skips for a reason starting with one of these prefixes
// (after its name and ": ") makes the test runner run its whole file again inside the rig, which has what the host
// lacked: a real /dev/kvm (nested, SVM-backed, so a stock Linux reaches user space even where the host's KVM is
// PVM), reserved huge pages, and (booted as q35 with intel-iommu) QEMU's edu and nvme devices bound to vfio-pci.

/** Every skip reason for "this host has no usable /dev/kvm" starts with this (kvm/testing/test-guest.ts kvmMissing()). */
export const KVM_MISSING_PREFIX = 'no usable /dev/kvm';

/** Every skip reason for "KVM here is PVM, which cannot do this" starts with this (test/support/kvm-backend.ts). */
export const NO_VMX_SVM_PREFIX = 'no VMX/SVM here';

/** Every skip reason for "no huge pages are reserved here" starts with this. */
export const HUGE_PAGES_MISSING_PREFIX = 'no free huge pages';

/**
 * Every skip reason for "no device bound to vfio-pci here" starts with this (test/support/vfio-devices.ts). A file
 * that skips for it makes the runner boot the rig as q35 + intel-iommu with edu and nvme bound to vfio-pci.
 */
export const VFIO_MISSING_PREFIX = 'no vfio-pci device here';

export const RIG_PROVIDES = [
  KVM_MISSING_PREFIX,
  NO_VMX_SVM_PREFIX,
  HUGE_PAGES_MISSING_PREFIX,
  VFIO_MISSING_PREFIX,
] as const;

/** The devices the rig binds to vfio-pci when any file needs one (all in one boot). */
export const RIG_VFIO_DEVICES = ['edu', 'nvme'] as const;

/** True when a `name: reason` skip line is one the rig can lift. */
export function rigCanLift(skip: string): boolean {
  return RIG_PROVIDES.some((prefix) => skip.includes(`: ${prefix}`));
}

/** True when a `name: reason` skip line asks for a device bound to vfio-pci (the rig then boots as q35). */
export function rigNeedsVfio(skip: string): boolean {
  return skip.includes(`: ${VFIO_MISSING_PREFIX}`);
}
