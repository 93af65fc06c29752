// Encoders and decoders between the plain vCPU shapes of kvm/bindings/types.ts and the kernel's binary structs. Offsets
// come from the layout table (kvm/bindings/structs.ts), never from literals, so the abi test covers every one of them.
import { LAYOUTS, offsetOf, sizeOf, fieldOf } from './structs.js';
import type { Regs, Segment, DTable, Sregs, Fpu, MsrEntry, CpuidEntry, Xcr, VcpuEvents, DebugRegs } from './types.js';

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkedView(bytes: Uint8Array, size: number, what: string): DataView {
  if (bytes.byteLength < size) throw new RangeError(`${what}: buffer of ${bytes.byteLength} bytes, need ${size}`);
  return dataView(bytes);
}

// ---- kvm_regs ---------------------------------------------------------------------------------------------------

const REG_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const satisfies readonly (keyof Regs)[];
const REG_OFFSETS = REG_NAMES.map((n) => offsetOf('kvm_regs', n));

export function encodeRegs(regs: Regs): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_regs'));
  const d = dataView(bytes);
  for (const [i, n] of REG_NAMES.entries()) d.setBigUint64(REG_OFFSETS[i], BigInt.asUintN(64, regs[n]), true);
  return bytes;
}

export function decodeRegs(bytes: Uint8Array): Regs {
  const d = checkedView(bytes, sizeOf('kvm_regs'), 'kvm_regs');
  const regs = {} as Regs;
  REG_NAMES.forEach((n, i) => {
    regs[n] = d.getBigUint64(REG_OFFSETS[i], true);
  });
  return regs;
}

// ---- kvm_segment, kvm_dtable, kvm_sregs -------------------------------------------------------------------------

const SEG = {
  base: offsetOf('kvm_segment', 'base'),
  limit: offsetOf('kvm_segment', 'limit'),
  selector: offsetOf('kvm_segment', 'selector'),
  type: offsetOf('kvm_segment', 'type'),
  present: offsetOf('kvm_segment', 'present'),
  dpl: offsetOf('kvm_segment', 'dpl'),
  db: offsetOf('kvm_segment', 'db'),
  s: offsetOf('kvm_segment', 's'),
  l: offsetOf('kvm_segment', 'l'),
  g: offsetOf('kvm_segment', 'g'),
  avl: offsetOf('kvm_segment', 'avl'),
  unusable: offsetOf('kvm_segment', 'unusable'),
};
const SEG_FLAGS = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

function writeSegment(d: DataView, at: number, s: Segment): void {
  d.setBigUint64(at + SEG.base, BigInt.asUintN(64, s.base), true);
  d.setUint32(at + SEG.limit, s.limit >>> 0, true);
  d.setUint16(at + SEG.selector, s.selector, true);
  for (const f of SEG_FLAGS) d.setUint8(at + SEG[f], s[f]);
}

function readSegment(d: DataView, at: number): Segment {
  const s = {
    base: d.getBigUint64(at + SEG.base, true),
    limit: d.getUint32(at + SEG.limit, true),
    selector: d.getUint16(at + SEG.selector, true),
  } as Segment;
  for (const f of SEG_FLAGS) s[f] = d.getUint8(at + SEG[f]);
  return s;
}

const DT = { base: offsetOf('kvm_dtable', 'base'), limit: offsetOf('kvm_dtable', 'limit') };

function writeDTable(d: DataView, at: number, t: DTable): void {
  d.setBigUint64(at + DT.base, BigInt.asUintN(64, t.base), true);
  d.setUint16(at + DT.limit, t.limit, true);
}

function readDTable(d: DataView, at: number): DTable {
  return { base: d.getBigUint64(at + DT.base, true), limit: d.getUint16(at + DT.limit, true) };
}

const SREG_SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SREG_TABLES = ['gdt', 'idt'] as const;
const SREG_CONTROL = [
  ['cr0', 'cr0'],
  ['cr2', 'cr2'],
  ['cr3', 'cr3'],
  ['cr4', 'cr4'],
  ['cr8', 'cr8'],
  ['efer', 'efer'],
  ['apicBase', 'apic_base'],
] as const;
const SREG_BITMAP = offsetOf('kvm_sregs', 'interrupt_bitmap');

export function encodeSregs(sregs: Sregs): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_sregs'));
  const d = dataView(bytes);
  for (const s of SREG_SEGMENTS) writeSegment(d, offsetOf('kvm_sregs', s), sregs[s]);
  for (const t of SREG_TABLES) writeDTable(d, offsetOf('kvm_sregs', t), sregs[t]);
  for (const [js, c] of SREG_CONTROL) d.setBigUint64(offsetOf('kvm_sregs', c), BigInt.asUintN(64, sregs[js]), true);
  for (const [i, w] of sregs.interruptBitmap.entries())
    d.setBigUint64(SREG_BITMAP + 8 * i, BigInt.asUintN(64, w), true);
  return bytes;
}

