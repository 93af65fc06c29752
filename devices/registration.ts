// How a kind of device joins a machine: each device file exports one `DeviceRegistration` (its kind, its vmstate
// descriptor, which devices of the kind a machine has, and how a thread builds one), and src/runtime/device-kinds.ts
// lists them. The machine never names a kind: it plans every registration's devices in list order (which is also
// the order of their checkpoint sections), places their records in the shared arena, and drives each live
// instance through the one face below (`DeviceInstance`).
//
// Everything here is what a device may see of the machine; like src/bus/types.ts, nothing knows about KVM.
import type { Descriptor, StateOf } from '../cpr/vmstate/vmstate.js';
import type { IoEventTable, IoWatch, MsiVectorTable } from '../src/bus/pci-types.js';
import type {
  CharOut,
  HostClock,
  IoRegion,
  IrqLine,
  MachineControl,
  WakeEventSource,
  WakeReason,
} from '../src/bus/types.js';
import type { CharSpec } from '../src/chardev/spec.js';
import type { GuestMemory } from '../src/memory/guest-memory.js';
import type { PciBus } from './pci/bus.js';
import type { VfioServices } from './vfio-pci/host.js';

/** What every device spec carries: plain data (it crosses to every thread in workerData). */
export interface DeviceSpecBase {
  /** The registration that builds it. */
  readonly kind: string;
  /** Unique in the machine; names the device's I/O windows and messages. */
  readonly id: string;
}

/**
 * Main thread, planning: opens the character backend `spec` under `id` in the machine's chardev table and returns
 * the id a spec's `output` names. Backends open in plan order (a unix socket server may wait for its client).
 */
export type OpenChardev = (id: string, spec: CharSpec) => Promise<string>;

/** What a thread provides to the devices it builds (the main thread, each vCPU thread, the I/O thread). */
export interface DeviceEnvironment {
  irq(gsi: number): IrqLine;
  machine: MachineControl;
  clock: HostClock;
  memory: GuestMemory;
  /** The output a spec names (a chardev id), opened for this thread. */
  output(id: string): CharOut;
  /** A device's time-driven work changed: the main thread should poll timers again soon. */
  timersChanged(): void;
  /** This thread's PCI bus (built over the host bridge's record before any device), MSI vectors and ioeventfds. */
  pci?: PciBus | null;
  msi?: MsiVectorTable | null;
  ioEvents?: IoEventTable | null;
  /** Passed-through functions' host device operations and BAR memory slots (threads of a machine with vfio-pci). */
  vfio?: VfioServices | null;
  /** One-line notices (a device the guest broke). */
  log?: (line: string) => void;
  /** The I/O thread only: the machine lock it holds while devices run, for host I/O done without it. */
  ioLock?: IoThreadHold;
}

/** The I/O thread's hold on the machine: its lock (released around host I/O) and whether it must park soon. */
export interface IoThreadHold {
  lock(): void;
  unlock(): void;
  /** The main thread asked the I/O thread to park or stop: queue work stops at its next safe point. */
  parkRequested(): boolean;
}

/**
 * A live device in one thread, as the machine drives it: a plain object (the device table copies its members), whose
 * functions call into the device model. Only `regions`, `reset` and `restored` are required.
 */
export interface DeviceInstance {
  /** The register windows it claims on the PIO and MMIO buses (a PCI function's come through the bus instead). */
  readonly regions: readonly IoRegion[];
  /** Power-on state (main thread, vCPUs parked). The machine follows it with restored(). */
  reset(): void;
  /** A guest/system reset where the hardware keeps some state (the RTC's CMOS and clock); default: reset(). */
  systemReset?(): void;
  /** After a checkpoint restored the record (or after a reset): re-drive interrupt lines, re-base timers. */
  restored(): void;
  /** Main thread: fire what is due; milliseconds until the next deadline, or null. */
  pollTimers?(): number | null;
  /** Main thread: host input; returns how many bytes were taken. */
  receive?(bytes: Uint8Array): number;
  /** ACPI: the power button was pressed (QMP system_powerdown); false if the guest has not enabled it. */
  powerButton?(): boolean;
  /** ACPI: the machine is waking the guest from S3. */
  wake?(reason: WakeReason): void;
  /** ACPI: whether the guest enabled `source` to wake it from S3 (PM1_EN). */
  wakeEnabled?(source: WakeEventSource): boolean;
  /** I/O thread: the fds this device's work waits on (queue notifications, a tap). */
  ioWatches?(): readonly IoWatch[];
}

/**
 * One kind of device. `Spec` is what the machine plans for each device of the kind; `State` is its record (laid out
 * by `descriptorOf(spec)`); `Machine` is the part of the machine plan the kind reads (a structural slice of
 * src/machine/device-specs.ts DevicePlanContext, so a device file never imports the machine).
 */
export interface DeviceRegistration<Spec extends DeviceSpecBase, State, Machine> {
  readonly kind: Spec['kind'];
  /** Every descriptor a device of this kind may save its record under (`tsvmm vmstate dump` decodes with them). */
  readonly descriptors: readonly Descriptor[];
  /** The descriptor of this device's record; its name is the checkpoint section's, so it never changes. */
  descriptorOf(spec: Spec): Descriptor;
  /** Main thread, once: this kind's devices on the machine, in the order they are laid out. */
  plan(machine: Machine): readonly Spec[] | Promise<readonly Spec[]>;
  /** Any thread: this thread's instance over the device's record in the shared arena. */
  create(state: State, env: DeviceEnvironment, spec: Spec): DeviceInstance;
}

/** The spec type a registration builds. */
export type SpecOf<R> = R extends DeviceRegistration<infer Spec, never, never> ? Spec : never;

/** A registration whose devices all keep one record layout (every kind but a multi-variant one such as virtio-pci). */
export function singleRecordDevice<Spec extends DeviceSpecBase, D extends Descriptor, Machine>(device: {
  readonly kind: Spec['kind'];
  readonly descriptor: D;
  plan(machine: Machine): readonly Spec[] | Promise<readonly Spec[]>;
  create(state: StateOf<D>, env: DeviceEnvironment, spec: Spec): DeviceInstance;
}): DeviceRegistration<Spec, StateOf<D>, Machine> {
  return {
    kind: device.kind,
    descriptors: [device.descriptor],
    descriptorOf: () => device.descriptor,
    plan: (machine) => device.plan(machine),
    create: (state, env, spec) => device.create(state, env, spec),
  };
}

/** What a PCI device needs of its thread; throws when the thread was given no PCI plumbing (a machine bug). */
export function pciEnvironment(env: DeviceEnvironment, id: string) {
  if (!env.pci || !env.msi || !env.ioEvents)
    throw new Error(`${id}: this thread has no PCI bus, MSI router or ioeventfd registry`);
  return { pci: env.pci, msi: env.msi, ioEvents: env.ioEvents, memory: env.memory, log: env.log, ioLock: env.ioLock };
}

/** A one-window port device's region. */
export const pioRegion = (name: string, base: number, length: number, handler: IoRegion['handler']): IoRegion => ({
  name,
  space: 'pio',
  base,
  length,
  handler,
});
