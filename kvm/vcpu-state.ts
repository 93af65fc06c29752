// The complete KVM state of one vCPU, read and applied in the orders KVM needs. The orders follow Firecracker's
// save_state/restore_state (src/vmm/src/vstate/vcpu/x86_64.rs), whose comments record the kernel's rules. QEMU's
// kvm_arch_put_registers keeps the same REGS-before-EVENTS, TSC-rate-before-MSRs and LAPIC-before-TSC-deadline
// rules but sets the MP state after the events rather than first. Call both with the vCPU outside KVM_RUN and,
// for events, with the other vCPUs stopped too.
import * as K from './bindings/constants.js';
import { Errno } from '../src/sys/errno.js';
import { isErrno } from './fd-ioctl.js';
import type { VcpuFeatures } from './vcpu-features.js';
import { sizeOf } from './bindings/structs.js';
import {
  decodeRegs,
  decodeSregs,
  decodeFpu,
  decodeXcrs,
  decodeVcpuEvents,
  decodeMpState,
  decodeDebugRegs,
  decodeMsrs,
  decodeCpuid2Reply,
  encodeCpuid2Request,
} from './bindings/codec-vcpu.js';
import type {
  CpuidEntry,
  DebugRegs,
  Fpu,
  MsrEntry,
  Regs,
  Sregs,
  VcpuEvents,
  VcpuState,
  Xcr,
} from './bindings/types.js';
import { hex } from '../src/util/hex.js';
import { describeSregs, sregsRuleBroken } from './sregs-rules.js';

/** A restored TSC frequency within this tolerance of the host's needs no scaling (QEMU/Firecracker: 250 ppm). */
const TSC_KHZ_TOLERANCE = 250e-6;

/** KVM refused part of a vCPU state. */
export class VcpuStateError extends Error {
  constructor(vcpuId: number, detail: string) {
    super(`vcpu ${vcpuId}: ${detail}`);
    this.name = 'VcpuStateError';
  }
}

/**
 * The register ioctls the two functions below use. kvm/vcpu.ts's Vcpu implements them (and offers getState/setState
 * on top): declaring them here keeps this module below vcpu.ts instead of in a cycle with it.
 */
export interface VcpuRegisters {
  readonly id: number;
  readonly features: VcpuFeatures;
  getMpState(): number;
  setMpState(state: number): void;
  getRegs(): Regs;
  setRegs(regs: Regs): void;
  getSregs(): Sregs;
  setSregs(sregs: Sregs): void;
  getFpu(): Fpu;
  setFpu(fpu: Fpu): void;
  getXsave(): Uint8Array;
  setXsave(area: Uint8Array): void;
  getXcrs(): Xcr[];
  setXcrs(xcrs: readonly Xcr[]): void;
  getDebugRegs(): DebugRegs;
  setDebugRegs(regs: DebugRegs): void;
  /** The LAPIC page, or null when the VM has no in-kernel LAPIC. */
  tryGetLapic(): Uint8Array | null;
  setLapic(regs: Uint8Array): void;
  getTscKhz(): number;
  setTscKhz(khz: number): void;
  getCpuid2(): CpuidEntry[];
  setCpuid2(entries: readonly CpuidEntry[]): void;
  /** The MSRs a state carries that this vCPU can read, and the ones it cannot. */
  readableMsrs(): { readable: number[]; unreadable: number[] };
  /** The readable prefix of `indices`, in order. */
  getMsrs(indices: readonly number[]): MsrEntry[];
  /** How many of `entries` KVM accepted (it stops at the first refusal). */
  setMsrs(entries: readonly MsrEntry[]): number;
  getVcpuEvents(): VcpuEvents;
  setVcpuEvents(events: VcpuEvents): void;
}

