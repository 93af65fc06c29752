// KvmRun: a view over a vCPU's mmapped kvm_run area (the kvm_run page, then the PIO data page). Nothing is copied:
// every getter reads the shared page, so the vCPU loop reads `run.exitReason`, `run.io.port`, `run.io.value`
// straight after KVM_RUN without allocating. `decode()` builds a discriminated union for logs, tests and slow
// paths. The owner of the mapping calls `release()` before munmap: afterwards every accessor throws a RangeError
// instead of touching unmapped memory (which would kill the process).
import { offsetOf, fieldOf } from './bindings/structs.js';
import * as K from './bindings/constants.js';
import { hex } from '../src/util/hex.js';

// kvm_run offsets, resolved once from the layout table.
const O = {
  requestInterruptWindow: offsetOf('kvm_run', 'request_interrupt_window'),
  immediateExit: offsetOf('kvm_run', 'immediate_exit'),
  exitReason: offsetOf('kvm_run', 'exit_reason'),
  readyForInterruptInjection: offsetOf('kvm_run', 'ready_for_interrupt_injection'),
  ifFlag: offsetOf('kvm_run', 'if_flag'),
  flags: offsetOf('kvm_run', 'flags'),
  cr8: offsetOf('kvm_run', 'cr8'),
  apicBase: offsetOf('kvm_run', 'apic_base'),
  hwReason: offsetOf('kvm_run', 'hw.hardware_exit_reason'),
  failReason: offsetOf('kvm_run', 'fail_entry.hardware_entry_failure_reason'),
  failCpu: offsetOf('kvm_run', 'fail_entry.cpu'),
  exException: offsetOf('kvm_run', 'ex.exception'),
  exErrorCode: offsetOf('kvm_run', 'ex.error_code'),
  ioDirection: offsetOf('kvm_run', 'io.direction'),
  ioSize: offsetOf('kvm_run', 'io.size'),
  ioPort: offsetOf('kvm_run', 'io.port'),
  ioCount: offsetOf('kvm_run', 'io.count'),
  ioDataOffset: offsetOf('kvm_run', 'io.data_offset'),
  debugException: offsetOf('kvm_run', 'debug.arch') + offsetOf('kvm_debug_exit_arch', 'exception'),
  debugPc: offsetOf('kvm_run', 'debug.arch') + offsetOf('kvm_debug_exit_arch', 'pc'),
  debugDr6: offsetOf('kvm_run', 'debug.arch') + offsetOf('kvm_debug_exit_arch', 'dr6'),
  debugDr7: offsetOf('kvm_run', 'debug.arch') + offsetOf('kvm_debug_exit_arch', 'dr7'),
  mmioPhysAddr: offsetOf('kvm_run', 'mmio.phys_addr'),
  mmioData: fieldOf('kvm_run', 'mmio.data'),
  mmioLen: offsetOf('kvm_run', 'mmio.len'),
  mmioIsWrite: offsetOf('kvm_run', 'mmio.is_write'),
  hcNr: offsetOf('kvm_run', 'hypercall.nr'),
  hcArgs: fieldOf('kvm_run', 'hypercall.args'),
  hcRet: offsetOf('kvm_run', 'hypercall.ret'),
  hcLongmode: offsetOf('kvm_run', 'hypercall.longmode'),
  internalSuberror: offsetOf('kvm_run', 'internal.suberror'),
  internalNdata: offsetOf('kvm_run', 'internal.ndata'),
  internalData: fieldOf('kvm_run', 'internal.data'),
  sysType: offsetOf('kvm_run', 'system_event.type'),
  sysNdata: offsetOf('kvm_run', 'system_event.ndata'),
  sysData: fieldOf('kvm_run', 'system_event.data'),
} as const;

const MMIO_DATA_MAX = O.mmioData.size;
const INTERNAL_DATA_MAX = O.internalData.length ?? 0;
const SYSTEM_EVENT_DATA_MAX = O.sysData.length ?? 0;

const EMPTY = new ArrayBuffer(0);

/** KVM_EXIT_* number → short name, for messages. */
const EXIT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(K)
    .filter(([n]) => n.startsWith('KVM_EXIT_') && !n.startsWith('KVM_EXIT_IO_'))
    .map(([n, v]) => [v as number, n.slice('KVM_EXIT_'.length).toLowerCase().replace(/_/g, '-')]),
);

export function exitReasonName(reason: number): string {
  return EXIT_NAMES[reason] ?? `exit-${reason}`;
}

