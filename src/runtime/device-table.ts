// The machine's parts list of devices, and how any thread turns it into live device instances.
//
// The main thread plans the table once (kind, options, where each state record sits in the shared arena); the
// table is plain data, so it goes to every vCPU thread through workerData, and each thread builds its own
// instances over the same records. Only immutable configuration differs from nothing: all mutable state is in the
// arena (see cpr/vmstate/vmstate.ts), which is what lets any thread handle any exit. Which code builds a device is
// its kind's registration (src/runtime/device-kinds.ts); nothing here names a kind.
import { StateArena, layoutOf, type Descriptor, type RecordInternals } from '../../cpr/vmstate/vmstate.js';
import type { DeviceEnvironment, DeviceInstance, DeviceRegistration } from '../../devices/registration.js';
import { DEVICE_KINDS, type DeviceSpec } from './device-kinds.js';

export type { DeviceSpec } from './device-kinds.js';
export type { DeviceEnvironment } from '../../devices/registration.js';

export interface DeviceEntry {
  readonly spec: DeviceSpec;
  /** Where the device's state record sits in the arena. */
  readonly stateOffset: number;
}

/** A live device in one thread: its instance, with the spec and record it was built from. */
export interface MachineDevice extends DeviceInstance {
  readonly spec: DeviceSpec;
  readonly descriptor: Descriptor;
  readonly state: RecordInternals;
}

/** Any registration, as the table drives it: the spec's kind picked it, so its spec and record fit. */
type SomeRegistration = DeviceRegistration<DeviceSpec, RecordInternals, never>;

const registrations = new Map<string, SomeRegistration>(DEVICE_KINDS.map((r) => [r.kind, r as SomeRegistration]));

function registrationOf(spec: DeviceSpec): SomeRegistration {
  const registration = registrations.get(spec.kind);
  if (!registration) throw new Error(`device '${spec.id}': no registered kind '${spec.kind}'`);
  return registration;
}

/** Every device descriptor tsvmm has (checkpoint dumps decode device sections with these). */
export const deviceDescriptors: readonly Descriptor[] = DEVICE_KINDS.flatMap((r) => r.descriptors);

export function descriptorOf(spec: DeviceSpec): Descriptor {
  return registrationOf(spec).descriptorOf(spec);
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

/** Builds this thread's instance of one device over its record in the arena. */
export function instantiate(entry: DeviceEntry, arena: StateArena, env: DeviceEnvironment): MachineDevice {
  const { spec } = entry;
  const registration = registrationOf(spec);
  const descriptor = registration.descriptorOf(spec);
  const state = arena.record(descriptor, entry.stateOffset) as RecordInternals;
  return { ...registration.create(state, env, spec), spec, descriptor, state };
}
