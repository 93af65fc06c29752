// The machine's parts list of devices, and how any thread turns it into live device instances.
//
// The main thread plans the table once (kind, options, where each state record sits in the shared arena); the
// table is plain data, so it goes to every vCPU thread through workerData, and each thread builds its own
// instances over the same records. Only immutable configuration differs from nothing: all mutable state is in the
// arena (see cpr/vmstate/vmstate.ts), which is what lets any thread handle any exit.
import { StateArena, layoutOf, type Descriptor, type RecordInternals } from '../../cpr/vmstate/vmstate.js';
import type { CharOut, HostClock, IoRegion, IrqLine, MachineControl, WakeEventSource } from '../bus/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { Serial16550, serialState, SERIAL_IO_LENGTH } from '../../devices/serial.js';
import { Debugcon, debugconState, resetDebugcon, DEBUGCON_IO_LENGTH } from '../../devices/debugcon.js';
import { DebugExit, debugExitState, resetDebugExit } from '../../devices/debug-exit.js';
import { Rtc, rtcState, resetRtc, RTC_PORT_BASE, RTC_IRQ, type RtcMemoryConfig } from '../../devices/rtc.js';
import { I8042, i8042State, resetI8042, I8042_KBD_IRQ, I8042_AUX_IRQ } from '../../devices/i8042.js';
import { AcpiPm, acpiPmState, resetAcpiPm, type WakeReason } from '../../devices/acpi-pm.js';
import {
  FwCfg,
  fwCfgState,
  resetFwCfg,
  FW_CFG_IO_BASE,
  FW_CFG_IO_LENGTH,
  type FwCfgBlob,
} from '../../devices/fw-cfg.js';
import { Pvpanic, pvpanicState, resetPvpanic, PVPANIC_IO_LENGTH } from '../../devices/pvpanic.js';
import { pciHostState } from '../../devices/pci/host-bridge.js';
import type { PciBus } from '../../devices/pci/bus.js';
import type { IoWatch } from '../bus/pci-types.js';
import { pciHostDevice, virtioPciDevice, type PciHostSpec } from './pci-devices.js';
import { virtioPciDescriptors, virtioRecord, createVirtioBackend, type VirtioPciSpec } from './virtio-devices.js';
import type { MsiRouter } from './msi-router.js';
import type { IoEventRegistry } from './ioevent-registry.js';

/** What each kind of device needs to be built; all plain data (it crosses to worker threads). */
export type DeviceSpec =
  | { kind: 'serial'; id: string; base: number; irq: number; output: string }
  | { kind: 'debugcon'; id: string; base: number; output: string; timestamps: boolean }
  | { kind: 'debug-exit'; id: string; base: number; size: number }
  | { kind: 'rtc'; id: string; memory: RtcMemoryConfig }
  | { kind: 'i8042'; id: string }
  | { kind: 'fw-cfg'; id: string; content: FwCfgBlob }
  | { kind: 'acpi-pm'; id: string; base: number; sciIrq: number }
  | { kind: 'pvpanic'; id: string; port: number }
  | PciHostSpec
  | VirtioPciSpec;

export interface DeviceEntry {
  readonly spec: DeviceSpec;
  /** Where the device's state record sits in the arena. */
  readonly stateOffset: number;
}

/** What a thread provides to the devices it builds. */
export interface DeviceEnvironment {
  irq(gsi: number): IrqLine;
  machine: MachineControl;
  clock: HostClock;
  memory: GuestMemory;
  /** The output a spec names (a chardev id), opened for this thread. */
  output(id: string): CharOut;
  /** A device's time-driven work changed: the main thread should poll timers again soon. */
  timersChanged(): void;
  /** This thread's PCI bus (src/runtime/pci-devices.ts pciBusFor), its MSI router and ioeventfd registry. */
  pci?: PciBus | null;
  msi?: MsiRouter | null;
  ioEvents?: IoEventRegistry | null;
  /** One-line notices (a device the guest broke). */
  log?: (line: string) => void;
  /** The I/O thread only: the machine lock it holds while devices run, for host I/O done without it. */
  ioLock?: { lock(): void; unlock(): void };
}

