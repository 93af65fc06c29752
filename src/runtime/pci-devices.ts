// Building the PCI devices in one thread (main, each vCPU thread, the I/O thread) over their records: the pieces
// src/runtime/device-table.ts `instantiate` calls for the kinds 'pci-host' and 'virtio-pci'. Every thread builds
// its own PciBus first (pciBusFor) and passes it in its DeviceEnvironment, then instantiates the devices in table
// order; the host bridge puts itself in slot 0 and each virtio function in its spec's slot.
import type { StateArena } from '../../cpr/vmstate/vmstate.js';
import type { IoRegion, IrqLine, MachineControl } from '../bus/types.js';
import type { IoEventBlock, IoWatch, MsiBlock } from '../bus/pci-types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { PciBus } from '../../devices/pci/bus.js';
import { PciHostBridge, pciHostState, type PciHostConfig, type PciHostRecord } from '../../devices/pci/host-bridge.js';
import { VirtioPciTransport, type VirtioPciRecord } from '../../devices/virtio/pci-transport.js';
import type { VirtioBackend } from '../../devices/virtio/types.js';
import type { MsiRouter } from './msi-router.js';
import type { IoEventRegistry } from './ioevent-registry.js';

/** Device-table spec of the host bridge. */
export interface PciHostSpec {
  readonly kind: 'pci-host';
  readonly id: string;
  readonly config: PciHostConfig;
}

/** What the transport part of a virtio-pci device spec carries (the back end's own fields come with it). */
export interface VirtioPciPlacement {
  readonly slot: number;
  readonly msi: MsiBlock;
  readonly notify: IoEventBlock;
  readonly bars: { readonly msix: number; readonly modern: number };
  /** False: never bind the notification ioeventfds (QEMU's ioeventfd=off). */
  readonly ioeventfd: boolean;
}

interface EntryLike {
  readonly spec: { readonly kind: string };
  readonly stateOffset: number;
}

/** This thread's PCI bus over the host bridge's record, or null when the machine has no 'pci-host' entry. */
export function pciBusFor(
  entries: readonly EntryLike[],
  arena: StateArena,
  irq: (gsi: number) => IrqLine,
): PciBus | null {
  const host = entries.find((e) => e.spec.kind === 'pci-host');
  if (!host) return null;
  const { config } = host.spec as unknown as PciHostSpec;
  return new PciBus(arena.record(pciHostState, host.stateOffset), config.windows, irq, config.intx);
}

/** The host bridge in this thread. */
export function pciHostDevice(spec: PciHostSpec, state: PciHostRecord, pci: PciBus, machine: MachineControl) {
  const host = new PciHostBridge(state, spec.config, pci, machine);
  return {
    host,
    regions: host.regions() as readonly IoRegion[],
    reset: () => host.reset(),
    restored: () => host.restored(),
  };
}

/** What a thread provides to a virtio-pci device besides its bus. */
export interface VirtioPciEnvironment {
  readonly pci: PciBus;
  readonly memory: GuestMemory;
  readonly msi: MsiRouter;
  readonly ioEvents: IoEventRegistry;
  readonly log?: (line: string) => void;
  readonly ioLock?: { lock(): void; unlock(): void };
}

/**
 * A virtio-pci device in this thread: the transport over `state` (the 'transport' part of the device's record),
 * the back end the caller built over the 'device' part. Its windows are the bus's, so it adds no regions.
 */
export function virtioPciDevice(
  id: string,
  placement: VirtioPciPlacement,
  state: VirtioPciRecord,
  backend: VirtioBackend,
  env: VirtioPciEnvironment,
) {
  const transport = new VirtioPciTransport(state, backend, {
    pci: env.pci,
    slot: placement.slot,
    memory: env.memory,
    msi: env.msi.vectors(placement.msi),
    notify: env.ioEvents.slots(placement.notify),
    bars: placement.bars,
    name: id,
    log: env.log,
    ioLock: env.ioLock,
    ioeventfd: placement.ioeventfd,
  });
  return {
    transport,
    regions: [] as readonly IoRegion[],
    reset: () => transport.reset(),
    restored: () => transport.restored(),
    ioWatches: (): readonly IoWatch[] => transport.ioWatches(),
  };
}