/** A decoded exit (allocates; the hot path reads the KvmRun getters instead). */
export type KvmExit =
  | { reason: 'io'; direction: 'in' | 'out'; size: number; port: number; count: number; data: Uint8Array }
  | { reason: 'mmio'; physAddr: bigint; len: number; isWrite: boolean; data: Uint8Array }
  | { reason: 'hlt' }
  | { reason: 'shutdown' }
  | { reason: 'intr' }
  | { reason: 'irq-window-open' }
  | { reason: 'unknown'; hardwareExitReason: bigint }
  | { reason: 'exception'; exception: number; errorCode: number }
  | { reason: 'debug'; exception: number; pc: bigint; dr6: bigint; dr7: bigint }
  | { reason: 'hypercall'; nr: bigint; args: bigint[]; ret: bigint; longmode: number }
  | { reason: 'fail-entry'; hardwareEntryFailureReason: bigint; cpu: number }
  | { reason: 'internal-error'; suberror: number; data: bigint[] }
  | { reason: 'system-event'; type: number; data: bigint[] }
  | { reason: 'other'; exitReason: number };

/** The io exit (KVM_EXIT_IO), read live from the page. */
export class IoExitView {
  constructor(private readonly run: KvmRun) {}
  /** KVM_EXIT_IO_IN (0) or KVM_EXIT_IO_OUT (1). */
  get direction(): number {
    return this.run.view.getUint8(O.ioDirection);
  }
  /** Access width in bytes: 1, 2 or 4. */
  get size(): number {
    return this.run.view.getUint8(O.ioSize);
  }
  get port(): number {
    return this.run.view.getUint16(O.ioPort, true);
  }
  /** Number of `size`-byte elements (more than 1 for rep ins/outs). */
  get count(): number {
    return this.run.view.getUint32(O.ioCount, true);
  }
  /** Offset of the data area from the start of the mapping. */
  get dataOffset(): number {
    return Number(this.run.view.getBigUint64(O.ioDataOffset, true));
  }

  /** Element `i` of the data area (an OUT's value, or what was stored for an IN), bounds-checked. */
  valueAt(i = 0): number {
    const size = this.size;
    const at = this.elementOffset(i, size);
    const d = this.run.view;
    return size === 1 ? d.getUint8(at) : size === 2 ? d.getUint16(at, true) : d.getUint32(at, true);
  }

  /** Stores element `i` of an IN's data (truncated to the access size). */
  setValueAt(i: number, value: number): void {
    const size = this.size;
    const at = this.elementOffset(i, size);
    const d = this.run.view;
    if (size === 1) d.setUint8(at, value & 0xff);
    else if (size === 2) d.setUint16(at, value & 0xffff, true);
    else d.setUint32(at, value >>> 0, true);
  }

  /** The first (usually only) element: `run.io.value` for an OUT, `run.io.value = v` for an IN. */
  get value(): number {
    return this.valueAt(0);
  }
  set value(v: number) {
    this.setValueAt(0, v);
  }

  /** The whole data area, size × count bytes, as a view into the page (allocates a small view object). */
  get data(): Uint8Array {
    const length = this.size * this.count;
    const at = this.checkedArea(this.dataOffset, length);
    return this.run.bytes.subarray(at, at + length);
  }

  private elementOffset(i: number, size: number): number {
    if (size !== 1 && size !== 2 && size !== 4) throw new RangeError(`kvm_run: io.size ${size} is not 1, 2 or 4`);
    if (!Number.isInteger(i) || i < 0 || i >= this.count)
      throw new RangeError(`kvm_run: io element ${i} outside count ${this.count}`);
    return this.checkedArea(this.dataOffset + i * size, size);
  }

  private checkedArea(at: number, length: number): number {
    if (at < 0 || at + length > this.run.size) {
      throw new RangeError(`kvm_run: io data [${at}, +${length}) outside the ${this.run.size}-byte mapping`);
    }
    return at;
  }
}

