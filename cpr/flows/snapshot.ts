// A machine's state as checkpoint sections, and back. Capturing needs a parked machine; restoring checks EVERY
// section (config match, versions, every stream decodes) before it changes anything, then commits in the order
// the kernel needs. Nothing here is specific to a device: each section is the vmstate stream of a record.
import type { MachineParts } from '../../src/machine/machine.js';
import type { MachineDevice } from '../../src/runtime/device-table.js';
import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC } from '../../kvm/bindings/constants.js';
import { encodeRecord, prepareDecode } from '../vmstate/stream.js';
import { newRecord, makeRecord, u8, type Descriptor, type RecordInternals, type StateOf } from '../vmstate/vmstate.js';
import { CheckpointError, type Section, type SectionKind } from '../file/checkpoint-file.js';
import {
  vcpuStateDescriptor,
  vcpuStateToRecord,
  recordToVcpuState,
  type VcpuRecord,
  picStateDescriptor,
  ioapicStateDescriptor,
  picStateToRecord,
  ioapicStateToRecord,
  recordToPicState,
  recordToIoapicState,
  type PicRecord,
  pitStateDescriptor,
  pitStateToRecord,
  recordToPitState,
  clockDescriptor,
  clockToRecord,
  recordToClock,
  machineConfigDescriptor,
  machineConfigToRecord,
  recordToMachineConfig,
  describeConfigDifference,
} from '../machine-state/index.js';
import type { PhaseClock } from './timings.js';
import { undoPoint, type RestoredPart, type UndoPoint } from './undo-point.js';
import type { VcpuState, IrqchipState, PitState2 } from '../../kvm/bindings/types.js';
import { warmVcpuStateDecoders } from '../../kvm/vcpu-state.js';
import { keptByKvmRules } from './capture-check.js';

/** What the guest was doing when its state was saved: a restore brings it back to the same. */
export type SavedRunState = 'running' | 'paused' | 'suspended';
const RUN_STATES: readonly SavedRunState[] = ['running', 'paused', 'suspended'];

/** The machine's run state at save time (a kvm-kind section: it belongs to the VM as a whole). */
export const runStateDescriptor = {
  name: 'vm-run-state',
  version: 1,
  minVersion: 1,
  fields: [u8('state')],
  subsections: [],
} as const satisfies Descriptor;

/**
 * Records reused across captures and restores: a fresh vCPU record costs ~0.7 ms to build and the cpr-transfer
 * pause budget is ~2 ms, so every record a pause needs is made once, beforehand. The encoded config section is
 * kept too: the configuration does not change while the VM lives.
 */
export class SnapshotScratch {
  private readonly vcpus: VcpuRecord[] = [];
  private readonly pics: PicRecord[] = [];
  readonly ioapic = newRecord(ioapicStateDescriptor, false);
  readonly pit = newRecord(pitStateDescriptor, false);
  readonly clock = newRecord(clockDescriptor, false);
  readonly runState = newRecord(runStateDescriptor, false);
  readonly config = newRecord(machineConfigDescriptor, false);
  configSection: { config: object; section: Section } | null = null;
  /** Copies of the device records for warming the encoder (see warmUpCapture). */
  deviceCopies: { descriptor: Descriptor; record: unknown }[] | null = null;

  vcpu(i: number): VcpuRecord {
    this.vcpus[i] ??= newRecord(vcpuStateDescriptor, false) as VcpuRecord;
    return this.vcpus[i];
  }

  pic(i: number): PicRecord {
    this.pics[i] ??= newRecord(picStateDescriptor, false);
    return this.pics[i];
  }
}

const section = (
  kind: Exclude<SectionKind, 'ram'>,
  descriptor: Descriptor,
  record: RecordInternals,
  instance = 0,
): Section => ({
  kind,
  name: descriptor.name,
  instance,
  version: descriptor.version,
  payload: encodeRecord(descriptor, record as StateOf<Descriptor>),
});

/** Device instances are numbered per descriptor: the second UART is serial-16550a instance 1. */
function deviceInstances(devices: readonly MachineDevice[]): { device: MachineDevice; instance: number }[] {
  const seen = new Map<string, number>();
  return devices.map((device) => {
    const instance = seen.get(device.descriptor.name) ?? 0;
    seen.set(device.descriptor.name, instance + 1);
    return { device, instance };
  });
}

