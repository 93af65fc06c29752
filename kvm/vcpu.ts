// Vcpu: one KVM vCPU — its fd, the mmapped kvm_run area (as a KvmRun view) and typed get/set of every piece of
// register state. A Vcpu made by Vm.createVcpu owns its fd; Vcpu.attach maps kvm_run for an fd owned elsewhere
// (a worker thread running the vCPU it was handed). getState/setState (kvm/vcpu-state.ts) move the complete state.
import * as libc from '../src/sys/libc.js';
import { Errno } from '../src/sys/errno.js';
import * as K from './bindings/ioctls.js';
import { ioctlValue, ioctlBuffer, isErrno } from './fd-ioctl.js';
import { KvmRun } from './run.js';
import { sizeOf } from './bindings/structs.js';
import {
  encodeRegs,
  decodeRegs,
  encodeSregs,
  decodeSregs,
  encodeFpu,
  decodeFpu,
  encodeMsrs,
  decodeMsrs,
  encodeCpuid2,
  encodeCpuid2Request,
  decodeCpuid2Reply,
  encodeXcrs,
  decodeXcrs,
  encodeVcpuEvents,
  decodeVcpuEvents,
  encodeMpState,
  decodeMpState,
  encodeDebugRegs,
  decodeDebugRegs,
  LAPIC_STATE_SIZE,
  XSAVE_MIN_SIZE,
} from './bindings/codec-vcpu.js';
import { encodeEnableCap } from './bindings/codec-vm.js';
import {
  saveVcpuState,
  restoreVcpuState,
  checkVcpuState,
  type RestoreOptions,
  type VcpuRegisters,
} from './vcpu-state.js';
import type { VcpuFeatures } from './vcpu-features.js';
import type {
  Regs,
  Sregs,
  Fpu,
  MsrEntry,
  CpuidEntry,
  Xcr,
  VcpuEvents,
  DebugRegs,
  EnableCap,
  VcpuState,
} from './bindings/types.js';

/**
 * Hyper-V's synthetic MSRs (0x40000000-0x4000FFFF, the range the Hyper-V TLFS gives them). KVM_GET_MSR_INDEX_LIST
 * lists the ones KVM's Hyper-V emulation implements wherever KVM has it (always up to Linux 6.7, with
 * CONFIG_KVM_HYPERV since), and the host can read them on any vCPU. But a guest reaches them only when its CPUID
 * presents Hyper-V (leaf 0x40000001 EAX = "Hv#1"), and tsvmm's CPUID presents KVM (kvm/cpuid.ts): for tsvmm's guests
 * they stay at KVM's defaults, and some of them only count time — HV_X64_MSR_VP_RUNTIME (0x40000010, the vCPU
 * thread's run time) and HV_X64_MSR_TIME_REF_COUNT (0x40000020, read-only, derived from the VM clock). So a vCPU
 * state leaves them out, as QEMU saves Hyper-V MSRs only for the hv-* features it was asked to present. Presenting
 * Hyper-V one day means deciding per MSR, as QEMU does.
 */
const HYPERV_MSR_FIRST = 0x40000000;
const HYPERV_MSR_LAST = 0x4000ffff;

/** Whether a vCPU state carries this MSR of KVM_GET_MSR_INDEX_LIST (all but Hyper-V's, see HYPERV_MSR_FIRST). */
export function msrSaved(index: number): boolean {
  return index < HYPERV_MSR_FIRST || index > HYPERV_MSR_LAST;
}

/** KVM_GET_MSRS/SET_MSRS refuse 256 or more entries per call (MAX_IO_MSRS); stay well below. */
const MSR_CHUNK = 128;
/** KVM_GET_CPUID2 fails with E2BIG below the vCPU's entry count; KVM allows at most 256 today. */
const CPUID_GET_ENTRIES = 256;
/** The sigset size KVM_SET_SIGNAL_MASK expects on x86-64 (the kernel's sigset_t). */
const KERNEL_SIGSET_BYTES = 8;

export class Vcpu implements VcpuRegisters {
  readonly fd: number;
  readonly id: number;
  readonly run: KvmRun;
  readonly mmapSize: number;
  private readonly runAddress: libc.Pointer;
  private readonly ownsFd: boolean;
  private readonly onClose: (() => void) | null;
  /** What the state functions rely on: vm.vcpuFeatures() of the VM that made this vCPU. */
  readonly features: VcpuFeatures;
  private closed = false;
  /** Result of the one-time MSR probe: the indices KVM_GET_MSRS can read, and the ones it refused. */
  private msrProbe: { readable: number[]; unreadable: number[] } | null = null;
  /** Whether KVM_GET_LAPIC works (an in-kernel LAPIC exists); null until first asked. */
  private lapicPresent: boolean | null = null;

