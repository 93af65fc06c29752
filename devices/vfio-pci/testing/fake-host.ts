// Test doubles for a passed-through function: a host config space built byte by byte (as VFIO's config region would
// read), a device that logs what the model asked of VFIO, and memory slots that remember where each window is.
// Not used outside tests.
import * as R from '../../pci/constants.js';
import type { VfioBarSlots, VfioDeviceOps } from '../host.js';

/** A 256-byte host config space with helpers to fill it. */
export class HostConfig {
  readonly bytes = new Uint8Array(256);
  set(offset: number, size: number, value: number): this {
    for (let i = 0; i < size; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
    return this;
  }
  /** Appends capabilities in the order given at the offsets given. */
  caps(list: readonly { id: number; offset: number; bytes?: readonly [number, number, number][] }[]): this {
    this.set(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
    this.set(R.PCI_CAPABILITY_LIST, 1, list[0]?.offset ?? 0);
    for (const [i, c] of list.entries()) {
      this.set(c.offset, 1, c.id);
      this.set(c.offset + 1, 1, list[i + 1]?.offset ?? 0);
      for (const [at, size, value] of c.bytes ?? []) this.set(c.offset + at, size, value);
    }
    return this;
  }
}

/** QEMU's edu device as VFIO shows it: 1234:11e8, a 1 MiB BAR 0, a 64-bit MSI capability at 0x40, INTA#. */
export function eduConfig(): HostConfig {
  return new HostConfig()
    .set(R.PCI_VENDOR_ID, 2, 0x1234)
    .set(R.PCI_DEVICE_ID, 2, 0x11e8)
    .set(R.PCI_REVISION_ID, 1, 0x10)
    .set(R.PCI_CLASS_DEVICE, 2, 0x00ff)
    .set(R.PCI_SUBSYSTEM_VENDOR_ID, 2, 0x1af4)
    .set(R.PCI_SUBSYSTEM_ID, 2, 0x1100)
    .set(R.PCI_HEADER_TYPE, 1, 0x80) // VFIO shows the host's multi-function bit; the guest must not
    .set(R.PCI_BASE_ADDRESS_0, 4, 0xfea00000)
    .set(R.PCI_INTERRUPT_PIN, 1, 1)
    .caps([{ id: R.PCI_CAP_ID_MSI, offset: 0x40, bytes: [[2, 2, 0x0080]] }]);
}

/**
 * QEMU's nvme as VFIO shows it: 1b36:0010, a 16 KiB 64-bit BAR 0 with the MSI-X table (65 vectors) at 0x2000 and
 * the PBA at 0x3000, power management at 0x40, MSI-X at 0x50 (listed after PCIe at 0x80), INTA#.
 */
export function nvmeConfig(): HostConfig {
  return new HostConfig()
    .set(R.PCI_VENDOR_ID, 2, 0x1b36)
    .set(R.PCI_DEVICE_ID, 2, 0x0010)
    .set(R.PCI_REVISION_ID, 1, 0x02)
    .set(R.PCI_CLASS_PROG, 1, 0x02)
    .set(R.PCI_CLASS_DEVICE, 2, 0x0108)
    .set(R.PCI_BASE_ADDRESS_0, 4, 0xfebf0004)
    .set(R.PCI_BASE_ADDRESS_0 + 4, 4, 0)
    .set(R.PCI_INTERRUPT_PIN, 1, 1)
    .caps([
      { id: 0x01, offset: 0x40, bytes: [[2, 2, 0x0003]] },
      { id: R.PCI_CAP_ID_EXP, offset: 0x80, bytes: [[2, 2, 0x0002]] },
      {
        id: R.PCI_CAP_ID_MSIX,
        offset: 0x50,
        bytes: [
          [2, 2, 64],
          [4, 4, 0x2000],
          [8, 4, 0x3000],
        ],
      },
    ]);
}

export type VfioCall =
  | { op: 'read' | 'write'; region: number; offset: number; bytes: number[] }
  | { op: 'setIrqs'; index: number; start: number; fds: number[] }
  | { op: 'disableIrqs'; index: number }
  | { op: 'resample'; fd: number }
  | { op: 'reset' }
  | { op: 'map'; window: number; gpa: number }
  | { op: 'unmap'; window: number };

/**
 * What the kernel holds of a device's interrupts (vfio_pci_intrs.c), for FakeVfio's `kernel` mode: the one index
 * enabled (null: none) and whether INTx has its unmask eventfd.
 */
export interface FakeIrqKernel {
  enabled: number | null;
  unmaskFd: boolean;
}

/** A kernel refusal, as vfio/device.ts throws it: the message carries the errno's name. */
const refused = (call: string, code: 'EINVAL' | 'EBUSY') =>
  Object.assign(new Error(`VFIO_DEVICE_SET_IRQS (${call}): ${code}`), { code });

/** A device and slots that log every call in one list (so tests see their order) and answer reads from `memory`. */
export class FakeVfio {
  /**
   * With `kernel`, SET_IRQS follows the kernel's rules too: one index enabled at a time (another's trigger is
   * EINVAL, so is disabling one that is not enabled), INTx disabled drops its unmask eventfd, and a second unmask
   * eventfd while one is set is EBUSY (vfio_virqfd_enable). Calls are logged either way.
   */
  constructor(readonly kernel: FakeIrqKernel | null = null) {}

  readonly calls: VfioCall[] = [];
  /** What a trapped BAR read returns, per region and offset (bytes). */
  readonly memory = new Map<number, Uint8Array>();
  /** Windows KVM would refuse (overlapping RAM, say). */
  readonly refuse = new Set<number>();
  readonly ops: VfioDeviceOps = {
    read: (region, offset, into) => {
      const m = this.memory.get(region);
      for (let i = 0; i < into.length; i++) into[i] = m ? m[offset + i] : 0;
      this.calls.push({ op: 'read', region, offset, bytes: [...into] });
    },
    write: (region, offset, bytes) => {
      const m = this.memory.get(region);
      if (m) m.set(bytes, offset);
      this.calls.push({ op: 'write', region, offset, bytes: [...bytes] });
    },
    setIrqs: (index, start, fds) => {
      this.calls.push({ op: 'setIrqs', index, start, fds: [...fds] });
      const k = this.kernel;
      if (!k || k.enabled === index) return;
      if (k.enabled !== null) throw refused(`index ${index} while ${k.enabled} is enabled`, 'EINVAL');
      k.enabled = index;
    },
    disableIrqs: (index) => {
      this.calls.push({ op: 'disableIrqs', index });
      const k = this.kernel;
      if (!k) return;
      if (k.enabled !== index) throw refused(`disable ${index}, not enabled`, 'EINVAL');
      k.enabled = null;
      k.unmaskFd = false;
    },
    setIntxResample: (fd) => {
      this.calls.push({ op: 'resample', fd });
      const k = this.kernel;
      if (!k) return;
      if (k.enabled !== 0) throw refused('INTx unmask without INTx', 'EINVAL');
      if (fd < 0) k.unmaskFd = false;
      else if (k.unmaskFd) throw refused('a second INTx unmask eventfd', 'EBUSY');
      else k.unmaskFd = true;
    },
    reset: () => {
      this.calls.push({ op: 'reset' });
      return true;
    },
  };
  readonly slots: VfioBarSlots = {
    map: (window, gpa) => {
      if (this.refuse.has(window)) throw new Error('KVM_SET_USER_MEMORY_REGION: EEXIST');
      this.calls.push({ op: 'map', window, gpa });
    },
    unmap: (window) => void this.calls.push({ op: 'unmap', window }),
  };
  /** Takes the calls made so far. */
  take(): VfioCall[] {
    return this.calls.splice(0);
  }
}