/** Every section of a parked machine's state: config, devices, vCPUs, in-kernel chips, clock, run state. */
export function captureSections(
  parts: MachineParts,
  runState: SavedRunState,
  scratch: SnapshotScratch,
  clock: PhaseClock,
): Section[] {
  const sections: Section[] = [];
  clock.time('collect-config', () => sections.push(configSection(parts, scratch)));
  clock.time('collect-devices', () => {
    parts.lock.with(() => {
      for (const { device, instance } of deviceInstances(parts.devices))
        sections.push(section('device', device.descriptor, device.state, instance));
    });
  });
  clock.time('collect-vcpus', () => {
    // Each vCPU thread saved its own state while parking when the pause asked it to (in parallel); read the rest.
    parts.vcpus.forEach((vcpu, i) => {
      const read = () => vcpuStateToRecord(vcpu.getState(), scratch.vcpu(i));
      const record = parts.capturedVcpuState(i) ?? read();
      sections.push(section('vcpu', vcpuStateDescriptor, keptByKvmRules(i, record, read), i));
    });
  });
  clock.time('collect-kvm', () => {
    const vm = parts.vm;
    for (const chip of [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE] as const) {
      const state = vm.getIrqchip(chip);
      if ('pic' in state)
        sections.push(section('kvm', picStateDescriptor, picStateToRecord(chip, state.pic, scratch.pic(chip)), chip));
    }
    const ioapic = vm.getIrqchip(KVM_IRQCHIP_IOAPIC);
    if ('ioapic' in ioapic)
      sections.push(section('kvm', ioapicStateDescriptor, ioapicStateToRecord(ioapic.ioapic, scratch.ioapic)));
    sections.push(section('kvm', pitStateDescriptor, pitStateToRecord(vm.getPit2(), scratch.pit)));
    sections.push(section('kvm', clockDescriptor, clockToRecord(vm.getClock(), scratch.clock)));
    scratch.runState.state = RUN_STATES.indexOf(runState);
    sections.push(section('kvm', runStateDescriptor, scratch.runState));
  });
  return sections;
}

/** Refuses (CheckpointError) a saved configuration this machine does not match, naming the difference. */
export function checkConfigSection(parts: MachineParts, configSection: Section, scratch = new SnapshotScratch()): void {
  try {
    prepareDecode(machineConfigDescriptor, configSection.payload, configSection.version, scratch.config)();
  } catch (e) {
    throw new CheckpointError(`section config '${configSection.name}': ${(e as Error).message}`);
  }
  const saved = recordToMachineConfig(scratch.config);
  const difference = describeConfigDifference(saved, { config: parts.config, ram: parts.ram.backend.record() });
  if (difference) throw new CheckpointError(`checkpoint does not fit this VM: ${difference}`);
}

/** The encoded config section of this machine (cached in `scratch`). */
export function configSection(parts: MachineParts, scratch: SnapshotScratch): Section {
  if (scratch.configSection?.config !== parts.config) {
    scratch.configSection = {
      config: parts.config,
      section: section(
        'config',
        machineConfigDescriptor,
        machineConfigToRecord(parts.config, parts.ram.backend.record(), scratch.config),
      ),
    };
  }
  return scratch.configSection.section;
}

/**
 * A checked restore, ready to apply. `commit()` changes the machine; should KVM still refuse a value part-way, it
 * puts the machine back as it was (see undo-point.ts) and throws a CheckpointError saying so.
 */
export interface PreparedRestore {
  readonly runState: SavedRunState;
  commit(clock: PhaseClock): void;
}

export interface RestoreOptions {
  /** cpr-transfer checked the configuration before the pause (checkConfigSection). */
  readonly configChecked?: boolean;
  /** The state to go back to if the commit fails, read beforehand (cpr-transfer: outside the pause); else read at commit. */
  readonly undo?: UndoPoint;
  /**
   * Reboot mode: guest RAM from the file, written once KVM took the chips, vCPUs and clock (a restore refused
   * before leaves RAM untouched) and before the device records, whose restored() may look at guest memory.
   */
  readonly loadRam?: (clock: PhaseClock) => void;
}

/**
 * Checks that `sections` fit this machine and decode completely, without changing anything. Throws a
 * CheckpointError (one line) naming the first problem: a different configuration, a missing or unknown section,
 * a version out of range, a malformed stream.
 */