  private constructor(
    fd: number,
    id: number,
    mmapSize: number,
    features: VcpuFeatures,
    ownsFd: boolean,
    onClose: (() => void) | null,
  ) {
    this.fd = fd;
    this.id = id;
    this.mmapSize = mmapSize;
    this.features = features;
    this.ownsFd = ownsFd;
    this.onClose = onClose;
    this.runAddress = libc.mmap(null, mmapSize, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0);
    this.run = new KvmRun(libc.view(this.runAddress, mmapSize));
  }

  /** @internal Vm.createVcpu: the Vcpu owns `fd`. */
  static create(fd: number, id: number, mmapSize: number, features: VcpuFeatures, onClose: () => void): Vcpu {
    return new Vcpu(fd, id, mmapSize, features, true, onClose);
  }

  /**
   * Maps kvm_run for a vCPU fd created elsewhere (e.g. in the main thread, used from a worker). Does not own the
   * fd: close() unmaps but leaves the fd open. `features` is the creating VM's vm.vcpuFeatures(), sent along.
   */
  static attach(fd: number, id: number, mmapSize: number, features: VcpuFeatures): Vcpu {
    return new Vcpu(fd, id, mmapSize, features, false, null);
  }

  /** KVM_RUN: 0, or -errno. -EINTR (a kick or signal) and -EAGAIN are normal; the caller reads run.exitReason. */
  runRaw(): number {
    return libc.ioctlRaw(this.fd, K.KVM_RUN, 0);
  }

  // ---- registers --------------------------------------------------------------------------------------------

  getRegs(): Regs {
    const b = new Uint8Array(sizeOf('kvm_regs'));
    ioctlBuffer(this.fd, K.KVM_GET_REGS, b);
    return decodeRegs(b);
  }

  setRegs(regs: Regs): void {
    ioctlBuffer(this.fd, K.KVM_SET_REGS, encodeRegs(regs));
  }

  getSregs(): Sregs {
    const b = new Uint8Array(sizeOf('kvm_sregs'));
    ioctlBuffer(this.fd, K.KVM_GET_SREGS, b);
    return decodeSregs(b);
  }

  setSregs(sregs: Sregs): void {
    ioctlBuffer(this.fd, K.KVM_SET_SREGS, encodeSregs(sregs));
  }

  getFpu(): Fpu {
    const b = new Uint8Array(sizeOf('kvm_fpu'));
    ioctlBuffer(this.fd, K.KVM_GET_FPU, b);
    return decodeFpu(b);
  }

  setFpu(fpu: Fpu): void {
    ioctlBuffer(this.fd, K.KVM_SET_FPU, encodeFpu(fpu));
  }

  /** The XSAVE area (KVM_GET_XSAVE2 with KVM_CAP_XSAVE2's size when available, else the 4 KiB KVM_GET_XSAVE). */
  getXsave(): Uint8Array {
    const { xsaveSize, xsave2 } = this.features;
    if (xsaveSize === 0) throw new Error(`vcpu ${this.id}: KVM lacks KVM_CAP_XSAVE`);
    const b = new Uint8Array(xsave2 ? xsaveSize : XSAVE_MIN_SIZE);
    ioctlBuffer(this.fd, xsave2 ? K.KVM_GET_XSAVE2 : K.KVM_GET_XSAVE, b);
    return b;
  }

  /**
   * KVM_SET_XSAVE reads exactly the size KVM uses for this vCPU: a shorter area (from a host with fewer dynamic
   * features) is zero-padded; a longer one is accepted only if the extra bytes are all zero.
   */
  setXsave(area: Uint8Array): void {
    const { xsaveSize, xsave2 } = this.features;
    if (xsaveSize === 0) throw new Error(`vcpu ${this.id}: KVM lacks KVM_CAP_XSAVE`);
    const size = xsave2 ? xsaveSize : XSAVE_MIN_SIZE;
    let b = area;
    if (area.byteLength < size) {
      b = new Uint8Array(size);
      b.set(area);
    } else if (area.byteLength > size) {
      if (area.subarray(size).some((x) => x !== 0)) {
        throw new RangeError(
          `vcpu ${this.id}: xsave area of ${area.byteLength} bytes holds state beyond this host's ${size}`,
        );
      }
      b = area.subarray(0, size);
    }
    ioctlBuffer(this.fd, K.KVM_SET_XSAVE, b);
  }

