// The 'virtio-pci' kind of device: the modern virtio-pci transport (pci-transport.ts) over one of the back ends
// listed here. Each back end registers itself from its own file (blk.ts, net.ts, rng.ts, console.ts); adding one is
// its file plus one entry in VIRTIO_BACKENDS. Its record and checkpoint section are the transport's part and the back
// end's together, named as QEMU names the device ('virtio-blk-pci').
//
// The machine plans these devices itself (src/machine/virtio-plan.ts: host resources opened once, a PCI slot, MSI
// vectors with their irqfds, notification eventfds, BAR addresses), because they need host resources opened once
// and a share of the PCI bus; the plan reaches this registration through the machine plan's `virtioFunctions`.
import type { Descriptor, RecordInternals } from '../../cpr/vmstate/vmstate.js';
import type { IoEventBlock, MsiBlock } from '../../src/bus/pci-types.js';
import { type DeviceRegistration, pciEnvironment } from '../registration.js';
import { virtioBlkBackend } from './blk.js';
import { virtioConsoleBackend } from './console.js';
import { virtioNetBackend } from './net.js';
import { VirtioPciTransport, virtioPciDescriptor, type VirtioPciRecord } from './pci-transport.js';
import { virtioRngBackend } from './rng.js';
import type { VirtioBackendRegistration } from './types.js';

/** Every virtio back end tsvmm has. */
const VIRTIO_BACKENDS = [virtioBlkBackend, virtioNetBackend, virtioRngBackend, virtioConsoleBackend] as const;

type Backend = (typeof VIRTIO_BACKENDS)[number];

/** The back-end part of a 'virtio-pci' device spec: plain data (it crosses to every thread). */
export type VirtioBackendSpec = Backend extends VirtioBackendRegistration<infer Spec, never> ? Spec : never;

/** Where the machine put the function on the bus, and the MSI vectors and notification eventfds it gave it. */
export interface VirtioPciPlacement {
  readonly slot: number;
  readonly msi: MsiBlock;
  readonly notify: IoEventBlock;
  readonly bars: { readonly msix: number; readonly modern: number };
  /** False: never bind the notification ioeventfds (QEMU's ioeventfd=off). */
  readonly ioeventfd: boolean;
}

export interface VirtioPciSpec {
  readonly kind: 'virtio-pci';
  readonly id: string;
  readonly placement: VirtioPciPlacement;
  readonly backend: VirtioBackendSpec;
}

const backendOf = (type: VirtioBackendSpec['type']): Backend => {
  const backend = VIRTIO_BACKENDS.find((b) => b.type === type);
  if (!backend) throw new Error(`virtio-pci: no back end of type '${type}'`);
  return backend;
};

/** One descriptor per back end type (built once: the checkpoint registry maps section names to these). */
const descriptors = new Map<string, Descriptor>(
  VIRTIO_BACKENDS.map((b) => [b.type, virtioPciDescriptor(b.pciName, b.state)]),
);

/** Virtqueues of a back end (the machine allocates MSI vectors and notification eventfds before any thread starts). */
export const virtioQueueCount = (type: VirtioBackendSpec['type']): number => backendOf(type).queues;

/** A virtio-pci device's record: the transport's part and the back end's. */
type VirtioPciDeviceRecord = RecordInternals & { readonly transport: VirtioPciRecord; readonly device: unknown };

/** Back ends differ in spec and record; the spec's `type` picks the back end its record was laid out for. */
type SomeBackend = VirtioBackendRegistration<VirtioBackendSpec, unknown>;

/** What the machine plan gives this kind: the functions it placed (opening their host resources on the way). */
export interface VirtioPciPlan {
  virtioFunctions(): Promise<readonly VirtioPciSpec[]>;
}

/** One per -device virtio-*-pci / virtconsole (and -drive if=virtio), in PCI slot order. */
export const virtioPciDevice: DeviceRegistration<VirtioPciSpec, VirtioPciDeviceRecord, VirtioPciPlan> = {
  kind: 'virtio-pci',
  descriptors: [...descriptors.values()],
  descriptorOf: (spec) => descriptors.get(spec.backend.type)!,
  plan: ({ virtioFunctions }) => virtioFunctions(),
  create: (record, env, spec) => {
    const built = (backendOf(spec.backend.type) as SomeBackend).create(record.device, env, spec.backend, spec.id);
    const { placement } = spec;
    const pci = pciEnvironment(env, spec.id);
    const transport = new VirtioPciTransport(record.transport, built.backend, {
      pci: pci.pci,
      slot: placement.slot,
      memory: pci.memory,
      msi: pci.msi.vectors(placement.msi),
      notify: pci.ioEvents.slots(placement.notify),
      bars: placement.bars,
      name: spec.id,
      log: pci.log,
      ioLock: pci.ioLock,
      ioeventfd: placement.ioeventfd,
    });
    return {
      regions: [], // its windows are BARs, which the bus maps
      reset: () => transport.reset(),
      restored: () => transport.restored(),
      ioWatches: () => [...transport.ioWatches(), ...(built.watches ?? [])],
    };
  },
};
