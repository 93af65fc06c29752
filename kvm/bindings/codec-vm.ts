// Encoders and decoders for the VM-level KVM structs: memory slots, interrupt lines and routes, irqfd/ioeventfd,
// the in-kernel PIC/IOAPIC/PIT state and the clock. Offsets come from the layout table (kvm/bindings/structs.ts).
import { LAYOUTS, offsetOf, sizeOf, fieldOf, IOAPIC_NUM_PINS, IOAPIC_REDIR_FIELDS } from './structs.js';
import { dataView } from './codec-vcpu.js';
import { KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC } from './constants.js';
import type {
  UserMemoryRegion,
  IrqRoute,
  Msi,
  Irqfd,
  Ioeventfd,
  EnableCap,
  IrqchipState,
  PicState,
  PitState2,
  PitChannelState,
  ClockData,
} from './types.js';

/** `v` as a u64 field holds it: wrapped modulo 2^64, as C converts to __u64. */
const asU64 = (v: bigint | number): bigint => BigInt.asUintN(64, BigInt(v));

// ---- kvm_userspace_memory_region --------------------------------------------------------------------------------

export function encodeUserMemoryRegion(r: UserMemoryRegion): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_userspace_memory_region'));
  const d = dataView(bytes);
  const o = (f: string) => offsetOf('kvm_userspace_memory_region', f);
  d.setUint32(o('slot'), r.slot >>> 0, true);
  d.setUint32(o('flags'), r.flags >>> 0, true);
  d.setBigUint64(o('guest_phys_addr'), asU64(r.guestPhysAddr), true);
  d.setBigUint64(o('memory_size'), asU64(r.memorySize), true);
  d.setBigUint64(o('userspace_addr'), asU64(r.userspaceAddr), true);
  return bytes;
}

// ---- kvm_irq_level ----------------------------------------------------------------------------------------------

export function encodeIrqLevel(irq: number, level: number): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_irq_level'));
  const d = dataView(bytes);
  d.setUint32(offsetOf('kvm_irq_level', 'irq'), irq >>> 0, true);
  d.setUint32(offsetOf('kvm_irq_level', 'level'), level >>> 0, true);
  return bytes;
}

/** KVM_IRQ_LINE_STATUS writes back `status`: >0 delivered, 0 masked, -1 coalesced (already pending). */
export function decodeIrqLevelStatus(bytes: Uint8Array): number {
  return dataView(bytes).getInt32(offsetOf('kvm_irq_level', 'status'), true);
}

// ---- kvm_irqfd, kvm_ioeventfd -----------------------------------------------------------------------------------

export function encodeIrqfd(f: Irqfd): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_irqfd'));
  const d = dataView(bytes);
  d.setUint32(offsetOf('kvm_irqfd', 'fd'), f.fd >>> 0, true);
  d.setUint32(offsetOf('kvm_irqfd', 'gsi'), f.gsi >>> 0, true);
  d.setUint32(offsetOf('kvm_irqfd', 'flags'), (f.flags ?? 0) >>> 0, true);
  d.setUint32(offsetOf('kvm_irqfd', 'resamplefd'), (f.resampleFd ?? 0) >>> 0, true);
  return bytes;
}

export function encodeIoeventfd(e: Ioeventfd): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_ioeventfd'));
  const d = dataView(bytes);
  d.setBigUint64(offsetOf('kvm_ioeventfd', 'datamatch'), asU64(e.datamatch ?? 0n), true);
  d.setBigUint64(offsetOf('kvm_ioeventfd', 'addr'), asU64(e.addr), true);
  d.setUint32(offsetOf('kvm_ioeventfd', 'len'), e.len >>> 0, true);
  d.setInt32(offsetOf('kvm_ioeventfd', 'fd'), e.fd, true);
  d.setUint32(offsetOf('kvm_ioeventfd', 'flags'), (e.flags ?? 0) >>> 0, true);
  return bytes;
}

// ---- kvm_irq_routing --------------------------------------------------------------------------------------------

const ROUTING = { nr: offsetOf('kvm_irq_routing', 'nr'), entries: offsetOf('kvm_irq_routing', 'entries') };
const ROUTE_SIZE = sizeOf('kvm_irq_routing_entry');
const ro = (f: string) => offsetOf('kvm_irq_routing_entry', f);