  getXcrs(): Xcr[] {
    const b = new Uint8Array(sizeOf('kvm_xcrs'));
    ioctlBuffer(this.fd, K.KVM_GET_XCRS, b);
    return decodeXcrs(b);
  }

  setXcrs(xcrs: readonly Xcr[]): void {
    ioctlBuffer(this.fd, K.KVM_SET_XCRS, encodeXcrs(xcrs));
  }

  /**
   * Reads MSRs in order. KVM stops at the first MSR it cannot read, so the result is the readable prefix:
   * `result.length < indices.length` means `indices[result.length]` failed.
   */
  getMsrs(indices: readonly number[]): MsrEntry[] {
    const out: MsrEntry[] = [];
    for (let i = 0; i < indices.length; i += MSR_CHUNK) {
      const chunk = indices.slice(i, i + MSR_CHUNK);
      const b = encodeMsrs(chunk);
      const n = ioctlBuffer(this.fd, K.KVM_GET_MSRS, b);
      out.push(...decodeMsrs(b, n));
      if (n < chunk.length) break;
    }
    return out;
  }

  /** Writes MSRs in order; returns how many KVM accepted (it stops at the first refusal). */
  setMsrs(entries: readonly MsrEntry[]): number {
    let done = 0;
    for (let i = 0; i < entries.length; i += MSR_CHUNK) {
      const chunk = entries.slice(i, i + MSR_CHUNK);
      const n = ioctlBuffer(this.fd, K.KVM_SET_MSRS, encodeMsrs(chunk));
      done += n;
      if (n < chunk.length) break;
    }
    return done;
  }

  /**
   * The MSRs a vCPU state carries: those of KVM_GET_MSR_INDEX_LIST that tsvmm saves (msrSaved) and this vCPU can
   * actually read. Probed once (after CPUID is set, since CPUID decides which MSRs exist) by reading the whole list
   * and skipping each index KVM stops at.
   */
  readableMsrs(): { readable: number[]; unreadable: number[] } {
    if (!this.msrProbe) {
      const readable: number[] = [];
      const unreadable: number[] = [];
      let rest = this.features.msrIndices.filter(msrSaved);
      while (rest.length > 0) {
        const got = this.getMsrs(rest);
        readable.push(...got.map((e) => e.index));
        if (got.length === rest.length) break;
        unreadable.push(rest[got.length]);
        rest = rest.slice(got.length + 1);
      }
      this.msrProbe = { readable, unreadable };
    }
    return { readable: this.msrProbe.readable.slice(), unreadable: this.msrProbe.unreadable.slice() };
  }

  /** The 1 KiB LAPIC register page (needs the in-kernel irqchip). */
  getLapic(): Uint8Array {
    const b = new Uint8Array(LAPIC_STATE_SIZE);
    ioctlBuffer(this.fd, K.KVM_GET_LAPIC, b);
    return b;
  }

  setLapic(regs: Uint8Array): void {
    if (regs.byteLength !== LAPIC_STATE_SIZE)
      throw new RangeError(`vcpu ${this.id}: LAPIC state must be ${LAPIC_STATE_SIZE} bytes`);
    ioctlBuffer(this.fd, K.KVM_SET_LAPIC, regs);
  }

  /** The LAPIC page, or null when the VM has no in-kernel LAPIC (KVM answers EINVAL/ENXIO; remembered). */
  tryGetLapic(): Uint8Array | null {
    if (this.lapicPresent === false) return null;
    try {
      const lapic = this.getLapic();
      this.lapicPresent = true;
      return lapic;
    } catch (e) {
      if (this.lapicPresent === null && isErrno(e, Errno.EINVAL, Errno.ENXIO)) {
        this.lapicPresent = false;
        return null;
      }
      throw e;
    }
  }

  getVcpuEvents(): VcpuEvents {
    const b = new Uint8Array(sizeOf('kvm_vcpu_events'));
    ioctlBuffer(this.fd, K.KVM_GET_VCPU_EVENTS, b);
    return decodeVcpuEvents(b);
  }

  setVcpuEvents(events: VcpuEvents): void {
    ioctlBuffer(this.fd, K.KVM_SET_VCPU_EVENTS, encodeVcpuEvents(events));
  }

  /** KVM_MP_STATE_* */
  getMpState(): number {
    const b = new Uint8Array(sizeOf('kvm_mp_state'));
    ioctlBuffer(this.fd, K.KVM_GET_MP_STATE, b);
    return decodeMpState(b);
  }