export function decodeSregs(bytes: Uint8Array): Sregs {
  const d = checkedView(bytes, sizeOf('kvm_sregs'), 'kvm_sregs');
  const sregs = {} as Sregs;
  for (const s of SREG_SEGMENTS) sregs[s] = readSegment(d, offsetOf('kvm_sregs', s));
  for (const t of SREG_TABLES) sregs[t] = readDTable(d, offsetOf('kvm_sregs', t));
  for (const [js, c] of SREG_CONTROL) sregs[js] = d.getBigUint64(offsetOf('kvm_sregs', c), true);
  sregs.interruptBitmap = [0, 1, 2, 3].map((i) =>
    d.getBigUint64(SREG_BITMAP + 8 * i, true),
  ) as Sregs['interruptBitmap'];
  return sregs;
}

// ---- kvm_fpu ----------------------------------------------------------------------------------------------------

const FPU = {
  fpr: fieldOf('kvm_fpu', 'fpr'),
  xmm: fieldOf('kvm_fpu', 'xmm'),
  fcw: offsetOf('kvm_fpu', 'fcw'),
  fsw: offsetOf('kvm_fpu', 'fsw'),
  ftwx: offsetOf('kvm_fpu', 'ftwx'),
  lastOpcode: offsetOf('kvm_fpu', 'last_opcode'),
  lastIp: offsetOf('kvm_fpu', 'last_ip'),
  lastDp: offsetOf('kvm_fpu', 'last_dp'),
  mxcsr: offsetOf('kvm_fpu', 'mxcsr'),
};

export function encodeFpu(fpu: Fpu): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_fpu'));
  const d = dataView(bytes);
  copyInto(bytes, FPU.fpr.offset, FPU.fpr.size, fpu.fpr, 'kvm_fpu.fpr');
  copyInto(bytes, FPU.xmm.offset, FPU.xmm.size, fpu.xmm, 'kvm_fpu.xmm');
  d.setUint16(FPU.fcw, fpu.fcw, true);
  d.setUint16(FPU.fsw, fpu.fsw, true);
  d.setUint8(FPU.ftwx, fpu.ftwx);
  d.setUint16(FPU.lastOpcode, fpu.lastOpcode, true);
  d.setBigUint64(FPU.lastIp, BigInt.asUintN(64, fpu.lastIp), true);
  d.setBigUint64(FPU.lastDp, BigInt.asUintN(64, fpu.lastDp), true);
  d.setUint32(FPU.mxcsr, fpu.mxcsr >>> 0, true);
  return bytes;
}

export function decodeFpu(bytes: Uint8Array): Fpu {
  const d = checkedView(bytes, sizeOf('kvm_fpu'), 'kvm_fpu');
  return {
    fpr: bytes.slice(FPU.fpr.offset, FPU.fpr.offset + FPU.fpr.size),
    fcw: d.getUint16(FPU.fcw, true),
    fsw: d.getUint16(FPU.fsw, true),
    ftwx: d.getUint8(FPU.ftwx),
    lastOpcode: d.getUint16(FPU.lastOpcode, true),
    lastIp: d.getBigUint64(FPU.lastIp, true),
    lastDp: d.getBigUint64(FPU.lastDp, true),
    xmm: bytes.slice(FPU.xmm.offset, FPU.xmm.offset + FPU.xmm.size),
    mxcsr: d.getUint32(FPU.mxcsr, true),
  };
}

function copyInto(target: Uint8Array, at: number, size: number, source: Uint8Array, what: string): void {
  if (source.byteLength !== size) throw new RangeError(`${what}: expected ${size} bytes, got ${source.byteLength}`);
  target.set(source, at);
}

// ---- kvm_msrs / kvm_msr_list ------------------------------------------------------------------------------------

const MSRS = { nmsrs: offsetOf('kvm_msrs', 'nmsrs'), entries: offsetOf('kvm_msrs', 'entries') };
const MSR_ENTRY = {
  size: sizeOf('kvm_msr_entry'),
  index: offsetOf('kvm_msr_entry', 'index'),
  data: offsetOf('kvm_msr_entry', 'data'),
};