/** A live device in one thread, behind one uniform face. */
export interface MachineDevice {
  readonly spec: DeviceSpec;
  readonly descriptor: Descriptor;
  readonly state: RecordInternals;
  readonly regions: readonly IoRegion[];
  /** Power-on state (main thread, vCPUs parked). Follow with restored() so interrupt lines match the record. */
  reset(): void;
  /** A guest/system reset where the hardware keeps some state (the RTC's CMOS and clock); default: reset(). */
  systemReset?(): void;
  /** After a checkpoint restored the record: re-drive interrupt lines, re-base timers. */
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

const descriptors: Record<Exclude<DeviceSpec['kind'], 'virtio-pci'>, Descriptor> = {
  serial: serialState,
  debugcon: debugconState,
  'debug-exit': debugExitState,
  rtc: rtcState,
  i8042: i8042State,
  'fw-cfg': fwCfgState,
  'acpi-pm': acpiPmState,
  pvpanic: pvpanicState,
  'pci-host': pciHostState,
};

/** Every device descriptor tsvmm has (checkpoint dumps decode device sections with these). */
export const deviceDescriptors: readonly Descriptor[] = [
  ...Object.values(descriptors),
  ...Object.values(virtioPciDescriptors),
];

export function descriptorOf(spec: DeviceSpec): Descriptor {
  return spec.kind === 'virtio-pci' ? virtioPciDescriptors[spec.backend.type] : descriptors[spec.kind];
}

/** What a thread must have to build PCI devices. */
function pciEnvironment(env: DeviceEnvironment, kind: string) {
  if (!env.pci || !env.msi || !env.ioEvents)
    throw new Error(`${kind}: this thread has no PCI bus, MSI router or ioeventfd registry`);
  return { pci: env.pci, msi: env.msi, ioEvents: env.ioEvents, memory: env.memory, log: env.log, ioLock: env.ioLock };
}

/** Places every device's record in a new arena sized to fit them all. */
export function planDevices(specs: readonly DeviceSpec[]): { arena: StateArena; entries: DeviceEntry[] } {
  const bytes = specs.reduce((n, s) => n + layoutOf(descriptorOf(s)).size + 8, 8);
  const arena = new StateArena(bytes);
  const ids = new Set<string>();
  const entries = specs.map((spec) => {
    if (ids.has(spec.id)) throw new Error(`device id '${spec.id}' used twice`);
    ids.add(spec.id);
    return { spec, stateOffset: arena.allocate(descriptorOf(spec)) };
  });
  return { arena, entries };
}

const pio = (name: string, base: number, length: number, handler: IoRegion['handler']): IoRegion => ({
  name,
  space: 'pio',
  base,
  length,
  handler,
});

const nsToMs = (deadlineNs: bigint | null, clock: HostClock): number | null =>
  deadlineNs === null ? null : Math.max(0, Number(deadlineNs - clock.monotonicNs()) / 1e6);

/** Builds this thread's instance of one device over its record in the arena. */
export function instantiate(entry: DeviceEntry, arena: StateArena, env: DeviceEnvironment): MachineDevice {
  const { spec } = entry;
  const descriptor = descriptorOf(spec);
  switch (spec.kind) {
    case 'serial': {
      const state = arena.record(serialState, entry.stateOffset);
      const dev = new Serial16550(state, { irq: env.irq(spec.irq), out: env.output(spec.output), clock: env.clock });
      return {
        spec,
        descriptor,
        state,
        regions: [pio(spec.id, spec.base, SERIAL_IO_LENGTH, dev)],
        reset: () => dev.reset(),
        restored: () => dev.restored(),
        pollTimers: () => nsToMs(dev.pollTimer(), env.clock),
        receive: (bytes) => {
          const n = dev.receive(bytes);
          if (n) env.timersChanged();
          return n;
        },
      };
    }
    case 'debugcon': {
      const state = arena.record(debugconState, entry.stateOffset);
      const dev = new Debugcon(state, { out: env.output(spec.output), timestamps: spec.timestamps, clock: env.clock });
      return {
        spec,
        descriptor,
        state,
        regions: [pio(spec.id, spec.base, DEBUGCON_IO_LENGTH, dev)],
        reset: () => resetDebugcon(state),
        restored: () => dev.restored(),
      };
    }
    case 'debug-exit': {
      const state = arena.record(debugExitState, entry.stateOffset);
      const dev = new DebugExit(state, env.machine);
      return {
        spec,
        descriptor,
        state,
        regions: [pio(spec.id, spec.base, spec.size, dev)],
        reset: () => resetDebugExit(state),
        restored: () => dev.restored(),
      };
    }
    case 'rtc': {
      const state = arena.record(rtcState, entry.stateOffset);
      const dev = new Rtc(state, env.irq(RTC_IRQ), env.clock, {
        onScheduleChange: () => env.timersChanged(),
        onAlarmWake: () => env.machine.wakeEvent('rtc'),
      });
      return {
        spec,
        descriptor,
        state,
        regions: dev.regions(RTC_PORT_BASE),
        reset: () => resetRtc(state, spec.memory),
        systemReset: () => dev.systemReset(),
        restored: () => dev.restored(),
        pollTimers: () => dev.pollTimers(),
      };
    }
    case 'i8042': {
      const state = arena.record(i8042State, entry.stateOffset);
      const dev = new I8042(state, {
        kbdIrq: env.irq(I8042_KBD_IRQ),
        auxIrq: env.irq(I8042_AUX_IRQ),
        machine: env.machine,
      });
      return {
        spec,
        descriptor,
        state,
        regions: dev.regions(),
        reset: () => resetI8042(state),
        restored: () => dev.restored(),
      };
    }
    case 'acpi-pm': {
      const state = arena.record(acpiPmState, entry.stateOffset);
      const dev = new AcpiPm(state, {
        sci: env.irq(spec.sciIrq),
        clock: env.clock,
        sleep: env.machine,
        onScheduleChange: () => env.timersChanged(),
      });
      return {
        spec,
        descriptor,
        state,
        regions: dev.regions(spec.base),
        reset: () => resetAcpiPm(state, env.clock),
        restored: () => dev.restored(),
        pollTimers: () => dev.pollTimers(),
        powerButton: () => dev.powerButton(),
        wake: (reason) => dev.wake(reason),
        wakeEnabled: (source) => dev.wakeEnabled(source),
      };
    }
    case 'pci-host': {
      const state = arena.record(pciHostState, entry.stateOffset);
      const { pci } = pciEnvironment(env, spec.id);
      const dev = pciHostDevice(spec, state, pci, env.machine);
      return { spec, descriptor, state, regions: dev.regions, reset: dev.reset, restored: dev.restored };
    }
    case 'virtio-pci': {
      const record = virtioRecord(spec, arena, entry.stateOffset);
      const built = createVirtioBackend(spec.id, spec.backend, record.device, (id) => env.output(id));
      const dev = virtioPciDevice(
        spec.id,
        spec.placement,
        record.transport,
        built.backend,
        pciEnvironment(env, spec.id),
      );
      return {
        spec,
        descriptor,
        state: record,
        regions: dev.regions,
        reset: () => {
          built.resetState();
          dev.reset();
        },
        restored: dev.restored,
        ioWatches: () => [...dev.ioWatches(), ...(built.watches ?? [])],
      };
    }
    case 'pvpanic': {
      const state = arena.record(pvpanicState, entry.stateOffset);
      const dev = new Pvpanic(state, env.machine, env.log);
      return {
        spec,
        descriptor,
        state,
        regions: [pio(spec.id, spec.port, PVPANIC_IO_LENGTH, dev)],
        reset: () => resetPvpanic(state),
        restored: () => dev.restored(),
      };
    }
    case 'fw-cfg': {
      const state = arena.record(fwCfgState, entry.stateOffset);
      const dev = new FwCfg(state, spec.content, env.memory);
      return {
        spec,
        descriptor,
        state,
        regions: [pio(spec.id, FW_CFG_IO_BASE, FW_CFG_IO_LENGTH, dev)],
        reset: () => resetFwCfg(state),
        restored: () => dev.restored(),
      };
    }
  }
}