  setMpState(state: number): void {
    ioctlBuffer(this.fd, K.KVM_SET_MP_STATE, encodeMpState(state));
  }

  getDebugRegs(): DebugRegs {
    const b = new Uint8Array(sizeOf('kvm_debugregs'));
    ioctlBuffer(this.fd, K.KVM_GET_DEBUGREGS, b);
    return decodeDebugRegs(b);
  }

  setDebugRegs(regs: DebugRegs): void {
    ioctlBuffer(this.fd, K.KVM_SET_DEBUGREGS, encodeDebugRegs(regs));
  }

  /** Sets the CPUID table. Since Linux 5.16 this must happen before the first KVM_RUN (or repeat the same table). */
  setCpuid2(entries: readonly CpuidEntry[]): void {
    ioctlBuffer(this.fd, K.KVM_SET_CPUID2, encodeCpuid2(entries));
  }

  /** The vCPU's CPUID table as KVM holds it (with the bits KVM keeps current: OSXSAVE, APIC, leaf 0xD sizes). */
  getCpuid2(): CpuidEntry[] {
    for (let n = CPUID_GET_ENTRIES; ; n *= 2) {
      // Older KVM does not report the entry count: see encodeCpuid2Request.
      const b = encodeCpuid2Request(n);
      try {
        ioctlBuffer(this.fd, K.KVM_GET_CPUID2, b);
        return decodeCpuid2Reply(b);
      } catch (e) {
        if (!isErrno(e, Errno.E2BIG) || n >= 16 * CPUID_GET_ENTRIES) throw e;
      }
    }
  }

  /** Guest TSC frequency in kHz (KVM_CAP_GET_TSC_KHZ). */
  getTscKhz(): number {
    return ioctlValue(this.fd, K.KVM_GET_TSC_KHZ);
  }

  /** Scales the guest TSC (KVM_CAP_TSC_CONTROL). */
  setTscKhz(khz: number): void {
    ioctlValue(this.fd, K.KVM_SET_TSC_KHZ, khz);
  }

  /** Tells KVM the guest was paused, so its kvmclock watchdog does not fire on resume (EINVAL if kvmclock is off). */
  kvmclockCtrl(): void {
    ioctlValue(this.fd, K.KVM_KVMCLOCK_CTRL);
  }

  /**
   * The signal mask the thread has while inside KVM_RUN (a 64-bit kernel sigset, bit n-1 blocks signal n), so a
   * kick signal blocked elsewhere is taken only there; null: KVM_RUN keeps the thread's own mask.
   */
  setSignalMask(mask: bigint | null): void {
    if (mask === null) {
      ioctlBuffer(this.fd, K.KVM_SET_SIGNAL_MASK, null);
      return;
    }
    const b = new Uint8Array(sizeOf('kvm_signal_mask') + KERNEL_SIGSET_BYTES);
    const d = new DataView(b.buffer);
    d.setUint32(0, KERNEL_SIGSET_BYTES, true);
    d.setBigUint64(sizeOf('kvm_signal_mask'), BigInt.asUintN(64, mask), true);
    ioctlBuffer(this.fd, K.KVM_SET_SIGNAL_MASK, b);
  }

  /** KVM_ENABLE_CAP on the vCPU. */
  enableCap(c: EnableCap): void {
    ioctlBuffer(this.fd, K.KVM_ENABLE_CAP, encodeEnableCap(c));
  }

  // ---- complete state ---------------------------------------------------------------------------------------

  /** Everything a checkpoint needs to recreate this vCPU (call with the vCPU stopped, outside KVM_RUN). */
  getState(): VcpuState {
    return saveVcpuState(this);
  }

  /**
   * Applies a state from getState in the order KVM needs (see kvm/vcpu-state.ts). `{ cpuid: false }` leaves the
   * CPUID table alone, as a reset must on a vCPU that has run.
   */
  setState(state: VcpuState, options?: RestoreOptions): void {
    restoreVcpuState(this, state, options);
  }

  /** Refuses a state setState would fail on part-way (see checkVcpuState); changes nothing. */
  checkState(state: VcpuState): void {
    checkVcpuState(this, state);
  }

  // ---- teardown ---------------------------------------------------------------------------------------------

  get isClosed(): boolean {
    return this.closed;
  }

  /** Drops the kvm_run views, unmaps, and closes the fd if this Vcpu owns it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.run.release();
    libc.munmap(this.runAddress, this.mmapSize);
    if (this.ownsFd) libc.close(this.fd);
    this.onClose?.();
  }
}
