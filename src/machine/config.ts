// A machine's configuration: everything needed to build it, as plain data (the CLI produces it; a checkpoint will
// record it).
import type { MemoryConfig } from '../memory/config.js';
import type { CharSpec } from '../chardev/index.js';
import type { CpuMode } from '../boot/cpu-modes.js';
import type { CpuidPolicy } from '../../kvm/cpuid.js';

export type BootConfig =
  /** `-kernel` (multiboot v1), with `-initrd` modules and `-append`. */
  | { kind: 'kernel'; path: string; initrd?: string; append: string }
  /** `-device loader,file=…,addr=…[,entry=…][,mode=…]`: a flat binary started in the given CPU mode. */
  | { kind: 'flat'; path: string; loadAddress: number; entry?: number; mode: CpuMode };

export interface DebugconConfig {
  output: CharSpec;
  iobase: number;
  timestamps: boolean;
}

/** A virtio-pci device (`-device virtio-*-pci` with its `-drive`/`-netdev`/`-chardev`). */
export type VirtioDeviceConfig = (
  | { kind: 'blk'; id: string; path: string; readOnly: boolean; serial: string | null }
  | { kind: 'net'; id: string; ifname: string; mac: string }
  | { kind: 'rng'; id: string }
  | { kind: 'console'; id: string; output: CharSpec }
) & {
  /**
   * QEMU's `ioeventfd=off`: queue notifications exit to tsvmm instead of signalling an eventfd in the kernel (for
   * comparison and debugging; host-side only, so checkpoints do not record it). Absent: on.
   */
  ioeventfd?: false;
};

/**
 * A host PCI function passed through with VFIO (`-device vfio-pci,host=0000:00:03.0` or `sysfsdev=PATH`). A
 * checkpoint's CONFIG record carries it (cpr/machine-state/machine-config.ts), so a restore from the file alone
 * (Machine.restore) opens the same function.
 */
export interface VfioDeviceConfig {
  id: string;
  /** The function's sysfs directory, e.g. /sys/bus/pci/devices/0000:00:03.0 (host= is spelled into this). */
  sysfsdev: string;
  /** QEMU's rombar=0: the guest sees no expansion ROM even if the device has one. Absent: the ROM is visible. */
  rombar?: false;
}

export interface MachineConfig {
  name: string;
  memory: MemoryConfig;
  cpus: number;
  cpuModel: CpuidPolicy;
  boot: BootConfig | null;
  /** COM1..COM4 in order; `none` leaves a port out. */
  serial: CharSpec[];
  debugcon: DebugconConfig[];
  debugExit: { iobase: number; iosize: number } | null;
  /** QEMU's pvpanic ISA device (at 0x505 by default with ACPI; -device pvpanic[,ioport=N]; -machine pvpanic=off). */
  pvpanic: { ioport: number } | null;
  /** virtio-pci devices in PCI slot order. */
  virtio: VirtioDeviceConfig[];
  /** PCI functions passed through (after the virtio functions on bus 0). Absent: none. */
  vfio?: VfioDeviceConfig[];
  /** ACPI tables and the ACPI power-management block (-machine acpi=on|off; on by default). */
  acpi: boolean;
  noReboot: boolean;
  /**
   * -no-shutdown / -action shutdown=pause: a guest power-off stops the VM (run state `shutdown`) instead of ending
   * tsvmm; QMP `system_reset` then `cont` boot it again. Host policy: checkpoints do not record it. Default false.
   */
  noShutdown?: boolean;
  /** -action panic=…: what a guest panic (pvpanic) does. Default 'exit-failure' (tsvmm ends with 126). */
  panicAction?: PanicAction;
  timeoutMs: number | null;
  startPaused: boolean;
}

/**
 * QEMU's -action panic= values: end tsvmm with 126 ('exit-failure'; QEMU exits 1), power off as the guest would
 * ('shutdown': status 0, or stopped with -no-shutdown), stop the VM ('pause': run state `guest-panicked`), or only
 * report it ('none').
 */
export type PanicAction = 'exit-failure' | 'shutdown' | 'pause' | 'none';

export const MAX_VCPUS = 255;
