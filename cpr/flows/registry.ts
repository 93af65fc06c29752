// Which descriptor decodes which checkpoint section: a section is named after its descriptor, so the name alone
// finds it. Used by the loader's checks and by `tsvmm vmstate dump`.
import type { Descriptor } from '../vmstate/vmstate.js';
import { deviceDescriptors } from '../../src/runtime/device-table.js';
import {
  vcpuStateDescriptor,
  picStateDescriptor,
  ioapicStateDescriptor,
  pitStateDescriptor,
  clockDescriptor,
  machineConfigDescriptor,
} from '../machine-state/index.js';
import type { SectionKind } from '../file/checkpoint-file.js';

/** Section names of the non-device parts. */
export const SECTION = {
  config: machineConfigDescriptor.name,
  vcpu: vcpuStateDescriptor.name,
  pic: picStateDescriptor.name,
  ioapic: ioapicStateDescriptor.name,
  pit: pitStateDescriptor.name,
  clock: clockDescriptor.name,
} as const;

const byKind: Record<string, Map<string, Descriptor>> = {
  config: new Map([[machineConfigDescriptor.name, machineConfigDescriptor]]),
  device: new Map(deviceDescriptors.map((d) => [d.name, d])),
  vcpu: new Map([[vcpuStateDescriptor.name, vcpuStateDescriptor]]),
  kvm: new Map<string, Descriptor>(
    [picStateDescriptor, ioapicStateDescriptor, pitStateDescriptor, clockDescriptor].map((d) => [d.name, d]),
  ),
};

export function descriptorFor(kind: SectionKind | string, name: string): Descriptor | undefined {
  return byKind[kind]?.get(name);
}
