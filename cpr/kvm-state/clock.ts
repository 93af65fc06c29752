// The vmstate descriptor of the VM's kvmclock (KVM_GET/SET_CLOCK, struct kvm_clock_data) and its converters.
// With KVM_CLOCK_REALTIME in `flags`, `realtime` is the CLOCK_REALTIME instant the clock was read at, and a
// KVM_SET_CLOCK that passes it on advances the clock by the realtime elapsed since (the time the VM was stopped).
// Every descriptor here says `subsections: []`: without it cpr/vmstate/vmstate.ts's StateOf gives the record type an index
// signature, and a misspelt field name would compile.
import { u32, u64, newRecord, clearRecord, type Descriptor, type StateOf } from '../vmstate/vmstate.js';
import type { ClockData } from '../../kvm/bindings/types.js';

export const clockDescriptor = {
  name: 'kvmclock',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u64('clock'), // guest ns
    u32('flags'), // KVM_CLOCK_*: which of realtime and hostTsc are valid
    u64('realtime'), // host CLOCK_REALTIME ns at the read
    u64('hostTsc'), // host TSC at the read
  ],
} as const satisfies Descriptor;

export type ClockRecord = StateOf<typeof clockDescriptor>;

export function clockToRecord(s: ClockData, record?: ClockRecord): ClockRecord {
  const r = record ?? newRecord(clockDescriptor);
  if (record) clearRecord(record);
  r.clock = s.clock;
  r.flags = s.flags;
  r.realtime = s.realtime;
  r.hostTsc = s.hostTsc;
  return r;
}

export function recordToClock(r: ClockRecord): ClockData {
  return { clock: r.clock, flags: r.flags, realtime: r.realtime, hostTsc: r.hostTsc };
}
