// The vmstate descriptor of KVM's in-kernel 8254 PIT (KVM_GET/SET_PIT2, struct kvm_pit_state2) and its converters.
// KVM_SET_PIT2 reloads each counter and stamps a new count_load_time, so the saved load time is informative:
// what resumes the guest's timing is count, mode and the gate, which the record carries exactly.
// Every descriptor here says `subsections: []`: without it cpr/vmstate/vmstate.ts's StateOf gives the record type an index
// signature, and a misspelt field name would compile.
import {
  u8,
  u16,
  u32,
  i64,
  structArray,
  newRecord,
  clearRecord,
  type Descriptor,
  type StateOf,
} from '../vmstate/vmstate.js';
import type { PitState2, PitChannelState } from '../../kvm/bindings/types.js';

/** The PIT's three counters: 0 drives IRQ 0, 1 was DRAM refresh, 2 the speaker. */
export const PIT_CHANNELS = 3;

/** struct kvm_pit_channel_state: one 8254 counter. */
export const pitChannelDescriptor = {
  name: 'kvm-pit-channel',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u32('count'), // the reload value; 0x10000 stands for a written 0
    u16('latchedCount'),
    u8('countLatched'),
    u8('statusLatched'),
    u8('status'),
    u8('readState'),
    u8('writeState'),
    u8('writeLatch'),
    u8('rwMode'),
    u8('mode'),
    u8('bcd'),
    u8('gate'),
    i64('countLoadTime'), // host ktime (ns) of the last load: s64 in the kernel
  ],
} as const satisfies Descriptor;

/** struct kvm_pit_state2. */
export const pitStateDescriptor = {
  name: 'kvm-pit2',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    structArray('channels', pitChannelDescriptor, PIT_CHANNELS),
    u32('flags'), // KVM_PIT_FLAGS_HPET_LEGACY, KVM_PIT_FLAGS_SPEAKER_DATA_ON
  ],
} as const satisfies Descriptor;

export type PitRecord = StateOf<typeof pitStateDescriptor>;
type ChannelRecord = StateOf<typeof pitChannelDescriptor>;

export function pitStateToRecord(s: PitState2, record?: PitRecord): PitRecord {
  if (s.channels.length !== PIT_CHANNELS)
    throw new RangeError(`pit state: ${s.channels.length} channels, expected ${PIT_CHANNELS}`);
  const r = record ?? newRecord(pitStateDescriptor);
  if (record) clearRecord(record);
  for (const [i, c] of s.channels.entries()) channelToRecord(c, r.channels[i]);
  r.flags = s.flags;
  return r;
}

function channelToRecord(s: PitChannelState, r: ChannelRecord): void {
  r.count = s.count;
  r.latchedCount = s.latchedCount;
  r.countLatched = s.countLatched;
  r.statusLatched = s.statusLatched;
  r.status = s.status;
  r.readState = s.readState;
  r.writeState = s.writeState;
  r.writeLatch = s.writeLatch;
  r.rwMode = s.rwMode;
  r.mode = s.mode;
  r.bcd = s.bcd;
  r.gate = s.gate;
  r.countLoadTime = s.countLoadTime;
}

export function recordToPitState(r: PitRecord): PitState2 {
  const [a, b, c] = r.channels;
  return { channels: [recordToChannel(a), recordToChannel(b), recordToChannel(c)], flags: r.flags };
}

function recordToChannel(r: ChannelRecord): PitChannelState {
  return {
    count: r.count,
    latchedCount: r.latchedCount,
    countLatched: r.countLatched,
    statusLatched: r.statusLatched,
    status: r.status,
    readState: r.readState,
    writeState: r.writeState,
    writeLatch: r.writeLatch,
    rwMode: r.rwMode,
    mode: r.mode,
    bcd: r.bcd,
    gate: r.gate,
    countLoadTime: r.countLoadTime,
  };
}
