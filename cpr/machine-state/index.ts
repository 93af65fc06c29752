// vmstate descriptors for everything in a checkpoint that is not a device model: each vCPU, KVM's in-kernel
// irqchip (PIC master, PIC slave, IOAPIC), PIT and kvmclock, and the machine configuration with its RAM backend
// record. Each comes with converters between the plain data kvm/ and src/ use and a record laid out by the
// descriptor (cpr/vmstate/vmstate.ts), which is what the checkpoint stream encodes.
export {
  vcpuStateDescriptor,
  vcpuStateToRecord,
  recordToVcpuState,
  type VcpuRecord,
  cpuidEntryDescriptor,
  regsDescriptor,
  segmentDescriptor,
  dtableDescriptor,
  sregsDescriptor,
  recordToSregs,
  fpuDescriptor,
  xcrDescriptor,
  debugregsDescriptor,
  msrEntryDescriptor,
  eventsDescriptor,
  MAX_CPUID_ENTRIES,
  MAX_MSRS,
  MAX_XCRS,
  MAX_XSAVE_BYTES,
  LAPIC_BYTES,
} from '../kvm-state/vcpu.js';
export {
  picStateDescriptor,
  ioapicStateDescriptor,
  picStateToRecord,
  recordToPicState,
  ioapicStateToRecord,
  recordToIoapicState,
  irqchipStateToRecord,
  recordToIrqchipState,
  type PicRecord,
  type IoapicRecord,
} from '../kvm-state/irqchip.js';
export {
  pitStateDescriptor,
  pitChannelDescriptor,
  pitStateToRecord,
  recordToPitState,
  type PitRecord,
} from '../kvm-state/pit.js';
export { clockDescriptor, clockToRecord, recordToClock, type ClockRecord } from '../kvm-state/clock.js';
export {
  machineConfigDescriptor,
  machineConfigToRecord,
  recordToMachineConfig,
  type MachineConfigRecord,
  type SavedMachineConfig,
  MAX_SERIAL,
  MAX_DEBUGCON,
} from './machine-config.js';
export { describeConfigDifference, configDifferences, type ConfigDifference } from './config-difference.js';