export function encodeIrqRouting(routes: readonly IrqRoute[]): Uint8Array {
  const bytes = new Uint8Array(ROUTING.entries + routes.length * ROUTE_SIZE);
  const d = dataView(bytes);
  d.setUint32(ROUTING.nr, routes.length, true);
  routes.forEach((r, i) => {
    const at = ROUTING.entries + i * ROUTE_SIZE;
    d.setUint32(at + ro('gsi'), r.gsi >>> 0, true);
    if (r.type === 'irqchip') {
      d.setUint32(at + ro('type'), KVM_IRQ_ROUTING_IRQCHIP, true);
      d.setUint32(at + ro('u.irqchip.irqchip'), r.irqchip >>> 0, true);
      d.setUint32(at + ro('u.irqchip.pin'), r.pin >>> 0, true);
    } else {
      d.setUint32(at + ro('type'), KVM_IRQ_ROUTING_MSI, true);
      d.setUint32(at + ro('flags'), (r.flags ?? 0) >>> 0, true);
      d.setUint32(at + ro('u.msi.address_lo'), r.addressLo >>> 0, true);
      d.setUint32(at + ro('u.msi.address_hi'), r.addressHi >>> 0, true);
      d.setUint32(at + ro('u.msi.data'), r.data >>> 0, true);
      d.setUint32(at + ro('u.msi.devid'), (r.devid ?? 0) >>> 0, true);
    }
  });
  return bytes;
}

export function decodeIrqRouting(bytes: Uint8Array): IrqRoute[] {
  const d = dataView(bytes);
  const n = d.getUint32(ROUTING.nr, true);
  if (ROUTING.entries + n * ROUTE_SIZE > bytes.byteLength)
    throw new RangeError(`kvm_irq_routing: ${n} entries overrun buffer`);
  return Array.from({ length: n }, (_, i): IrqRoute => {
    const at = ROUTING.entries + i * ROUTE_SIZE;
    const gsi = d.getUint32(at + ro('gsi'), true);
    const type = d.getUint32(at + ro('type'), true);
    if (type === KVM_IRQ_ROUTING_IRQCHIP) {
      return {
        gsi,
        type: 'irqchip',
        irqchip: d.getUint32(at + ro('u.irqchip.irqchip'), true),
        pin: d.getUint32(at + ro('u.irqchip.pin'), true),
      };
    }
    if (type === KVM_IRQ_ROUTING_MSI) {
      return {
        gsi,
        type: 'msi',
        flags: d.getUint32(at + ro('flags'), true),
        addressLo: d.getUint32(at + ro('u.msi.address_lo'), true),
        addressHi: d.getUint32(at + ro('u.msi.address_hi'), true),
        data: d.getUint32(at + ro('u.msi.data'), true),
        devid: d.getUint32(at + ro('u.msi.devid'), true),
      };
    }
    throw new RangeError(`kvm_irq_routing: entry ${i} has unsupported type ${type}`);
  });
}

// ---- kvm_msi ----------------------------------------------------------------------------------------------------

export function encodeMsi(m: Msi): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_msi'));
  const d = dataView(bytes);
  d.setUint32(offsetOf('kvm_msi', 'address_lo'), m.addressLo >>> 0, true);
  d.setUint32(offsetOf('kvm_msi', 'address_hi'), m.addressHi >>> 0, true);
  d.setUint32(offsetOf('kvm_msi', 'data'), m.data >>> 0, true);
  d.setUint32(offsetOf('kvm_msi', 'flags'), (m.flags ?? 0) >>> 0, true);
  d.setUint32(offsetOf('kvm_msi', 'devid'), (m.devid ?? 0) >>> 0, true);
  return bytes;
}

// ---- kvm_enable_cap, kvm_pit_config, kvm_dirty_log --------------------------------------------------------------

export function encodeEnableCap(c: EnableCap): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_enable_cap'));
  const d = dataView(bytes);
  const args = fieldOf('kvm_enable_cap', 'args');
  const given = c.args ?? [];
  if (given.length > (args.length ?? 0))
    throw new RangeError(`kvm_enable_cap: ${given.length} args, at most ${args.length}`);
  d.setUint32(offsetOf('kvm_enable_cap', 'cap'), c.cap >>> 0, true);
  d.setUint32(offsetOf('kvm_enable_cap', 'flags'), (c.flags ?? 0) >>> 0, true);
  for (const [i, a] of given.entries()) d.setBigUint64(args.offset + 8 * i, asU64(a), true);
  return bytes;
}

export function encodePitConfig(flags: number): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_pit_config'));
  dataView(bytes).setUint32(offsetOf('kvm_pit_config', 'flags'), flags >>> 0, true);
  return bytes;
}

/** kvm_dirty_log for `slot`, pointing KVM at a bitmap buffer (one bit per page) by its address. */
export function encodeDirtyLog(slot: number, bitmapAddress: bigint): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_dirty_log'));
  const d = dataView(bytes);
  d.setUint32(offsetOf('kvm_dirty_log', 'slot'), slot >>> 0, true);
  d.setBigUint64(offsetOf('kvm_dirty_log', 'dirty_bitmap'), asU64(bitmapAddress), true);
  return bytes;
}

// ---- kvm_irqchip: PIC and IOAPIC views --------------------------------------------------------------------------

