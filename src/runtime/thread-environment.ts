// The device environment a vCPU thread or the I/O thread builds for its own device instances: interrupt lines on
// the VM fd, the shared clock and doorbell, guest RAM, chardev outputs opened on first use, and this thread's PCI
// bus, MSI router and ioeventfd registry attached to the main thread's. (The main thread has its own in Machine.)
import type { StateArena } from '../../cpr/vmstate/vmstate.js';
import type { CharOut, MachineControl } from '../bus/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { openCharOut, type CharOutTransfer } from '../chardev/index.js';
import type { DeviceEnvironment } from '../../devices/registration.js';
import { pciBusFor } from '../../devices/pci/host-bridge.js';
import type { DeviceEntry } from './device-table.js';
import { irqLines } from './irq-lines.js';
import { hostClock } from './clock.js';
import { Doorbell } from './doorbell.js';
import { MsiRouter, type MsiRouterInit } from './msi-router.js';
import { IoEventRegistry, type IoEventRegistryInit } from './ioevent-registry.js';
import { vfioServices } from './vfio-services.js';

export interface ThreadEnvironmentInit {
  readonly vmFd: number;
  readonly devices: readonly DeviceEntry[];
  readonly outputs: Readonly<Record<string, CharOutTransfer>>;
  readonly msi: MsiRouterInit | null;
  readonly ioEvents: IoEventRegistryInit | null;
}

/** `who` names the thread in errors ("vCPU 1", "I/O thread"). Close the returned outputs when the thread ends. */
export function threadDeviceEnvironment(
  init: ThreadEnvironmentInit,
  parts: {
    who: string;
    arena: StateArena;
    memory: GuestMemory;
    doorbell: Doorbell;
    machine: MachineControl;
    ioLock?: DeviceEnvironment['ioLock'];
  },
): { env: DeviceEnvironment; closeOutputs(): void } {
  const outputs = new Map<string, CharOut>();
  const irq = irqLines(init.vmFd);
  const env: DeviceEnvironment = {
    irq,
    machine: parts.machine,
    clock: hostClock,
    memory: parts.memory,
    output(name: string): CharOut {
      let out = outputs.get(name);
      if (!out) {
        const transfer = init.outputs[name];
        if (!transfer) throw new Error(`${parts.who}: no output '${name}'`);
        out = openCharOut(transfer);
        outputs.set(name, out);
      }
      return out;
    },
    timersChanged: () => parts.doorbell.ring(Doorbell.TIMERS),
    pci: pciBusFor(init.devices, parts.arena, irq),
    msi: init.msi ? MsiRouter.attach(init.msi) : null,
    ioEvents: init.ioEvents ? IoEventRegistry.attach(init.ioEvents) : null,
    vfio: init.devices.some((d) => d.spec.kind === 'vfio-pci') ? vfioServices(init.vmFd) : null,
    log: (line) => process.stderr.write(`tsvmm: ${line}\n`),
    ioLock: parts.ioLock,
  };
  return {
    env,
    closeOutputs: () => {
      for (const out of outputs.values()) (out as { close?: () => void }).close?.();
    },
  };
}
