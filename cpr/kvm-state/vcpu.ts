// The vmstate descriptor of one vCPU's complete KVM state (kvm/bindings/types.ts VcpuState) and the converters both ways.
//
// Every kernel structure is a nested descriptor whose field names are the plain-data names, so a `vmstate dump`
// reads like the kernel header. Only what the kernel itself defines as opaque bytes stays bytes: the LAPIC register
// page, the XSAVE area and the x87/XMM register files of kvm_fpu. Parts this KVM or VM may lack (VcpuState's nulls)
// carry a `…Present` flag, and a variable-length part a count or length field, so an absent XSAVE area costs a
// flag and a zero length in the stream rather than 16 KiB.
// Every descriptor here says `subsections: []`: without it cpr/vmstate/vmstate.ts's StateOf gives the record type an index
// signature, and a misspelt field name would compile.
import {
  u8,
  u16,
  u32,
  u64,
  bool,
  array,
  bytes,
  struct,
  structArray,
  newRecord,
  clearRecord,
  type Descriptor,
  type StateOf,
} from '../vmstate/vmstate.js';
import type {
  VcpuState,
  CpuidEntry,
  Regs,
  Segment,
  DTable,
  Sregs,
  Fpu,
  Xcr,
  DebugRegs,
  MsrEntry,
  VcpuEvents,
} from '../../kvm/bindings/types.js';
import { checkedCount } from './checked.js';

/** KVM_MAX_CPUID_ENTRIES: the most entries KVM_SET_CPUID2 accepts. */
export const MAX_CPUID_ENTRIES = 256;
/** The most MSRs a vCPU record holds (KVM's save list is ~40-100 entries on current kernels). */
export const MAX_MSRS = 512;
/** KVM_MAX_XCRS: kvm_xcrs holds 16 entries. */
export const MAX_XCRS = 16;
/** The largest kvm_xsave area a record holds: 4 KiB legacy, KVM_CAP_XSAVE2 up to AMX's ~11 KiB today. */
export const MAX_XSAVE_BYTES = 16 * 1024;
/** KVM_APIC_REG_SIZE: the LAPIC register page (kvm_lapic_state.regs). */
export const LAPIC_BYTES = 0x400;
/** kvm_fpu.fpr: ST0-ST7 / MM0-MM7, 8 registers of 16 bytes (80-bit value plus padding). */
export const FPR_BYTES = 8 * 16;
/** kvm_fpu.xmm: XMM0-XMM15, 16 registers of 16 bytes. */
export const XMM_BYTES = 16 * 16;

// ---- descriptors ------------------------------------------------------------------------------------------------

/** struct kvm_cpuid_entry2 (without its padding). */
export const cpuidEntryDescriptor = {
  name: 'kvm-cpuid-entry2',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u32('function'), u32('index'), u32('flags'), u32('eax'), u32('ebx'), u32('ecx'), u32('edx')],
} as const satisfies Descriptor;

/** struct kvm_regs. */
export const regsDescriptor = {
  name: 'kvm-regs',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u64('rax'),
    u64('rbx'),
    u64('rcx'),
    u64('rdx'),
    u64('rsi'),
    u64('rdi'),
    u64('rsp'),
    u64('rbp'),
    u64('r8'),
    u64('r9'),
    u64('r10'),
    u64('r11'),
    u64('r12'),
    u64('r13'),
    u64('r14'),
    u64('r15'),
    u64('rip'),
    u64('rflags'),
  ],
} as const satisfies Descriptor;

/** struct kvm_segment (the flags are 0/1 bytes, as in the kernel). */
export const segmentDescriptor = {
  name: 'kvm-segment',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u64('base'),
    u32('limit'),
    u16('selector'),
    u8('type'),
    u8('present'),
    u8('dpl'),
    u8('db'),
    u8('s'),
    u8('l'),
    u8('g'),
    u8('avl'),
    u8('unusable'),
  ],
} as const satisfies Descriptor;

