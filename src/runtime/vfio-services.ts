// What a thread gives its vfio-pci devices (devices/vfio-pci/host.ts VfioServices): the host device's operations
// over its fd (vfio/device.ts, adopted per thread: fds and mmaps are process-wide, so any thread may pread, pwrite or
// SET_IRQS) and the BAR windows' KVM memory slots on the VM fd (KVM_SET_USER_MEMORY_REGION from whichever thread
// handles the guest's BAR move, under the machine lock, as QEMU does it under its BQL).
import * as libc from '../sys/libc.js';
import * as K from '../../kvm/bindings/ioctls.js';
import { encodeUserMemoryRegion } from '../../kvm/bindings/codec-vm.js';
import type { VfioBarSlots, VfioDeviceOps, VfioPciSpec, VfioServices } from '../../devices/vfio-pci/host.js';
import { VFIO_PCI_INTX_IRQ_INDEX } from '../../devices/vfio-pci/host.js';
import { VfioDevice, type VfioRegion } from '../../vfio/device.js';

/** The part of vfio/device.ts's VfioDevice these services use, with regions by index. */
export interface HostVfioDevice {
  read(region: number, offset: number, bytes: Uint8Array): void;
  write(region: number, offset: number, bytes: Uint8Array): void;
  setIrqEventfds(index: number, start: number, fds: number[]): void;
  disableIrqs(index: number): void;
  setIrqResample(index: number, fd: number): void;
  reset(): void;
}

/** This thread's VfioDevice over a process-wide device fd, its regions' info read once. */
export function adoptVfioDevice(fd: number, name?: string): HostVfioDevice {
  const device = VfioDevice.adopt(fd, name);
  const regions = new Map<number, VfioRegion>();
  const region = (index: number) => {
    let r = regions.get(index);
    if (!r) {
      r = device.region(index);
      regions.set(index, r);
    }
    return r;
  };
  return {
    read: (index, offset, bytes) => device.read(region(index), offset, bytes),
    write: (index, offset, bytes) => device.write(region(index), offset, bytes),
    setIrqEventfds: (index, start, fds) => device.setIrqEventfds(index, start, fds),
    disableIrqs: (index) => device.disableIrqs(index),
    setIrqResample: (index, fd) => device.setIrqResample(index, fd),
    reset: () => device.reset(),
  };
}

/** KVM_SET_USER_MEMORY_REGION on the VM fd, for the windows of one function. */
export function barSlots(vmFd: number, spec: Pick<VfioPciSpec, 'windows'>): VfioBarSlots {
  const set = (window: number, gpa: number, size: number) => {
    const w = spec.windows[window];
    if (!w) throw new RangeError(`no BAR window ${window}`);
    libc.ioctlPtr(
      vmFd,
      K.KVM_SET_USER_MEMORY_REGION,
      encodeUserMemoryRegion({
        slot: w.memslot,
        flags: 0,
        guestPhysAddr: BigInt(gpa),
        memorySize: BigInt(size),
        userspaceAddr: BigInt(w.hostAddress),
      }),
      'KVM_SET_USER_MEMORY_REGION',
    );
  };
  return {
    // KVM moves an existing slot of the same size (KVM_MR_MOVE) or creates it.
    map: (window, gpa) => set(window, gpa, spec.windows[window]?.size ?? 0),
    unmap: (window) => {
      try {
        set(window, 0, 0);
      } catch {
        /* EINVAL: not mapped */
      }
    },
  };
}

export function deviceOps(device: HostVfioDevice): VfioDeviceOps {
  return {
    read: (region, offset, into) => device.read(region, offset, into),
    write: (region, offset, bytes) => device.write(region, offset, bytes),
    setIrqs: (index, start, fds) => device.setIrqEventfds(index, start, [...fds]),
    disableIrqs: (index) => device.disableIrqs(index),
    setIntxResample: (fd) => device.setIrqResample(VFIO_PCI_INTX_IRQ_INDEX, fd),
    reset: () => {
      device.reset();
      return true;
    },
  };
}

/** A thread's services: each device adopted once per thread. */
export function vfioServices(vmFd: number, adopt: (fd: number) => HostVfioDevice = adoptVfioDevice): VfioServices {
  const devices = new Map<number, HostVfioDevice>();
  return {
    device(spec) {
      let device = devices.get(spec.deviceFd);
      if (!device) {
        device = adopt(spec.deviceFd);
        devices.set(spec.deviceFd, device);
      }
      return { ops: deviceOps(device), slots: barSlots(vmFd, spec) };
    },
  };
}