export function saveVcpuState(v: VcpuRegisters): VcpuState {
  const f = v.features;
  // KVM_GET_MP_STATE runs kvm_apic_accept_events(), which can change LAPIC and vCPU state (a pending INIT/SIPI
  // is processed): read it first so everything read after it is consistent with it.
  const mpState = f.mpState ? v.getMpState() : K.KVM_MP_STATE_RUNNABLE;
  const regs = v.getRegs();
  const sregs = v.getSregs();
  const fpu = v.getFpu();
  const xsave = f.xsaveSize > 0 ? v.getXsave() : null;
  const xcrs = f.xcrs ? v.getXcrs() : null;
  const debugregs = f.debugregs ? v.getDebugRegs() : null;
  // KVM_GET_LAPIC may itself update LAPIC state (e.g. sync pending PIR bits) before returning it.
  const lapic = v.tryGetLapic();
  const tscKhz = f.getTscKhz ? v.getTscKhz() : null;
  const cpuid = v.getCpuid2();
  const { readable } = v.readableMsrs();
  const msrs = v.getMsrs(readable);
  if (msrs.length !== readable.length) {
    throw new VcpuStateError(v.id, `MSR ${hex(readable[msrs.length])} could be read before but not now`);
  }
  // Events last: the other GETs may change what is pending (and SREGS also carries a pending interrupt).
  const events = f.vcpuEvents ? v.getVcpuEvents() : null;
  return { cpuid, tscKhz, mpState, regs, sregs, fpu, xsave, xcrs, debugregs, lapic, msrs, events };
}

export interface RestoreOptions {
  /**
   * Set the state's CPUID table too (the default). Since Linux 5.16 KVM fixes a vCPU's CPUID at its first KVM_RUN
   * and afterwards accepts only the same table again, so a different table can go only on a vCPU that has not run —
   * a checkpoint restored into a new VM. A reset passes false: as in QEMU, CPUID is the vCPU's model, set once when
   * the vCPU is created; a reset puts back the registers, MSRs, LAPIC and events, never the CPUID.
   */
  cpuid?: boolean;
}

/**
 * Refuses (VcpuStateError) a state this vCPU cannot take, without changing the vCPU: what restoreVcpuState would
 * otherwise find out only half-way, after the registers before it are set — an MSR that KVM does not list
 * (KVM_GET_MSR_INDEX_LIST: KVM_SET_MSRS refuses it), a TSC rate KVM cannot scale to, a LAPIC without an in-kernel
 * irqchip, special registers that break KVM's own consistency rules (sregs-rules.ts). Values within an MSR KVM
 * lists are KVM's to judge: a restore that KVM still refuses is undone by its caller (cpr/flows/snapshot.ts).
 */
export function checkVcpuState(v: VcpuRegisters, s: VcpuState): void {
  const listed = new Set(v.features.msrIndices);
  const unknown = s.msrs.filter((m) => !listed.has(m.index)).map((m) => m.index);
  if (unknown.length > 0)
    throw new VcpuStateError(
      v.id,
      `the state has MSR${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 8).map(hex).join(', ')}${unknown.length > 8 ? ', …' : ''}, which this KVM does not list (KVM_GET_MSR_INDEX_LIST)`,
    );
  if (s.tscKhz !== null && v.features.getTscKhz && !v.features.tscControl) {
    const current = v.getTscKhz();
    if (Math.abs(current - s.tscKhz) > Math.round(s.tscKhz * TSC_KHZ_TOLERANCE))
      throw new VcpuStateError(
        v.id,
        `guest TSC runs at ${s.tscKhz} kHz, this host at ${current} kHz, and KVM cannot scale it`,
      );
  }
  if (s.lapic && v.tryGetLapic() === null)
    throw new VcpuStateError(v.id, 'state has a LAPIC but this VM has no in-kernel irqchip');
  const broken = sregsRuleBroken(s.sregs);
  if (broken !== null)
    throw new VcpuStateError(v.id, `KVM would refuse the special registers (${broken}): ${describeSregs(s.sregs)}`);
}