/** struct kvm_dtable (GDTR, IDTR). */
export const dtableDescriptor = {
  name: 'kvm-dtable',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u64('base'), u16('limit')],
} as const satisfies Descriptor;

/** struct kvm_sregs. */
export const sregsDescriptor = {
  name: 'kvm-sregs',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    struct('cs', segmentDescriptor),
    struct('ds', segmentDescriptor),
    struct('es', segmentDescriptor),
    struct('fs', segmentDescriptor),
    struct('gs', segmentDescriptor),
    struct('ss', segmentDescriptor),
    struct('tr', segmentDescriptor),
    struct('ldt', segmentDescriptor),
    struct('gdt', dtableDescriptor),
    struct('idt', dtableDescriptor),
    u64('cr0'),
    u64('cr2'),
    u64('cr3'),
    u64('cr4'),
    u64('cr8'),
    u64('efer'),
    u64('apicBase'),
    array('interruptBitmap', 'u64', 4), // pending external interrupts: 256 bits
  ],
} as const satisfies Descriptor;

/** struct kvm_fpu (the legacy FXSAVE image). */
export const fpuDescriptor = {
  name: 'kvm-fpu',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    bytes('fpr', FPR_BYTES), // the kernel's fpr[8][16]
    u16('fcw'),
    u16('fsw'),
    u8('ftwx'),
    u16('lastOpcode'),
    u64('lastIp'),
    u64('lastDp'),
    bytes('xmm', XMM_BYTES), // the kernel's xmm[16][16]
    u32('mxcsr'),
  ],
} as const satisfies Descriptor;

/** struct kvm_xcr. */
export const xcrDescriptor = {
  name: 'kvm-xcr',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u32('xcr'), u64('value')],
} as const satisfies Descriptor;

/** struct kvm_debugregs. */
export const debugregsDescriptor = {
  name: 'kvm-debugregs',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [array('db', 'u64', 4), u64('dr6'), u64('dr7'), u64('flags')],
} as const satisfies Descriptor;

/** struct kvm_msr_entry. */
export const msrEntryDescriptor = {
  name: 'kvm-msr-entry',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u32('index'), u64('data')],
} as const satisfies Descriptor;

const exceptionDescriptor = {
  name: 'kvm-vcpu-events/exception',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u8('injected'), u8('nr'), u8('hasErrorCode'), u8('pending'), u32('errorCode')],
} as const satisfies Descriptor;
const interruptDescriptor = {
  name: 'kvm-vcpu-events/interrupt',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u8('injected'), u8('nr'), u8('soft'), u8('shadow')],
} as const satisfies Descriptor;
const nmiDescriptor = {
  name: 'kvm-vcpu-events/nmi',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u8('injected'), u8('pending'), u8('masked')],
} as const satisfies Descriptor;
const smiDescriptor = {
  name: 'kvm-vcpu-events/smi',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u8('smm'), u8('pending'), u8('smmInsideNmi'), u8('latchedInit')],
} as const satisfies Descriptor;
const tripleFaultDescriptor = {
  name: 'kvm-vcpu-events/triple-fault',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [u8('pending')],
} as const satisfies Descriptor;

/** struct kvm_vcpu_events, every field. */
export const eventsDescriptor = {
  name: 'kvm-vcpu-events',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    struct('exception', exceptionDescriptor),
    struct('interrupt', interruptDescriptor),
    struct('nmi', nmiDescriptor),
    u32('sipiVector'),
    u32('flags'), // KVM_VCPUEVENT_VALID_*: which parts KVM filled
    struct('smi', smiDescriptor),
    struct('tripleFault', tripleFaultDescriptor),
    u8('exceptionHasPayload'),
    u64('exceptionPayload'),
  ],
} as const satisfies Descriptor;