export function prepareRestore(
  parts: MachineParts,
  sections: readonly Section[],
  scratch = new SnapshotScratch(),
  options: RestoreOptions = {},
): PreparedRestore {
  try {
    return checkSections(parts, sections, scratch, options);
  } catch (e) {
    // Converters report impossible values (a count beyond capacity, an unknown chip id) as RangeErrors.
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`checkpoint state is not valid: ${(e as Error).message}`);
  }
}

function checkSections(
  parts: MachineParts,
  sections: readonly Section[],
  scratch: SnapshotScratch,
  { configChecked = false, undo, loadRam }: RestoreOptions,
): PreparedRestore {
  const used = new Set<Section>();
  const take = (kind: Exclude<SectionKind, 'ram'>, name: string, instance = 0): Section => {
    const found = sections.find((s) => s.kind === kind && s.name === name && s.instance === instance);
    if (!found)
      throw new CheckpointError(
        `checkpoint has no ${kind} section '${name}' instance ${instance}, which this VM needs`,
      );
    used.add(found);
    return found;
  };
  const decode = <D extends Descriptor>(descriptor: D, s: Section, record: StateOf<D>): (() => void) => {
    try {
      return prepareDecode(descriptor, s.payload, s.version, record);
    } catch (e) {
      throw new CheckpointError(`section ${s.kind} '${s.name}' instance ${s.instance}: ${(e as Error).message}`);
    }
  };

  // The configuration first: a restore into a different machine is refused with the difference named. (cpr-transfer
  // checks it before the pause, with checkConfigSection, and says so.)
  const configSection = take('config', machineConfigDescriptor.name);
  if (!configChecked) checkConfigSection(parts, configSection, scratch);

  // Devices decode straight into their records, but only when committed.
  const deviceCommits = deviceInstances(parts.devices).map(({ device, instance }) =>
    decode(device.descriptor, take('device', device.descriptor.name, instance), device.state as StateOf<Descriptor>),
  );

  const vcpuRecords = parts.vcpus.map((_, i) => {
    const record = scratch.vcpu(i);
    decode(vcpuStateDescriptor, take('vcpu', vcpuStateDescriptor.name, i), record)();
    return record;
  });
  const vcpuStates = vcpuRecords.map((r) => recordToVcpuState(r));
  // What KVM would refuse half-way through a vCPU (an MSR it does not list, a TSC rate it cannot scale to): now.
  for (const [i, vcpu] of parts.vcpus.entries()) vcpu.checkState(vcpuStates[i]);

  const picRecords = [0, 1].map((chip) => {
    const record = scratch.pic(chip);
    decode(picStateDescriptor, take('kvm', picStateDescriptor.name, chip), record)();
    return recordToPicState(record);
  });
  const ioapicRecord = scratch.ioapic;
  decode(ioapicStateDescriptor, take('kvm', ioapicStateDescriptor.name), ioapicRecord)();
  const ioapic = recordToIoapicState(ioapicRecord);
  const pitRecord = scratch.pit;
  decode(pitStateDescriptor, take('kvm', pitStateDescriptor.name), pitRecord)();
  const pit = recordToPitState(pitRecord);
  const clockRecord = scratch.clock;
  decode(clockDescriptor, take('kvm', clockDescriptor.name), clockRecord)();
  const vmClock = recordToClock(clockRecord);
  const runStateRecord = scratch.runState;
  decode(runStateDescriptor, take('kvm', runStateDescriptor.name), runStateRecord)();
  const runState = RUN_STATES[runStateRecord.state];
  if (runState === undefined)
    throw new CheckpointError(`section kvm '${runStateDescriptor.name}': unknown run state ${runStateRecord.state}`);

  // timings and description are for people; the RAM generation is checked by the reboot-mode load (reboot.ts).
  const unknown = sections.find(
    (s) => !used.has(s) && s.kind !== 'timings' && s.kind !== 'description' && s.kind !== 'generation',
  );
  if (unknown)
    throw new CheckpointError(
      `checkpoint has a ${unknown.kind} section '${unknown.name}' instance ${unknown.instance} that this VM has no place for`,
    );

  return {
    runState,
    commit(clock) {
      const back = undo ?? clock.time('undo-point', () => undoPoint(parts));
      const touched = new Set<RestoredPart>();
      try {
        apply(clock, touched);
      } catch (e) {
        const problems = back.undo(touched);
        const why = (e as Error).message;
        throw new CheckpointError(
          problems.length === 0
            ? `the restore was refused part-way (${why}); the VM is back in its state before the restore`
            : `the restore was refused part-way (${why}), and putting the VM back failed too: ${problems.join('; ')}`,
          { cause: e },
        );
      }
    },
  };

  function apply(clock: PhaseClock, touched: Set<RestoredPart>): void {
    // Order: in-kernel chips before the vCPUs (the LAPICs refer to them), the vCPUs (regs, LAPIC, MSRs, events),
    // then the clock, then the device records, whose restored() re-drives their IRQ lines into the restored chips.
    touched.add('kvm');
    clock.time('restore-kvm', () => {
      parts.vm.setIrqchip(picRecords[0]);
      parts.vm.setIrqchip(picRecords[1]);
      parts.vm.setIrqchip({ chipId: KVM_IRQCHIP_IOAPIC, ioapic });
      parts.vm.setPit2(pit);
    });
    touched.add('vcpus');
    clock.time('restore-vcpus', () => {
      for (const [i, vcpu] of parts.vcpus.entries()) vcpu.setState(vcpuStates[i]);
    });
    touched.add('clock');
    clock.time('restore-clock', () => parts.vm.setClock({ clock: vmClock.clock }));
    if (loadRam) {
      touched.add('ram');
      loadRam(clock);
    }
    touched.add('devices');
    clock.time('restore-devices', () => {
      parts.lock.with(() => {
        for (const commit of deviceCommits) commit();
        for (const d of parts.devices) d.restored();
      });
    });
  }
}

