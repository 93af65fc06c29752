// What the main thread gives the I/O thread, and what the I/O thread reports back.
import type { CharOutTransfer } from '../chardev/index.js';
import type { DeviceEntry } from '../runtime/device-table.js';
import type { RamRegion } from '../memory/guest-ram.js';
import type { MsiRouterInit } from '../runtime/msi-router.js';
import type { IoEventRegistryInit } from '../runtime/ioevent-registry.js';
import type { MachineRequest } from '../runtime/machine-control.js';

/** Everything the I/O thread needs to build its side of the machine: plain data and SharedArrayBuffers. */
export interface IoThreadInit {
  vmFd: number;
  ram: readonly RamRegion[];
  arena: SharedArrayBuffer;
  devices: readonly DeviceEntry[];
  outputs: Readonly<Record<string, CharOutTransfer>>;
  lock: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
  /** The IoThreadControl block and its eventfd. */
  control: SharedArrayBuffer;
  controlFd: number;
  msi: MsiRouterInit | null;
  ioEvents: IoEventRegistryInit | null;
}

/** Rare reports (the hot path never posts). `vcpu: -1` marks them as the I/O thread's for the machine's handler. */
export type IoThreadEvent = MachineRequest | { type: 'failure'; vcpu: -1; kind: 'vmm-error'; report: string };