/** One vCPU: everything kvm/vcpu-state.ts saveVcpuState reads. */
export const vcpuStateDescriptor = {
  name: 'kvm-vcpu',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u32('cpuidCount'),
    structArray('cpuid', cpuidEntryDescriptor, MAX_CPUID_ENTRIES, { lengthField: 'cpuidCount' }),
    bool('tscKhzPresent'),
    u32('tscKhz'),
    u32('mpState'), // KVM_MP_STATE_*
    struct('regs', regsDescriptor),
    struct('sregs', sregsDescriptor),
    struct('fpu', fpuDescriptor),
    bool('xsavePresent'),
    u32('xsaveLength'),
    bytes('xsave', MAX_XSAVE_BYTES, { lengthField: 'xsaveLength' }),
    bool('xcrsPresent'),
    u32('xcrsCount'),
    structArray('xcrs', xcrDescriptor, MAX_XCRS, { lengthField: 'xcrsCount' }),
    bool('debugregsPresent'),
    struct('debugregs', debugregsDescriptor),
    bool('lapicPresent'),
    u32('lapicLength'),
    bytes('lapic', LAPIC_BYTES, { lengthField: 'lapicLength' }),
    u32('msrCount'),
    structArray('msrs', msrEntryDescriptor, MAX_MSRS, { lengthField: 'msrCount' }),
    bool('eventsPresent'),
    struct('events', eventsDescriptor),
  ],
} as const satisfies Descriptor;

export type VcpuRecord = StateOf<typeof vcpuStateDescriptor>;
type SegmentRecord = StateOf<typeof segmentDescriptor>;
type DTableRecord = StateOf<typeof dtableDescriptor>;
type RegsRecord = StateOf<typeof regsDescriptor>;
type SregsRecord = StateOf<typeof sregsDescriptor>;
type FpuRecord = StateOf<typeof fpuDescriptor>;
type EventsRecord = StateOf<typeof eventsDescriptor>;
type DebugregsRecord = StateOf<typeof debugregsDescriptor>;

// ---- state → record ---------------------------------------------------------------------------------------------

function tooMany(what: string, n: number, max: number): never {
  throw new RangeError(`vcpu state: ${n} ${what} do not fit in a record of ${max}`);
}

/**
 * Writes `state` into `record` (a fresh one if none is given) and returns the record. A reused record is cleared
 * first, so nothing of an earlier state survives past the new counts. Values must be in their kernel field's range
 * (as kvm/bindings/codec-vcpu.ts produces them); array sizes are checked.
 */
export function vcpuStateToRecord(state: VcpuState, record?: VcpuRecord): VcpuRecord {
  const r = record ?? newRecord(vcpuStateDescriptor);
  if (record) clearRecord(record);

  if (state.cpuid.length > MAX_CPUID_ENTRIES) tooMany('CPUID entries', state.cpuid.length, MAX_CPUID_ENTRIES);
  r.cpuidCount = state.cpuid.length;
  for (let i = 0; i < state.cpuid.length; i++) {
    const e = state.cpuid[i];
    const c = r.cpuid[i];
    c.function = e.function;
    c.index = e.index;
    c.flags = e.flags;
    c.eax = e.eax;
    c.ebx = e.ebx;
    c.ecx = e.ecx;
    c.edx = e.edx;
  }

  r.tscKhzPresent = state.tscKhz !== null;
  r.tscKhz = state.tscKhz ?? 0;
  r.mpState = state.mpState;
  regsToRecord(state.regs, r.regs);
  sregsToRecord(state.sregs, r.sregs);
  fpuToRecord(state.fpu, r.fpu);

  r.xsavePresent = state.xsave !== null;
  if (state.xsave) {
    if (state.xsave.length > MAX_XSAVE_BYTES) tooMany('XSAVE bytes', state.xsave.length, MAX_XSAVE_BYTES);
    r.xsaveLength = state.xsave.length;
    r.xsave.set(state.xsave);
  }

  r.xcrsPresent = state.xcrs !== null;
  if (state.xcrs) {
    if (state.xcrs.length > MAX_XCRS) tooMany('XCRs', state.xcrs.length, MAX_XCRS);
    r.xcrsCount = state.xcrs.length;
    state.xcrs.forEach((x, i) => {
      r.xcrs[i].xcr = x.xcr;
      r.xcrs[i].value = x.value;
    });
  }

  r.debugregsPresent = state.debugregs !== null;
  if (state.debugregs) debugregsToRecord(state.debugregs, r.debugregs);

  r.lapicPresent = state.lapic !== null;
  if (state.lapic) {
    if (state.lapic.length !== LAPIC_BYTES)
      throw new RangeError(`vcpu state: LAPIC page of ${state.lapic.length} bytes, expected ${LAPIC_BYTES}`);
    r.lapicLength = LAPIC_BYTES;
    r.lapic.set(state.lapic);
  }

  if (state.msrs.length > MAX_MSRS) tooMany('MSRs', state.msrs.length, MAX_MSRS);
  r.msrCount = state.msrs.length;
  for (let i = 0; i < state.msrs.length; i++) {
    const m = r.msrs[i];
    m.index = state.msrs[i].index;
    m.data = state.msrs[i].data;
  }

  r.eventsPresent = state.events !== null;
  if (state.events) eventsToRecord(state.events, r.events);
  return r;
}