const PIC_FIELDS = [
  ['lastIrr', 'last_irr'],
  ['irr', 'irr'],
  ['imr', 'imr'],
  ['isr', 'isr'],
  ['priorityAdd', 'priority_add'],
  ['irqBase', 'irq_base'],
  ['readRegSelect', 'read_reg_select'],
  ['poll', 'poll'],
  ['specialMask', 'special_mask'],
  ['initState', 'init_state'],
  ['autoEoi', 'auto_eoi'],
  ['rotateOnAutoEoi', 'rotate_on_auto_eoi'],
  ['specialFullyNestedMode', 'special_fully_nested_mode'],
  ['init4', 'init4'],
  ['elcr', 'elcr'],
  ['elcrMask', 'elcr_mask'],
] as const satisfies readonly (readonly [keyof PicState, string])[];
const CHIP = offsetOf('kvm_irqchip', 'chip');
const IOAPIC = {
  base: offsetOf('kvm_ioapic_state', 'base_address'),
  ioregsel: offsetOf('kvm_ioapic_state', 'ioregsel'),
  id: offsetOf('kvm_ioapic_state', 'id'),
  irr: offsetOf('kvm_ioapic_state', 'irr'),
  redirtbl: offsetOf('kvm_ioapic_state', 'redirtbl'),
};

/** An empty kvm_irqchip naming the chip to read (KVM_GET_IRQCHIP fills the rest). */
export function encodeIrqchipRequest(chipId: number): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_irqchip'));
  dataView(bytes).setUint32(offsetOf('kvm_irqchip', 'chip_id'), chipId >>> 0, true);
  return bytes;
}

export function encodeIrqchip(s: IrqchipState): Uint8Array {
  const bytes = encodeIrqchipRequest(s.chipId);
  const d = dataView(bytes);
  if (s.chipId === KVM_IRQCHIP_IOAPIC) {
    const io = s.ioapic;
    if (io.redirtbl.length !== IOAPIC_NUM_PINS)
      throw new RangeError(`kvm_ioapic_state: ${io.redirtbl.length} pins, need ${IOAPIC_NUM_PINS}`);
    d.setBigUint64(CHIP + IOAPIC.base, asU64(io.baseAddress), true);
    d.setUint32(CHIP + IOAPIC.ioregsel, io.ioregsel >>> 0, true);
    d.setUint32(CHIP + IOAPIC.id, io.id >>> 0, true);
    d.setUint32(CHIP + IOAPIC.irr, io.irr >>> 0, true);
    for (const [i, e] of io.redirtbl.entries()) d.setBigUint64(CHIP + IOAPIC.redirtbl + 8 * i, asU64(e), true);
  } else {
    for (const [js, c] of PIC_FIELDS) d.setUint8(CHIP + offsetOf('kvm_pic_state', c), s.pic[js]);
  }
  return bytes;
}

export function decodeIrqchip(bytes: Uint8Array): IrqchipState {
  if (bytes.byteLength < sizeOf('kvm_irqchip')) throw new RangeError('kvm_irqchip: short buffer');
  const d = dataView(bytes);
  const chipId = d.getUint32(offsetOf('kvm_irqchip', 'chip_id'), true);
  if (chipId === KVM_IRQCHIP_IOAPIC) {
    return {
      chipId,
      ioapic: {
        baseAddress: d.getBigUint64(CHIP + IOAPIC.base, true),
        ioregsel: d.getUint32(CHIP + IOAPIC.ioregsel, true),
        id: d.getUint32(CHIP + IOAPIC.id, true),
        irr: d.getUint32(CHIP + IOAPIC.irr, true),
        redirtbl: Array.from({ length: IOAPIC_NUM_PINS }, (_, i) =>
          d.getBigUint64(CHIP + IOAPIC.redirtbl + 8 * i, true),
        ),
      },
    };
  }
  if (chipId !== 0 && chipId !== 1) throw new RangeError(`kvm_irqchip: unknown chip id ${chipId}`);
  const pic = {} as PicState;
  for (const [js, c] of PIC_FIELDS) pic[js] = d.getUint8(CHIP + offsetOf('kvm_pic_state', c));
  return { chipId, pic };
}

/** The fields of one IOAPIC redirection-table entry (the `fields` view of kvm_ioapic_state.redirtbl[]). */
export type RedirEntry = { -readonly [K in keyof typeof IOAPIC_REDIR_FIELDS]: number };

export function decodeRedirEntry(bits: bigint): RedirEntry {
  const out = {} as RedirEntry;
  for (const [name, [lo, width]] of Object.entries(IOAPIC_REDIR_FIELDS) as [
    keyof RedirEntry,
    readonly [number, number],
  ][]) {
    out[name] = Number((bits >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));
  }
  return out;
}