export function restoreVcpuState(v: VcpuRegisters, s: VcpuState, { cpuid = true }: RestoreOptions = {}): void {
  const f = v.features;

  // 1. CPUID first: it decides which MSRs and XSAVE components exist.
  if (cpuid && s.cpuid.length > 0) {
    try {
      v.setCpuid2(s.cpuid);
    } catch (e) {
      if (!isErrno(e, Errno.EINVAL)) throw e;
      throw new VcpuStateError(
        v.id,
        'KVM refused the CPUID table of the state (EINVAL): since Linux 5.16 a vCPU ' +
          'that has run takes only the table it already has',
      );
    }
  }

  // 2. TSC frequency before anything that holds TSC values (the TSC MSR, the TSC deadline): those are
  //    interpreted at the guest's rate.
  if (s.tscKhz !== null && f.getTscKhz) {
    const current = v.getTscKhz();
    if (Math.abs(current - s.tscKhz) > Math.round(s.tscKhz * TSC_KHZ_TOLERANCE)) {
      if (!f.tscControl) {
        throw new VcpuStateError(
          v.id,
          `guest TSC runs at ${s.tscKhz} kHz, this host at ${current} kHz, and KVM cannot scale it`,
        );
      }
      v.setTscKhz(s.tscKhz);
    }
  }

  // 3. MP state early: some SET ioctls depend on whether the vCPU is the BSP/halted/waiting for SIPI.
  if (f.mpState) v.setMpState(s.mpState);

  // 4. General registers. KVM_SET_REGS clears a pending exception, so it must precede KVM_SET_VCPU_EVENTS.
  v.setRegs(s.regs);

  // 5. Special registers: also restores the APIC base MSR, which KVM_SET_LAPIC needs in place (6).
  try {
    v.setSregs(s.sregs);
  } catch (e) {
    if (!isErrno(e, Errno.EINVAL)) throw e;
    // KVM checks these against each other and against the CPUID set in step 1: name them, so the refusal says why.
    throw new VcpuStateError(v.id, `KVM refused the special registers (EINVAL): ${describeSregs(s.sregs)}`);
  }

  // 6. FPU/SSE/AVX state. The XSAVE area contains the legacy FXSAVE image kvm_fpu describes, so with XSAVE the
  //    FPU is set through it alone; KVM_SET_FPU is the fallback for KVM without KVM_CAP_XSAVE.
  if (s.xsave && f.xsaveSize > 0) v.setXsave(s.xsave);
  else v.setFpu(s.fpu);
  if (s.xcrs && f.xcrs) v.setXcrs(s.xcrs);

  if (s.debugregs && f.debugregs) v.setDebugRegs(s.debugregs);

  // 7. LAPIC after SREGS (APIC base) and before the MSRs: the TSC-deadline MSR restores only into a LAPIC
  //    already in TSC-deadline mode.
  if (s.lapic) {
    if (v.tryGetLapic() === null)
      throw new VcpuStateError(v.id, 'state has a LAPIC but this VM has no in-kernel irqchip');
    v.setLapic(s.lapic);
  }

  // 8. MSRs. KVM stops at the first MSR it refuses; note it and carry on with the rest so one bad MSR names
  //    itself instead of silently dropping everything after it.
  const refused: number[] = [];
  let rest = s.msrs;
  while (rest.length > 0) {
    const n = v.setMsrs(rest);
    if (n === rest.length) break;
    refused.push(rest[n].index);
    rest = rest.slice(n + 1);
  }
  if (refused.length > 0)
    throw new VcpuStateError(v.id, `KVM refused MSR${refused.length > 1 ? 's' : ''} ${refused.map(hex).join(', ')}`);

  // 9. Events last: restores the pending/injected exception, interrupt, NMI and SMI that the steps above
  //    (SET_REGS above all) cleared or disturbed.
  if (s.events && f.vcpuEvents) v.setVcpuEvents(eventsForSet(s.events));
}

/**
 * KVM_GET_VCPU_EVENTS marks in `flags` which optional parts it filled; for KVM_SET_VCPU_EVENTS the NMI-pending
 * and SIPI-vector parts are applied only when flagged, so a full restore adds those two flags.
 */
export function eventsForSet(e: VcpuEvents): VcpuEvents {
  return { ...e, flags: e.flags | K.KVM_VCPUEVENT_VALID_NMI_PENDING | K.KVM_VCPUEVENT_VALID_SIPI_VECTOR };
}

/**
 * Runs the decoders of saveVcpuState on zeroed buffers: a checkpoint reads vCPU state only once the guest is
 * stopped, so this is the only way to have that code compiled before the pause (a vCPU's ioctls cannot be issued
 * while it runs).
 */
export function warmVcpuStateDecoders(): void {
  decodeRegs(new Uint8Array(sizeOf('kvm_regs')));
  decodeSregs(new Uint8Array(sizeOf('kvm_sregs')));
  decodeFpu(new Uint8Array(sizeOf('kvm_fpu')));
  decodeXcrs(new Uint8Array(sizeOf('kvm_xcrs')));
  decodeVcpuEvents(new Uint8Array(sizeOf('kvm_vcpu_events')));
  decodeMpState(new Uint8Array(sizeOf('kvm_mp_state')));
  decodeDebugRegs(new Uint8Array(sizeOf('kvm_debugregs')));
  decodeMsrs(new Uint8Array(sizeOf('kvm_msrs')), 0);
  decodeCpuid2Reply(encodeCpuid2Request(1));
}