/** A kvm_msrs with `entries` (for KVM_SET_MSRS), or with their indices and zero data (for KVM_GET_MSRS). */
export function encodeMsrs(entries: readonly (MsrEntry | number)[]): Uint8Array {
  const bytes = new Uint8Array(MSRS.entries + entries.length * MSR_ENTRY.size);
  const d = dataView(bytes);
  d.setUint32(MSRS.nmsrs, entries.length, true);
  entries.forEach((e, i) => {
    const at = MSRS.entries + i * MSR_ENTRY.size;
    const index = typeof e === 'number' ? e : e.index;
    d.setUint32(at + MSR_ENTRY.index, index >>> 0, true);
    if (typeof e !== 'number') d.setBigUint64(at + MSR_ENTRY.data, BigInt.asUintN(64, e.data), true);
  });
  return bytes;
}

/** The first `count` entries of a kvm_msrs (count: what KVM_GET_MSRS returned). */
export function decodeMsrs(bytes: Uint8Array, count?: number): MsrEntry[] {
  const d = dataView(bytes);
  const n = count ?? d.getUint32(MSRS.nmsrs, true);
  if (MSRS.entries + n * MSR_ENTRY.size > bytes.byteLength)
    throw new RangeError(`kvm_msrs: ${n} entries overrun buffer`);
  const out: MsrEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = MSRS.entries + i * MSR_ENTRY.size;
    out.push({ index: d.getUint32(at + MSR_ENTRY.index, true), data: d.getBigUint64(at + MSR_ENTRY.data, true) });
  }
  return out;
}

const MSR_LIST = { nmsrs: offsetOf('kvm_msr_list', 'nmsrs'), indices: offsetOf('kvm_msr_list', 'indices') };

/** An empty kvm_msr_list with room for `capacity` indices. */
export function encodeMsrList(capacity: number): Uint8Array {
  const bytes = new Uint8Array(MSR_LIST.indices + 4 * capacity);
  dataView(bytes).setUint32(MSR_LIST.nmsrs, capacity, true);
  return bytes;
}

export function msrListCount(bytes: Uint8Array): number {
  return dataView(bytes).getUint32(MSR_LIST.nmsrs, true);
}

export function decodeMsrList(bytes: Uint8Array): number[] {
  const d = dataView(bytes);
  const n = d.getUint32(MSR_LIST.nmsrs, true);
  if (MSR_LIST.indices + 4 * n > bytes.byteLength) throw new RangeError(`kvm_msr_list: ${n} entries overrun buffer`);
  return Array.from({ length: n }, (_, i) => d.getUint32(MSR_LIST.indices + 4 * i, true));
}

// ---- kvm_cpuid2 -------------------------------------------------------------------------------------------------

const CPUID2 = { nent: offsetOf('kvm_cpuid2', 'nent'), entries: offsetOf('kvm_cpuid2', 'entries') };
const CPUID_ENTRY_SIZE = sizeOf('kvm_cpuid_entry2');
const CPUID_FIELDS = ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const;
const CPUID_OFFSETS = CPUID_FIELDS.map((f) => offsetOf('kvm_cpuid_entry2', f));

/** A kvm_cpuid2 holding `entries`, or an empty one with room for `entries` (a number) for the GET requests. */
export function encodeCpuid2(entries: readonly CpuidEntry[] | number): Uint8Array {
  const n = typeof entries === 'number' ? entries : entries.length;
  const bytes = new Uint8Array(CPUID2.entries + n * CPUID_ENTRY_SIZE);
  const d = dataView(bytes);
  d.setUint32(CPUID2.nent, n, true);
  if (typeof entries !== 'number') {
    entries.forEach((e, i) => {
      const at = CPUID2.entries + i * CPUID_ENTRY_SIZE;
      for (const [j, f] of CPUID_FIELDS.entries()) d.setUint32(at + CPUID_OFFSETS[j], e[f] >>> 0, true);
    });
  }
  return bytes;
}

/**
 * A kvm_cpuid2 for KVM_GET_CPUID2 with room for `n` entries, each filled with all-ones bytes. KVM before mid-2023
 * (Linux 6.1 among them; fixed by "KVM: x86: Update KVM_GET_CPUID2 to return valid entry count") copies the vCPU's
 * entries but leaves `nent` as the caller passed it, on success and on E2BIG alike, so the count cannot be read from
 * the reply. KVM never returns an all-ones entry (its `flags` use three bits), so the first entry still all-ones is
 * the first one it did not write: decodeCpuid2Reply stops there.
 */
export function encodeCpuid2Request(n: number): Uint8Array {
  const bytes = encodeCpuid2(n);
  bytes.fill(0xff, CPUID2.entries);
  return bytes;
}