function regsToRecord(s: Regs, r: RegsRecord): void {
  r.rax = s.rax;
  r.rbx = s.rbx;
  r.rcx = s.rcx;
  r.rdx = s.rdx;
  r.rsi = s.rsi;
  r.rdi = s.rdi;
  r.rsp = s.rsp;
  r.rbp = s.rbp;
  r.r8 = s.r8;
  r.r9 = s.r9;
  r.r10 = s.r10;
  r.r11 = s.r11;
  r.r12 = s.r12;
  r.r13 = s.r13;
  r.r14 = s.r14;
  r.r15 = s.r15;
  r.rip = s.rip;
  r.rflags = s.rflags;
}

function segmentToRecord(s: Segment, r: SegmentRecord): void {
  r.base = s.base;
  r.limit = s.limit;
  r.selector = s.selector;
  r.type = s.type;
  r.present = s.present;
  r.dpl = s.dpl;
  r.db = s.db;
  r.s = s.s;
  r.l = s.l;
  r.g = s.g;
  r.avl = s.avl;
  r.unusable = s.unusable;
}

function dtableToRecord(s: DTable, r: DTableRecord): void {
  r.base = s.base;
  r.limit = s.limit;
}

function sregsToRecord(s: Sregs, r: SregsRecord): void {
  segmentToRecord(s.cs, r.cs);
  segmentToRecord(s.ds, r.ds);
  segmentToRecord(s.es, r.es);
  segmentToRecord(s.fs, r.fs);
  segmentToRecord(s.gs, r.gs);
  segmentToRecord(s.ss, r.ss);
  segmentToRecord(s.tr, r.tr);
  segmentToRecord(s.ldt, r.ldt);
  dtableToRecord(s.gdt, r.gdt);
  dtableToRecord(s.idt, r.idt);
  r.cr0 = s.cr0;
  r.cr2 = s.cr2;
  r.cr3 = s.cr3;
  r.cr4 = s.cr4;
  r.cr8 = s.cr8;
  r.efer = s.efer;
  r.apicBase = s.apicBase;
  if (s.interruptBitmap.length !== 4)
    throw new RangeError(`vcpu state: interrupt bitmap of ${s.interruptBitmap.length} words, expected 4`);
  r.interruptBitmap.set(s.interruptBitmap);
}

function fpuToRecord(s: Fpu, r: FpuRecord): void {
  if (s.fpr.length !== FPR_BYTES)
    throw new RangeError(`vcpu state: fpu.fpr of ${s.fpr.length} bytes, expected ${FPR_BYTES}`);
  if (s.xmm.length !== XMM_BYTES)
    throw new RangeError(`vcpu state: fpu.xmm of ${s.xmm.length} bytes, expected ${XMM_BYTES}`);
  r.fpr.set(s.fpr);
  r.fcw = s.fcw;
  r.fsw = s.fsw;
  r.ftwx = s.ftwx;
  r.lastOpcode = s.lastOpcode;
  r.lastIp = s.lastIp;
  r.lastDp = s.lastDp;
  r.xmm.set(s.xmm);
  r.mxcsr = s.mxcsr;
}