/** Replaces the named fields of `bits`, leaving the others (and the reserved bits) as they were. */
export function encodeRedirEntry(fields: Partial<RedirEntry>, bits = 0n): bigint {
  let out = BigInt.asUintN(64, bits);
  for (const [name, value] of Object.entries(fields) as [keyof RedirEntry, number][]) {
    const [lo, width] = IOAPIC_REDIR_FIELDS[name];
    const mask = ((1n << BigInt(width)) - 1n) << BigInt(lo);
    out = (out & ~mask) | ((BigInt(value) << BigInt(lo)) & mask);
  }
  return out;
}

// ---- kvm_pit_state2 ---------------------------------------------------------------------------------------------

const PIT_CHANNELS = fieldOf('kvm_pit_state2', 'channels');
const PIT_FLAGS = offsetOf('kvm_pit_state2', 'flags');
// [shape name, C name, width]; width 8 is the signed count_load_time.
const PIT_FIELDS = [
  ['count', 'count', 4],
  ['latchedCount', 'latched_count', 2],
  ['countLatched', 'count_latched', 1],
  ['statusLatched', 'status_latched', 1],
  ['status', 'status', 1],
  ['readState', 'read_state', 1],
  ['writeState', 'write_state', 1],
  ['writeLatch', 'write_latch', 1],
  ['rwMode', 'rw_mode', 1],
  ['mode', 'mode', 1],
  ['bcd', 'bcd', 1],
  ['gate', 'gate', 1],
] as const satisfies readonly (readonly [keyof PitChannelState, string, number])[];
const PIT_LOAD_TIME = offsetOf('kvm_pit_channel_state', 'count_load_time');

export function encodePitState2(s: PitState2): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_pit_state2'));
  const d = dataView(bytes);
  s.channels.forEach((ch, i) => {
    const at = PIT_CHANNELS.offset + i * (PIT_CHANNELS.elementSize ?? 0);
    for (const [js, c, width] of PIT_FIELDS) {
      const o = at + offsetOf('kvm_pit_channel_state', c);
      if (width === 4) d.setUint32(o, ch[js] >>> 0, true);
      else if (width === 2) d.setUint16(o, ch[js], true);
      else d.setUint8(o, ch[js]);
    }
    d.setBigInt64(at + PIT_LOAD_TIME, BigInt.asIntN(64, ch.countLoadTime), true);
  });
  d.setUint32(PIT_FLAGS, s.flags >>> 0, true);
  return bytes;
}

export function decodePitState2(bytes: Uint8Array): PitState2 {
  if (bytes.byteLength < sizeOf('kvm_pit_state2')) throw new RangeError('kvm_pit_state2: short buffer');
  const d = dataView(bytes);
  const channels = [0, 1, 2].map((i) => {
    const at = PIT_CHANNELS.offset + i * (PIT_CHANNELS.elementSize ?? 0);
    const ch = {} as PitChannelState;
    for (const [js, c, width] of PIT_FIELDS) {
      const o = at + offsetOf('kvm_pit_channel_state', c);
      ch[js] = width === 4 ? d.getUint32(o, true) : width === 2 ? d.getUint16(o, true) : d.getUint8(o);
    }
    ch.countLoadTime = d.getBigInt64(at + PIT_LOAD_TIME, true);
    return ch;
  }) as PitState2['channels'];
  return { channels, flags: d.getUint32(PIT_FLAGS, true) };
}

// ---- kvm_clock_data ---------------------------------------------------------------------------------------------

const CLOCK = {
  clock: offsetOf('kvm_clock_data', 'clock'),
  flags: offsetOf('kvm_clock_data', 'flags'),
  realtime: offsetOf('kvm_clock_data', 'realtime'),
  hostTsc: offsetOf('kvm_clock_data', 'host_tsc'),
};

export function encodeClockData(c: Partial<ClockData> & { clock: bigint }): Uint8Array {
  const bytes = new Uint8Array(LAYOUTS.kvm_clock_data.size);
  const d = dataView(bytes);
  d.setBigUint64(CLOCK.clock, asU64(c.clock), true);
  d.setUint32(CLOCK.flags, (c.flags ?? 0) >>> 0, true);
  d.setBigUint64(CLOCK.realtime, asU64(c.realtime ?? 0n), true);
  d.setBigUint64(CLOCK.hostTsc, asU64(c.hostTsc ?? 0n), true);
  return bytes;
}

export function decodeClockData(bytes: Uint8Array): ClockData {
  const d = dataView(bytes);
  return {
    clock: d.getBigUint64(CLOCK.clock, true),
    flags: d.getUint32(CLOCK.flags, true),
    realtime: d.getBigUint64(CLOCK.realtime, true),
    hostTsc: d.getBigUint64(CLOCK.hostTsc, true),
  };
}