/** The entries KVM wrote into a buffer from encodeCpuid2Request: up to `nent` and before the first untouched one. */
export function decodeCpuid2Reply(bytes: Uint8Array): CpuidEntry[] {
  const room = Math.floor((bytes.byteLength - CPUID2.entries) / CPUID_ENTRY_SIZE);
  const n = Math.min(dataView(bytes).getUint32(CPUID2.nent, true), room);
  let written = 0;
  while (written < n && !allOnes(bytes, CPUID2.entries + written * CPUID_ENTRY_SIZE, CPUID_ENTRY_SIZE)) written++;
  return decodeCpuid2(bytes, written);
}

function allOnes(bytes: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i] !== 0xff) return false;
  return true;
}

/** The entries of a kvm_cpuid2: `nent` of them, or the first `count`. */
export function decodeCpuid2(bytes: Uint8Array, count?: number): CpuidEntry[] {
  const d = dataView(bytes);
  const n = count ?? d.getUint32(CPUID2.nent, true);
  if (CPUID2.entries + n * CPUID_ENTRY_SIZE > bytes.byteLength)
    throw new RangeError(`kvm_cpuid2: ${n} entries overrun buffer`);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = CPUID2.entries + i * CPUID_ENTRY_SIZE;
    const e = {} as CpuidEntry;
    CPUID_FIELDS.forEach((f, j) => {
      e[f] = d.getUint32(at + CPUID_OFFSETS[j], true);
    });
    out.push(e);
  }
  return out;
}

// ---- kvm_xcrs ---------------------------------------------------------------------------------------------------

const XCRS = {
  nr: offsetOf('kvm_xcrs', 'nr_xcrs'),
  flags: offsetOf('kvm_xcrs', 'flags'),
  xcrs: fieldOf('kvm_xcrs', 'xcrs'),
  xcr: offsetOf('kvm_xcr', 'xcr'),
  value: offsetOf('kvm_xcr', 'value'),
};

export function encodeXcrs(xcrs: readonly Xcr[]): Uint8Array {
  if (xcrs.length > (XCRS.xcrs.length ?? 0))
    throw new RangeError(`kvm_xcrs: ${xcrs.length} XCRs, at most ${XCRS.xcrs.length}`);
  const bytes = new Uint8Array(sizeOf('kvm_xcrs'));
  const d = dataView(bytes);
  d.setUint32(XCRS.nr, xcrs.length, true);
  xcrs.forEach((x, i) => {
    const at = XCRS.xcrs.offset + i * (XCRS.xcrs.elementSize ?? 0);
    d.setUint32(at + XCRS.xcr, x.xcr >>> 0, true);
    d.setBigUint64(at + XCRS.value, BigInt.asUintN(64, x.value), true);
  });
  return bytes;
}

export function decodeXcrs(bytes: Uint8Array): Xcr[] {
  const d = checkedView(bytes, sizeOf('kvm_xcrs'), 'kvm_xcrs');
  const n = d.getUint32(XCRS.nr, true);
  if (n > (XCRS.xcrs.length ?? 0)) throw new RangeError(`kvm_xcrs: nr_xcrs ${n} exceeds ${XCRS.xcrs.length}`);
  return Array.from({ length: n }, (_, i) => {
    const at = XCRS.xcrs.offset + i * (XCRS.xcrs.elementSize ?? 0);
    return { xcr: d.getUint32(at + XCRS.xcr, true), value: d.getBigUint64(at + XCRS.value, true) };
  });
}

// ---- kvm_vcpu_events --------------------------------------------------------------------------------------------

// [shape path, C designator, width in bytes]; `exceptionPayload` is the one u64.
const EVENT_FIELDS = [
  ['exception.injected', 'exception.injected', 1],
  ['exception.nr', 'exception.nr', 1],
  ['exception.hasErrorCode', 'exception.has_error_code', 1],
  ['exception.pending', 'exception.pending', 1],
  ['exception.errorCode', 'exception.error_code', 4],
  ['interrupt.injected', 'interrupt.injected', 1],
  ['interrupt.nr', 'interrupt.nr', 1],
  ['interrupt.soft', 'interrupt.soft', 1],
  ['interrupt.shadow', 'interrupt.shadow', 1],
  ['nmi.injected', 'nmi.injected', 1],
  ['nmi.pending', 'nmi.pending', 1],
  ['nmi.masked', 'nmi.masked', 1],
  ['sipiVector', 'sipi_vector', 4],
  ['flags', 'flags', 4],
  ['smi.smm', 'smi.smm', 1],
  ['smi.pending', 'smi.pending', 1],
  ['smi.smmInsideNmi', 'smi.smm_inside_nmi', 1],
  ['smi.latchedInit', 'smi.latched_init', 1],
  ['tripleFault.pending', 'triple_fault.pending', 1],
  ['exceptionHasPayload', 'exception_has_payload', 1],
] as const;
const EVENT_OFFSETS = EVENT_FIELDS.map(([, c]) => offsetOf('kvm_vcpu_events', c));
const EVENT_PAYLOAD = offsetOf('kvm_vcpu_events', 'exception_payload');

