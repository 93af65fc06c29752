// The device environment of the main thread's own device instances (timers, host input, QMP queries, checkpoints):
// as a vCPU thread's (src/runtime/thread-environment.ts), but its chardev outputs are the backends themselves and
// its requests of the machine go straight to the machine's handler, after the device code that made them.
import type { CharBackend } from '../chardev/index.js';
import type { MachineRam } from '../memory/config.js';
import type { DeviceEntry, DeviceEnvironment } from '../runtime/device-table.js';
import { MachineRequests, type MachineRequest } from '../runtime/machine-control.js';
import type { WakeEventSource } from '../bus/types.js';
import type { StateArena } from '../../cpr/vmstate/vmstate.js';
import type { PciBus } from '../../devices/pci/bus.js';
import { irqLines } from '../runtime/irq-lines.js';
import { hostClock } from '../runtime/clock.js';
import { Doorbell } from '../runtime/doorbell.js';
import { pciBusFor } from '../../devices/pci/host-bridge.js';
import type { MsiRouter } from '../runtime/msi-router.js';
import type { IoEventRegistry } from '../runtime/ioevent-registry.js';
import { vfioServices } from '../runtime/vfio-services.js';

export interface MainEnvironmentParts {
  readonly vmFd: number;
  readonly ram: MachineRam;
  readonly arena: StateArena;
  readonly entries: readonly DeviceEntry[];
  readonly chardevs: ReadonlyMap<string, CharBackend>;
  readonly doorbell: Doorbell;
  readonly msi: MsiRouter;
  readonly ioEvents: IoEventRegistry;
  readonly log: (line: string) => void;
  /** Where requests and wake-up events go (the machine's handler). */
  readonly request: (request: MachineRequest) => void;
  readonly wake: (source: WakeEventSource) => void;
}

/** The environment, and the main thread's view of PCI bus 0 (null without a host bridge). */
export function mainEnvironment(p: MainEnvironmentParts): { env: DeviceEnvironment; pciBus: PciBus | null } {
  const machine = new MachineRequests(
    -1,
    (request) => queueMicrotask(() => p.request(request)),
    (source) => queueMicrotask(() => p.wake(source)),
  );
  const irq = irqLines(p.vmFd);
  const pciBus = pciBusFor(p.entries, p.arena, irq);
  const env: DeviceEnvironment = {
    irq,
    machine,
    clock: hostClock,
    memory: p.ram.ram,
    output: (id: string) => p.chardevs.get(id)!.out,
    timersChanged: () => p.doorbell.ring(Doorbell.TIMERS),
    pci: pciBus,
    msi: p.msi,
    ioEvents: p.ioEvents,
    vfio: p.entries.some((e) => e.spec.kind === 'vfio-pci') ? vfioServices(p.vmFd) : null,
    log: p.log,
  };
  return { env, pciBus };
}