/** The mmio exit (KVM_EXIT_MMIO). */
export class MmioExitView {
  constructor(private readonly run: KvmRun) {}
  get physAddr(): bigint {
    return this.run.view.getBigUint64(O.mmioPhysAddr, true);
  }
  /** Access width in bytes (1..8). */
  get len(): number {
    return this.run.view.getUint32(O.mmioLen, true);
  }
  get isWrite(): boolean {
    return this.run.view.getUint8(O.mmioIsWrite) !== 0;
  }
  /** The 8-byte data buffer in the page: a write's bytes, or where a read's result goes. Only `len` bytes count. */
  get data(): Uint8Array {
    return this.run.mmioData;
  }
  /** The access as a little-endian number, for len ≤ 8 (bigint: an 8-byte access does not fit a double). */
  get value(): bigint {
    const len = this.checkedLen();
    let v = 0n;
    const data = this.run.mmioData;
    for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
    return v;
  }
  set value(v: bigint) {
    const len = this.checkedLen();
    const data = this.run.mmioData;
    for (let i = 0; i < len; i++) {
      data[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  private checkedLen(): number {
    const len = this.len;
    if (len < 1 || len > MMIO_DATA_MAX) throw new RangeError(`kvm_run: mmio.len ${len} outside 1..${MMIO_DATA_MAX}`);
    return len;
  }
}

/** KVM_EXIT_INTERNAL_ERROR. */
export class InternalErrorView {
  constructor(private readonly run: KvmRun) {}
  get suberror(): number {
    return this.run.view.getUint32(O.internalSuberror, true);
  }
  /** Valid words in `data` (KVM_CAP_INTERNAL_ERROR_DATA), clamped to the array. */
  get ndata(): number {
    return Math.min(this.run.view.getUint32(O.internalNdata, true), INTERNAL_DATA_MAX);
  }
  get data(): bigint[] {
    return Array.from({ length: this.ndata }, (_, i) =>
      this.run.view.getBigUint64(O.internalData.offset + 8 * i, true),
    );
  }
}

/** KVM_EXIT_FAIL_ENTRY. */
export class FailEntryView {
  constructor(private readonly run: KvmRun) {}
  get hardwareEntryFailureReason(): bigint {
    return this.run.view.getBigUint64(O.failReason, true);
  }
  get cpu(): number {
    return this.run.view.getUint32(O.failCpu, true);
  }
}

/** KVM_EXIT_SYSTEM_EVENT. */
export class SystemEventView {
  constructor(private readonly run: KvmRun) {}
  /** KVM_SYSTEM_EVENT_* */
  get type(): number {
    return this.run.view.getUint32(O.sysType, true);
  }
  get ndata(): number {
    return Math.min(this.run.view.getUint32(O.sysNdata, true), SYSTEM_EVENT_DATA_MAX);
  }
  /** data[0..ndata); before KVM_CAP_SYSTEM_EVENT_DATA the kernel left ndata 0 and put flags in data[0]. */
  get data(): bigint[] {
    const n = Math.max(this.ndata, 1);
    return Array.from({ length: n }, (_, i) => this.run.view.getBigUint64(O.sysData.offset + 8 * i, true));
  }
}

export class KvmRun {
  /** @internal the DataView over the mapping (empty after release). */
  view: DataView;
  /** @internal */
  bytes: Uint8Array;
  /** @internal the 8-byte mmio.data window. */
  mmioData: Uint8Array;
  /** Size of the mapping in bytes (KVM_GET_VCPU_MMAP_SIZE). */
  readonly size: number;

  readonly io = new IoExitView(this);
  readonly mmio = new MmioExitView(this);
  readonly internal = new InternalErrorView(this);
  readonly failEntry = new FailEntryView(this);
  readonly systemEvent = new SystemEventView(this);

  /** `mapping`: a zero-copy ArrayBuffer over the vCPU's mmapped area (libc `view(ptr, mmapSize)`). */
  constructor(mapping: ArrayBuffer) {
    if (mapping.byteLength < O.apicBase + 8)
      throw new RangeError(`kvm_run: mapping of ${mapping.byteLength} bytes is too small`);
    this.size = mapping.byteLength;
    this.view = new DataView(mapping);
    this.bytes = new Uint8Array(mapping);
    this.mmioData = new Uint8Array(mapping, O.mmioData.offset, MMIO_DATA_MAX);
  }

  get exitReason(): number {
    return this.view.getUint32(O.exitReason, true);
  }

  /** Set to 1 to make the next (or a signal-interrupted) KVM_RUN return EINTR at once: the kick protocol. */
  get immediateExit(): number {
    return this.view.getUint8(O.immediateExit);
  }
  set immediateExit(v: number) {
    this.view.setUint8(O.immediateExit, v ? 1 : 0);
  }

  /** Ask for KVM_EXIT_IRQ_WINDOW_OPEN when the guest can take an interrupt (user-space irqchip only). */
  get requestInterruptWindow(): number {
    return this.view.getUint8(O.requestInterruptWindow);
  }
  set requestInterruptWindow(v: number) {
    this.view.setUint8(O.requestInterruptWindow, v ? 1 : 0);
  }

  get readyForInterruptInjection(): number {
    return this.view.getUint8(O.readyForInterruptInjection);
  }
  get ifFlag(): number {
    return this.view.getUint8(O.ifFlag);
  }
  /** KVM_RUN_X86_SMM and friends. */
  get flags(): number {
    return this.view.getUint16(O.flags, true);
  }
  get cr8(): bigint {
    return this.view.getBigUint64(O.cr8, true);
  }
  set cr8(v: bigint) {
    this.view.setBigUint64(O.cr8, BigInt.asUintN(64, v), true);
  }
  get apicBase(): bigint {
    return this.view.getBigUint64(O.apicBase, true);
  }

  get hardwareExitReason(): bigint {
    return this.view.getBigUint64(O.hwReason, true);
  }
  get exception(): { exception: number; errorCode: number } {
    return { exception: this.view.getUint32(O.exException, true), errorCode: this.view.getUint32(O.exErrorCode, true) };
  }

  get released(): boolean {
    return this.view.byteLength === 0;
  }

  /** Drops every view of the mapping; call before munmap. Later accesses throw RangeError. */
  release(): void {
    this.view = new DataView(EMPTY);
    this.bytes = new Uint8Array(EMPTY);
    this.mmioData = new Uint8Array(EMPTY);
  }

  /** The current exit as plain data (copies the data bytes). */
  decode(): KvmExit {
    const reason = this.exitReason;
    const d = this.view;
    switch (reason) {
      case K.KVM_EXIT_IO:
        return {
          reason: 'io',
          direction: this.io.direction === K.KVM_EXIT_IO_OUT ? 'out' : 'in',
          size: this.io.size,
          port: this.io.port,
          count: this.io.count,
          data: this.io.data.slice(),
        };
      case K.KVM_EXIT_MMIO: {
        const len = Math.min(this.mmio.len, MMIO_DATA_MAX);
        return {
          reason: 'mmio',
          physAddr: this.mmio.physAddr,
          len,
          isWrite: this.mmio.isWrite,
          data: this.mmioData.slice(0, len),
        };
      }
      case K.KVM_EXIT_HLT:
        return { reason: 'hlt' };
      case K.KVM_EXIT_SHUTDOWN:
        return { reason: 'shutdown' };
      case K.KVM_EXIT_INTR:
        return { reason: 'intr' };
      case K.KVM_EXIT_IRQ_WINDOW_OPEN:
        return { reason: 'irq-window-open' };
      case K.KVM_EXIT_UNKNOWN:
        return { reason: 'unknown', hardwareExitReason: this.hardwareExitReason };
      case K.KVM_EXIT_EXCEPTION:
        return { reason: 'exception', ...this.exception };
      case K.KVM_EXIT_DEBUG:
        return {
          reason: 'debug',
          exception: d.getUint32(O.debugException, true),
          pc: d.getBigUint64(O.debugPc, true),
          dr6: d.getBigUint64(O.debugDr6, true),
          dr7: d.getBigUint64(O.debugDr7, true),
        };
      case K.KVM_EXIT_HYPERCALL:
        return {
          reason: 'hypercall',
          nr: d.getBigUint64(O.hcNr, true),
          args: Array.from({ length: O.hcArgs.length ?? 0 }, (_, i) => d.getBigUint64(O.hcArgs.offset + 8 * i, true)),
          ret: d.getBigUint64(O.hcRet, true),
          longmode: d.getUint32(O.hcLongmode, true),
        };
      case K.KVM_EXIT_FAIL_ENTRY:
        return {
          reason: 'fail-entry',
          hardwareEntryFailureReason: this.failEntry.hardwareEntryFailureReason,
          cpu: this.failEntry.cpu,
        };
      case K.KVM_EXIT_INTERNAL_ERROR:
        return { reason: 'internal-error', suberror: this.internal.suberror, data: this.internal.data };
      case K.KVM_EXIT_SYSTEM_EVENT:
        return { reason: 'system-event', type: this.systemEvent.type, data: this.systemEvent.data };
      default:
        return { reason: 'other', exitReason: reason };
    }
  }

  /** One line describing the current exit, for error messages. */
  describe(): string {
    const e = this.decode();
    switch (e.reason) {
      case 'io':
        return `io ${e.direction} port 0x${e.port.toString(16)} size ${e.size} count ${e.count}`;
      case 'mmio':
        return `mmio ${e.isWrite ? 'write' : 'read'} 0x${e.physAddr.toString(16)} len ${e.len}`;
      case 'internal-error':
        return `internal error, suberror ${e.suberror}${e.data.length ? ` data [${e.data.map((x) => hex(x)).join(', ')}]` : ''}`;
      case 'fail-entry':
        return `entry failed, hardware reason 0x${e.hardwareEntryFailureReason.toString(16)} on cpu ${e.cpu}`;
      case 'system-event':
        return `system event ${e.type}`;
      case 'other':
        return exitReasonName(e.exitReason);
      default:
        return e.reason;
    }
  }
}