/**
 * Runs the capture and restore code paths once on a VM that has not run yet (its power-on state back into itself),
 * so they are compiled before a pause: a cold first restore costs several milliseconds more than a warm one.
 */
export function warmUpRestore(parts: MachineParts, scratch: SnapshotScratch, clock: PhaseClock): void {
  const sections = captureSections(parts, 'paused', scratch, clock);
  prepareRestore(
    parts,
    sections.map((s) => ({ ...s, payload: s.payload.slice() })),
    scratch,
  ).commit(clock);
}

/**
 * Rounds of the capture/restore code run before a pause. One round only gets it interpreted; V8 optimizes code
 * that has run a few dozen times, and the pause then costs a third as much (measured: ~10 ms cold vs ~3 ms).
 */
export const WARM_UP_ROUNDS = 40;

/** What a running VM can offer for warming the capture path without stopping: its power-on state. */
export interface WarmStates {
  vcpus: readonly VcpuState[];
  irqchips: readonly IrqchipState[];
  pit: PitState2;
}

/**
 * Warms the capture path of a RUNNING VM (whose vCPU state cannot be read without stopping it) by converting and
 * encoding its power-on state, and caches the encoded config section.
 */
export function warmUpCapture(parts: MachineParts, scratch: SnapshotScratch, warm: WarmStates): Section[] {
  const sections: Section[] = [configSection(parts, scratch)];
  // Device records are encoded from copies, made without the machine lock: holding it here would stall the guest.
  scratch.deviceCopies ??= parts.devices.map((d) => {
    const copy = new ArrayBuffer(d.state.$layout.size);
    new Uint8Array(copy).set(new Uint8Array(d.state.$buffer, d.state.$offset, d.state.$layout.size));
    return { descriptor: d.descriptor, record: makeRecord(d.descriptor, copy) };
  });
  for (const { descriptor, record } of scratch.deviceCopies)
    sections.push(section('device', descriptor, record as RecordInternals));
  warm.vcpus.forEach((state, i) => {
    if (i < parts.vcpus.length)
      sections.push(section('vcpu', vcpuStateDescriptor, vcpuStateToRecord(state, scratch.vcpu(i)), i));
  });
  warmVcpuStateDecoders();
  // The VM-wide chips can be read while the guest runs: warm the real reads.
  for (const chip of [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC] as const) {
    const state = parts.vm.getIrqchip(chip);
    if ('pic' in state)
      sections.push(
        section('kvm', picStateDescriptor, picStateToRecord(chip as 0 | 1, state.pic, scratch.pic(chip)), chip),
      );
    else sections.push(section('kvm', ioapicStateDescriptor, ioapicStateToRecord(state.ioapic, scratch.ioapic)));
  }
  sections.push(section('kvm', pitStateDescriptor, pitStateToRecord(parts.vm.getPit2(), scratch.pit)));
  encodeRecord(clockDescriptor, clockToRecord(parts.vm.getClock(), scratch.clock));
  return sections;
}