export function encodeVcpuEvents(e: VcpuEvents): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_vcpu_events'));
  const d = dataView(bytes);
  EVENT_FIELDS.forEach(([path, , width], i) => {
    const v = getPath(e, path);
    if (width === 1) d.setUint8(EVENT_OFFSETS[i], v);
    else d.setUint32(EVENT_OFFSETS[i], v >>> 0, true);
  });
  d.setBigUint64(EVENT_PAYLOAD, BigInt.asUintN(64, e.exceptionPayload), true);
  return bytes;
}

export function decodeVcpuEvents(bytes: Uint8Array): VcpuEvents {
  const d = checkedView(bytes, sizeOf('kvm_vcpu_events'), 'kvm_vcpu_events');
  const e = { exception: {}, interrupt: {}, nmi: {}, smi: {}, tripleFault: {} } as VcpuEvents;
  EVENT_FIELDS.forEach(([path, , width], i) => {
    setPath(e, path, width === 1 ? d.getUint8(EVENT_OFFSETS[i]) : d.getUint32(EVENT_OFFSETS[i], true));
  });
  e.exceptionPayload = d.getBigUint64(EVENT_PAYLOAD, true);
  return e;
}

type Nested = Record<string, unknown>;

function getPath(o: object, path: string): number {
  let v: unknown = o;
  for (const k of path.split('.')) v = (v as Nested)[k];
  return v as number;
}

function setPath(o: object, path: string, value: number): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  let v = o as Nested;
  for (const k of keys) v = v[k] as Nested;
  v[last] = value;
}

// ---- kvm_mp_state -----------------------------------------------------------------------------------------------

export function encodeMpState(state: number): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_mp_state'));
  dataView(bytes).setUint32(offsetOf('kvm_mp_state', 'mp_state'), state >>> 0, true);
  return bytes;
}

export function decodeMpState(bytes: Uint8Array): number {
  return checkedView(bytes, sizeOf('kvm_mp_state'), 'kvm_mp_state').getUint32(
    offsetOf('kvm_mp_state', 'mp_state'),
    true,
  );
}

// ---- kvm_debugregs ----------------------------------------------------------------------------------------------

const DBG = {
  db: offsetOf('kvm_debugregs', 'db'),
  dr6: offsetOf('kvm_debugregs', 'dr6'),
  dr7: offsetOf('kvm_debugregs', 'dr7'),
  flags: offsetOf('kvm_debugregs', 'flags'),
};

export function encodeDebugRegs(r: DebugRegs): Uint8Array {
  const bytes = new Uint8Array(sizeOf('kvm_debugregs'));
  const d = dataView(bytes);
  for (const [i, v] of r.db.entries()) d.setBigUint64(DBG.db + 8 * i, BigInt.asUintN(64, v), true);
  d.setBigUint64(DBG.dr6, BigInt.asUintN(64, r.dr6), true);
  d.setBigUint64(DBG.dr7, BigInt.asUintN(64, r.dr7), true);
  d.setBigUint64(DBG.flags, BigInt.asUintN(64, r.flags), true);
  return bytes;
}

export function decodeDebugRegs(bytes: Uint8Array): DebugRegs {
  const d = checkedView(bytes, sizeOf('kvm_debugregs'), 'kvm_debugregs');
  return {
    db: [0, 1, 2, 3].map((i) => d.getBigUint64(DBG.db + 8 * i, true)) as DebugRegs['db'],
    dr6: d.getBigUint64(DBG.dr6, true),
    dr7: d.getBigUint64(DBG.dr7, true),
    flags: d.getBigUint64(DBG.flags, true),
  };
}

// ---- opaque areas: kvm_lapic_state, kvm_xsave -------------------------------------------------------------------

/** The LAPIC register page is kept as bytes; a register at APIC offset `reg` is the u32 at `reg` in it. */
export const LAPIC_STATE_SIZE = sizeOf('kvm_lapic_state');
/** The fixed part of kvm_xsave; KVM_GET_XSAVE2 may use more (KVM_CAP_XSAVE2). */
export const XSAVE_MIN_SIZE = LAYOUTS.kvm_xsave.size;
