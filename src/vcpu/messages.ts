// What a vCPU thread tells the main thread. These are rare events (the hot path never posts): the machine ends,
// resets or fails. The vCPU that posts one has already asked every vCPU to park, so the guest stops at once.
import type { CharOutTransfer } from '../chardev/index.js';
import type { DeviceEntry } from '../runtime/device-table.js';
import type { RamRegion } from '../memory/guest-ram.js';
import type { VcpuFeatures } from '../../kvm/vcpu-features.js';
import type { MsiRouterInit } from '../runtime/msi-router.js';
import type { IoEventRegistryInit } from '../runtime/ioevent-registry.js';
import type { MachineRequest } from '../runtime/machine-control.js';

export type VcpuEvent =
  | MachineRequest
  /** KVM refused to go on (internal error, failed entry, triple fault with no reset possible): report and end. */
  | {
      type: 'failure';
      vcpu: number;
      kind: 'internal-error' | 'fail-entry' | 'triple-fault' | 'unexpected-exit' | 'vmm-error';
      report: string;
    };

/** Everything a vCPU thread needs to build its side of the machine: plain data and SharedArrayBuffers. */
export interface VcpuThreadInit {
  vcpuId: number;
  vcpuFd: number;
  vcpuCount: number;
  mmapSize: number;
  features: VcpuFeatures;
  vmFd: number;
  ram: readonly RamRegion[];
  arena: SharedArrayBuffer;
  devices: readonly DeviceEntry[];
  outputs: Readonly<Record<string, CharOutTransfer>>;
  lock: SharedArrayBuffer;
  control: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
  /** Where this vCPU saves its own state on a capture request (a vcpuStateDescriptor record). */
  stateRecord: SharedArrayBuffer;
  /** Warm the capture path at start-up (the machine captures in vCPU threads only with several vCPUs). */
  warmCapture: boolean;
  /** The PCI devices' MSI router and ioeventfd registry, to attach to (config writes program routes, move BARs). */
  msi: MsiRouterInit;
  ioEvents: IoEventRegistryInit;
}
