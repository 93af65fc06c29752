// VcpuFeatures: which optional vCPU state ioctls KVM offers, read from KVM_CHECK_EXTENSION. Kvm, Vm and Vcpu all
// use it, so it sits below the three of them: a lower object never imports a higher one (Kvm creates a Vm, a Vm
// creates its Vcpus, as in rust-vmm's kvm-ioctls).
import * as K from './bindings/ioctls.js';

/**
 * What the vCPU state functions may use, from KVM_CHECK_EXTENSION on the VM fd, plus the MSR index list. Plain data:
 * the main thread passes `vm.vcpuFeatures()` to a worker that calls Vcpu.attach.
 */
export interface VcpuFeatures {
  /** Bytes of KVM_GET_XSAVE(2) (4096, or KVM_CAP_XSAVE2's size); 0 without KVM_CAP_XSAVE. */
  xsaveSize: number;
  /** KVM_GET_XSAVE2 exists (KVM_CAP_XSAVE2). */
  xsave2: boolean;
  xcrs: boolean;
  vcpuEvents: boolean;
  debugregs: boolean;
  mpState: boolean;
  /** KVM_SET_TSC_KHZ works on a vCPU (KVM_CAP_TSC_CONTROL). */
  tscControl: boolean;
  getTscKhz: boolean;
  /** KVM_GET_MSR_INDEX_LIST. */
  msrIndices: number[];
}

/** Builds VcpuFeatures from a capability query (system or VM fd). */
export function featuresFrom(check: (cap: number) => number, msrIndices: number[]): VcpuFeatures {
  const xsave = check(K.KVM_CAP_XSAVE) > 0;
  const xsave2Size = check(K.KVM_CAP_XSAVE2);
  return {
    xsaveSize: xsave ? Math.max(xsave2Size, 4096) : 0,
    xsave2: xsave2Size > 0,
    xcrs: check(K.KVM_CAP_XCRS) > 0,
    vcpuEvents: check(K.KVM_CAP_VCPU_EVENTS) > 0,
    debugregs: check(K.KVM_CAP_DEBUGREGS) > 0,
    mpState: check(K.KVM_CAP_MP_STATE) > 0,
    tscControl: check(K.KVM_CAP_TSC_CONTROL) > 0,
    getTscKhz: check(K.KVM_CAP_GET_TSC_KHZ) > 0,
    msrIndices,
  };
}