function debugregsToRecord(s: DebugRegs, r: DebugregsRecord): void {
  if (s.db.length !== 4) throw new RangeError(`vcpu state: ${s.db.length} debug address registers, expected 4`);
  r.db.set(s.db);
  r.dr6 = s.dr6;
  r.dr7 = s.dr7;
  r.flags = s.flags;
}

function eventsToRecord(s: VcpuEvents, r: EventsRecord): void {
  const ex = r.exception;
  ex.injected = s.exception.injected;
  ex.nr = s.exception.nr;
  ex.hasErrorCode = s.exception.hasErrorCode;
  ex.pending = s.exception.pending;
  ex.errorCode = s.exception.errorCode;
  const int = r.interrupt;
  int.injected = s.interrupt.injected;
  int.nr = s.interrupt.nr;
  int.soft = s.interrupt.soft;
  int.shadow = s.interrupt.shadow;
  r.nmi.injected = s.nmi.injected;
  r.nmi.pending = s.nmi.pending;
  r.nmi.masked = s.nmi.masked;
  r.sipiVector = s.sipiVector;
  r.flags = s.flags;
  const smi = r.smi;
  smi.smm = s.smi.smm;
  smi.pending = s.smi.pending;
  smi.smmInsideNmi = s.smi.smmInsideNmi;
  smi.latchedInit = s.smi.latchedInit;
  r.tripleFault.pending = s.tripleFault.pending;
  r.exceptionHasPayload = s.exceptionHasPayload;
  r.exceptionPayload = s.exceptionPayload;
}

// ---- record → state ---------------------------------------------------------------------------------------------

/** A length that must be 0 when its part is absent and within `max` when present. */
function partLength(present: boolean, length: number, max: number, what: string): number {
  if (!present && length !== 0) throw new RangeError(`vcpu record: ${what} is marked absent but has length ${length}`);
  return checkedCount(length, max, `vcpu record: ${what}`);
}

/**
 * The plain VcpuState a record holds. Every count and length is checked against its array (the record may come
 * from a file); the state shares no memory with the record.
 */
export function recordToVcpuState(r: VcpuRecord): VcpuState {
  const cpuidCount = checkedCount(r.cpuidCount, MAX_CPUID_ENTRIES, 'vcpu record: CPUID entries');
  const cpuid: CpuidEntry[] = new Array(cpuidCount);
  for (let i = 0; i < cpuidCount; i++) {
    const c = r.cpuid[i];
    cpuid[i] = { function: c.function, index: c.index, flags: c.flags, eax: c.eax, ebx: c.ebx, ecx: c.ecx, edx: c.edx };
  }

  const xsaveLength = partLength(r.xsavePresent, r.xsaveLength, MAX_XSAVE_BYTES, 'XSAVE area');
  const xcrsCount = partLength(r.xcrsPresent, r.xcrsCount, MAX_XCRS, 'XCRs');
  const lapicLength = partLength(r.lapicPresent, r.lapicLength, LAPIC_BYTES, 'LAPIC page');
  if (r.lapicPresent && lapicLength !== LAPIC_BYTES)
    throw new RangeError(`vcpu record: LAPIC page of ${lapicLength} bytes, expected ${LAPIC_BYTES}`);

  const msrCount = checkedCount(r.msrCount, MAX_MSRS, 'vcpu record: MSRs');
  const msrs: MsrEntry[] = new Array(msrCount);
  for (let i = 0; i < msrCount; i++) msrs[i] = { index: r.msrs[i].index, data: r.msrs[i].data };

  const xcrs: Xcr[] | null = r.xcrsPresent ? [] : null;
  for (let i = 0; i < xcrsCount; i++) xcrs!.push({ xcr: r.xcrs[i].xcr, value: r.xcrs[i].value });

  return {
    cpuid,
    tscKhz: r.tscKhzPresent ? r.tscKhz : null,
    mpState: r.mpState,
    regs: recordToRegs(r.regs),
    sregs: recordToSregs(r.sregs),
    fpu: recordToFpu(r.fpu),
    xsave: r.xsavePresent ? r.xsave.slice(0, xsaveLength) : null,
    xcrs,
    debugregs: r.debugregsPresent ? recordToDebugregs(r.debugregs) : null,
    lapic: r.lapicPresent ? r.lapic.slice(0, lapicLength) : null,
    msrs,
    events: r.eventsPresent ? recordToEvents(r.events) : null,
  };
}

