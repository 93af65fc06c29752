// vmstate descriptors of KVM's in-kernel interrupt controllers (KVM_GET/SET_IRQCHIP): the two 8259A PICs and the
// IOAPIC, and the converters to and from kvm/bindings/types.ts IrqchipState. A checkpoint holds three records: the master
// PIC (chip 0), the slave PIC (chip 1) and the IOAPIC (chip 2).
// Every descriptor here says `subsections: []`: without it cpr/vmstate/vmstate.ts's StateOf gives the record type an index
// signature, and a misspelt field name would compile.
import { u8, u32, u64, array, newRecord, clearRecord, type Descriptor, type StateOf } from '../vmstate/vmstate.js';
import type { IrqchipState, PicState, IoapicState } from '../../kvm/bindings/types.js';
import {
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_IRQCHIP_IOAPIC,
  KVM_IOAPIC_NUM_PINS,
} from '../../kvm/bindings/constants.js';

/** One 8259A as KVM models it (struct kvm_pic_state), with the kvm_irqchip chip id that says which one. */
export const picStateDescriptor = {
  name: 'kvm-pic',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u8('chipId'), // KVM_IRQCHIP_PIC_MASTER or KVM_IRQCHIP_PIC_SLAVE
    u8('lastIrr'),
    u8('irr'),
    u8('imr'),
    u8('isr'),
    u8('priorityAdd'),
    u8('irqBase'),
    u8('readRegSelect'),
    u8('poll'),
    u8('specialMask'),
    u8('initState'),
    u8('autoEoi'),
    u8('rotateOnAutoEoi'),
    u8('specialFullyNestedMode'),
    u8('init4'),
    u8('elcr'),
    u8('elcrMask'),
  ],
} as const satisfies Descriptor;

/** struct kvm_ioapic_state: each redirection entry is the raw 64-bit register. */
export const ioapicStateDescriptor = {
  name: 'kvm-ioapic',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u64('baseAddress'), u32('ioregsel'), u32('id'), u32('irr'), array('redirtbl', 'u64', KVM_IOAPIC_NUM_PINS)],
} as const satisfies Descriptor;

export type PicRecord = StateOf<typeof picStateDescriptor>;
export type IoapicRecord = StateOf<typeof ioapicStateDescriptor>;

export function picStateToRecord(chipId: 0 | 1, s: PicState, record?: PicRecord): PicRecord {
  const r = record ?? newRecord(picStateDescriptor);
  if (record) clearRecord(record);
  r.chipId = chipId;
  r.lastIrr = s.lastIrr;
  r.irr = s.irr;
  r.imr = s.imr;
  r.isr = s.isr;
  r.priorityAdd = s.priorityAdd;
  r.irqBase = s.irqBase;
  r.readRegSelect = s.readRegSelect;
  r.poll = s.poll;
  r.specialMask = s.specialMask;
  r.initState = s.initState;
  r.autoEoi = s.autoEoi;
  r.rotateOnAutoEoi = s.rotateOnAutoEoi;
  r.specialFullyNestedMode = s.specialFullyNestedMode;
  r.init4 = s.init4;
  r.elcr = s.elcr;
  r.elcrMask = s.elcrMask;
  return r;
}

export function recordToPicState(r: PicRecord): { chipId: 0 | 1; pic: PicState } {
  const chipId = r.chipId;
  if (chipId !== KVM_IRQCHIP_PIC_MASTER && chipId !== KVM_IRQCHIP_PIC_SLAVE) {
    throw new RangeError(`kvm-pic record: chip id ${chipId} is neither the master (0) nor the slave (1) PIC`);
  }
  return {
    chipId,
    pic: {
      lastIrr: r.lastIrr,
      irr: r.irr,
      imr: r.imr,
      isr: r.isr,
      priorityAdd: r.priorityAdd,
      irqBase: r.irqBase,
      readRegSelect: r.readRegSelect,
      poll: r.poll,
      specialMask: r.specialMask,
      initState: r.initState,
      autoEoi: r.autoEoi,
      rotateOnAutoEoi: r.rotateOnAutoEoi,
      specialFullyNestedMode: r.specialFullyNestedMode,
      init4: r.init4,
      elcr: r.elcr,
      elcrMask: r.elcrMask,
    },
  };
}

export function ioapicStateToRecord(s: IoapicState, record?: IoapicRecord): IoapicRecord {
  if (s.redirtbl.length !== KVM_IOAPIC_NUM_PINS) {
    throw new RangeError(`ioapic state: ${s.redirtbl.length} redirection entries, expected ${KVM_IOAPIC_NUM_PINS}`);
  }
  const r = record ?? newRecord(ioapicStateDescriptor);
  if (record) clearRecord(record);
  r.baseAddress = s.baseAddress;
  r.ioregsel = s.ioregsel;
  r.id = s.id;
  r.irr = s.irr;
  r.redirtbl.set(s.redirtbl);
  return r;
}

export function recordToIoapicState(r: IoapicRecord): IoapicState {
  return { baseAddress: r.baseAddress, ioregsel: r.ioregsel, id: r.id, irr: r.irr, redirtbl: Array.from(r.redirtbl) };
}

/** The record of any chip's state, laid out by picStateDescriptor or ioapicStateDescriptor as its chip id says. */
export function irqchipStateToRecord(s: IrqchipState): PicRecord | IoapicRecord {
  return s.chipId === KVM_IRQCHIP_IOAPIC ? ioapicStateToRecord(s.ioapic) : picStateToRecord(s.chipId, s.pic);
}

/** Back from either kind of record: a PIC record carries its chip id, an IOAPIC record is chip 2. */
export function recordToIrqchipState(r: PicRecord | IoapicRecord): IrqchipState {
  const name = r.$layout.descriptor.name;
  if (name === ioapicStateDescriptor.name)
    return { chipId: KVM_IRQCHIP_IOAPIC, ioapic: recordToIoapicState(r as IoapicRecord) };
  if (name === picStateDescriptor.name) return recordToPicState(r as PicRecord);
  throw new TypeError(`'${name}' is not an irqchip record`);
}