function recordToRegs(r: RegsRecord): Regs {
  return {
    rax: r.rax,
    rbx: r.rbx,
    rcx: r.rcx,
    rdx: r.rdx,
    rsi: r.rsi,
    rdi: r.rdi,
    rsp: r.rsp,
    rbp: r.rbp,
    r8: r.r8,
    r9: r.r9,
    r10: r.r10,
    r11: r.r11,
    r12: r.r12,
    r13: r.r13,
    r14: r.r14,
    r15: r.r15,
    rip: r.rip,
    rflags: r.rflags,
  };
}

function recordToSegment(r: SegmentRecord): Segment {
  return {
    base: r.base,
    limit: r.limit,
    selector: r.selector,
    type: r.type,
    present: r.present,
    dpl: r.dpl,
    db: r.db,
    s: r.s,
    l: r.l,
    g: r.g,
    avl: r.avl,
    unusable: r.unusable,
  };
}

/** The special registers a vCPU record holds (the checks before a capture is sent look at them alone). */
export function recordToSregs(r: SregsRecord): Sregs {
  const b = r.interruptBitmap;
  return {
    cs: recordToSegment(r.cs),
    ds: recordToSegment(r.ds),
    es: recordToSegment(r.es),
    fs: recordToSegment(r.fs),
    gs: recordToSegment(r.gs),
    ss: recordToSegment(r.ss),
    tr: recordToSegment(r.tr),
    ldt: recordToSegment(r.ldt),
    gdt: { base: r.gdt.base, limit: r.gdt.limit },
    idt: { base: r.idt.base, limit: r.idt.limit },
    cr0: r.cr0,
    cr2: r.cr2,
    cr3: r.cr3,
    cr4: r.cr4,
    cr8: r.cr8,
    efer: r.efer,
    apicBase: r.apicBase,
    interruptBitmap: [b[0], b[1], b[2], b[3]],
  };
}

function recordToFpu(r: FpuRecord): Fpu {
  return {
    fpr: r.fpr.slice(),
    fcw: r.fcw,
    fsw: r.fsw,
    ftwx: r.ftwx,
    lastOpcode: r.lastOpcode,
    lastIp: r.lastIp,
    lastDp: r.lastDp,
    xmm: r.xmm.slice(),
    mxcsr: r.mxcsr,
  };
}

function recordToDebugregs(r: DebugregsRecord): DebugRegs {
  return { db: [r.db[0], r.db[1], r.db[2], r.db[3]], dr6: r.dr6, dr7: r.dr7, flags: r.flags };
}

function recordToEvents(r: EventsRecord): VcpuEvents {
  const { exception: ex, interrupt: int, nmi, smi } = r;
  return {
    exception: {
      injected: ex.injected,
      nr: ex.nr,
      hasErrorCode: ex.hasErrorCode,
      pending: ex.pending,
      errorCode: ex.errorCode,
    },
    interrupt: { injected: int.injected, nr: int.nr, soft: int.soft, shadow: int.shadow },
    nmi: { injected: nmi.injected, pending: nmi.pending, masked: nmi.masked },
    sipiVector: r.sipiVector,
    flags: r.flags,
    smi: { smm: smi.smm, pending: smi.pending, smmInsideNmi: smi.smmInsideNmi, latchedInit: smi.latchedInit },
    tripleFault: { pending: r.tripleFault.pending },
    exceptionHasPayload: r.exceptionHasPayload,
    exceptionPayload: r.exceptionPayload,
  };
}
