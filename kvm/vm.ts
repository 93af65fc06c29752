// Vm: owns a KVM VM file descriptor — guest memory slots, the in-kernel irqchip and PIT, interrupt routing,
// irqfd/ioeventfd, the VM clock — and creates vCPUs.
import * as libc from '../src/sys/libc.js';
import * as K from './bindings/ioctls.js';
import { ioctlValue, ioctlBuffer } from './fd-ioctl.js';
import {
  encodeUserMemoryRegion,
  encodeIrqLevel,
  decodeIrqLevelStatus,
  encodeIrqRouting,
  encodeIrqfd,
  encodeIoeventfd,
  encodeMsi,
  encodeClockData,
  decodeClockData,
  encodeIrqchipRequest,
  encodeIrqchip,
  decodeIrqchip,
  encodePitConfig,
  encodePitState2,
  decodePitState2,
  encodeEnableCap,
  encodeDirtyLog,
} from './bindings/codec-vm.js';
import { sizeOf } from './bindings/structs.js';
import { featuresFrom, type VcpuFeatures } from './vcpu-features.js';
import { Vcpu } from './vcpu.js';
import type {
  UserMemoryRegion,
  IrqRoute,
  Irqfd,
  Ioeventfd,
  Msi,
  ClockData,
  IrqchipState,
  PitState2,
  EnableCap,
} from './bindings/types.js';

/** Arguments of setUserMemoryRegion; addresses and sizes may be numbers or bigints. */
export interface MemoryRegionArgs {
  slot: number;
  flags?: number;
  guestPhysAddr: bigint | number;
  memorySize: bigint | number;
  userspaceAddr: bigint | number;
}

/**
 * What a VM needs from the system fd it was created from (Kvm has both, cached). Passed in by Kvm.createVm rather
 * than imported, so this module stays below kvm.ts, as rust-vmm's VmFd gets the kvm_run size from Kvm.
 */
export interface KvmSystem {
  /** KVM_GET_VCPU_MMAP_SIZE: bytes to map per vCPU. */
  vcpuMmapSize(): number;
  /** KVM_GET_MSR_INDEX_LIST. */
  msrIndexList(): number[];
}

export class Vm {
  readonly fd: number;
  private readonly system: KvmSystem;
  private irqchip = false;
  private readonly vcpus = new Set<Vcpu>();
  private closed = false;

  private constructor(fd: number, system: KvmSystem) {
    this.fd = fd;
    this.system = system;
  }

  /** @internal Kvm.createVm hands over the new fd. */
  static adopt(fd: number, system: KvmSystem): Vm {
    return new Vm(fd, system);
  }

  /** KVM_CHECK_EXTENSION on the VM fd (KVM_CAP_CHECK_EXTENSION_VM): answers for this VM, e.g. KVM_CAP_XSAVE2. */
  checkExtension(cap: number): number {
    return ioctlValue(this.fd, K.KVM_CHECK_EXTENSION, cap);
  }

  /** Installs, moves or (memorySize 0) deletes memory slot `slot`. */
  setUserMemoryRegion(r: MemoryRegionArgs): void {
    const region: UserMemoryRegion = {
      slot: r.slot,
      flags: r.flags ?? 0,
      guestPhysAddr: BigInt(r.guestPhysAddr),
      memorySize: BigInt(r.memorySize),
      userspaceAddr: BigInt(r.userspaceAddr),
    };
    ioctlBuffer(this.fd, K.KVM_SET_USER_MEMORY_REGION, encodeUserMemoryRegion(region));
  }

  /** The 3-page region Intel VMX needs for real-mode emulation; must not overlap guest RAM or MMIO. */
  setTssAddr(addr: number): void {
    ioctlValue(this.fd, K.KVM_SET_TSS_ADDR, addr);
  }

  /** The one page of the VMX identity map for real mode (set it before creating vCPUs). */
  setIdentityMapAddr(addr: bigint | number): void {
    const arg = new BigUint64Array([BigInt(addr)]);
    ioctlBuffer(this.fd, K.KVM_SET_IDENTITY_MAP_ADDR, new Uint8Array(arg.buffer));
  }

  /** In-kernel PIC pair + IOAPIC (+ a LAPIC per vCPU created afterwards), with the default GSI routing. */
  createIrqchip(): void {
    ioctlValue(this.fd, K.KVM_CREATE_IRQCHIP);
    this.irqchip = true;
  }

  get hasIrqchip(): boolean {
    return this.irqchip;
  }

  /** In-kernel 8254 PIT (after createIrqchip); flags: KVM_PIT_SPEAKER_DUMMY. */
  createPit2(flags = 0): void {
    ioctlBuffer(this.fd, K.KVM_CREATE_PIT2, encodePitConfig(flags));
  }

  /** Sets GSI `irq` to `level` (1 asserted, 0 deasserted) on the in-kernel irqchip. */
  irqLine(irq: number, level: number): void {
    ioctlBuffer(this.fd, K.KVM_IRQ_LINE, encodeIrqLevel(irq, level));
  }

  /** As irqLine, returning KVM's status: > 0 delivered, 0 masked, -1 coalesced with one already pending. */
  irqLineStatus(irq: number, level: number): number {
    const buffer = encodeIrqLevel(irq, level);
    ioctlBuffer(this.fd, K.KVM_IRQ_LINE_STATUS, buffer);
    return decodeIrqLevelStatus(buffer);
  }

  /** Replaces the whole GSI routing table (the default one from createIrqchip is dropped). */
  setGsiRouting(routes: readonly IrqRoute[]): void {
    ioctlBuffer(this.fd, K.KVM_SET_GSI_ROUTING, encodeIrqRouting(routes));
  }

  /** Binds an eventfd to a GSI: a write to `fd` raises the interrupt (flags: KVM_IRQFD_FLAG_*). */
  irqfd(f: Irqfd): void {
    ioctlBuffer(this.fd, K.KVM_IRQFD, encodeIrqfd(f));
  }

  /** Makes guest writes to `addr` signal `fd` without an exit (flags: KVM_IOEVENTFD_FLAG_*). */
  ioeventfd(e: Ioeventfd): void {
    ioctlBuffer(this.fd, K.KVM_IOEVENTFD, encodeIoeventfd(e));
  }

  /** Injects an MSI; returns > 0 when delivered, 0 when the guest blocked it. */
  signalMsi(m: Msi): number {
    return ioctlBuffer(this.fd, K.KVM_SIGNAL_MSI, encodeMsi(m));
  }

  /** The VM's kvmclock (ns) and, per the flags, the host realtime and TSC it was sampled against. */
  getClock(): ClockData {
    const buffer = new Uint8Array(sizeOf('kvm_clock_data'));
    ioctlBuffer(this.fd, K.KVM_GET_CLOCK, buffer);
    return decodeClockData(buffer);
  }

  /** Sets the kvmclock; with KVM_CLOCK_REALTIME in flags KVM adds the realtime elapsed since `realtime`. */
  setClock(c: Partial<ClockData> & { clock: bigint }): void {
    ioctlBuffer(this.fd, K.KVM_SET_CLOCK, encodeClockData(c));
  }

  /** State of one in-kernel chip: KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE or _IOAPIC. */
  getIrqchip(chipId: number): IrqchipState {
    const buffer = encodeIrqchipRequest(chipId);
    ioctlBuffer(this.fd, K.KVM_GET_IRQCHIP, buffer);
    return decodeIrqchip(buffer);
  }

  setIrqchip(state: IrqchipState): void {
    ioctlBuffer(this.fd, K.KVM_SET_IRQCHIP, encodeIrqchip(state));
  }

  getPit2(): PitState2 {
    const buffer = new Uint8Array(sizeOf('kvm_pit_state2'));
    ioctlBuffer(this.fd, K.KVM_GET_PIT2, buffer);
    return decodePitState2(buffer);
  }

  setPit2(state: PitState2): void {
    ioctlBuffer(this.fd, K.KVM_SET_PIT2, encodePitState2(state));
  }

  /** Which vCPU id is the bootstrap processor (before any vCPU is created; default 0). */
  setBootCpuId(id: number): void {
    ioctlValue(this.fd, K.KVM_SET_BOOT_CPU_ID, id);
  }

  /** KVM_ENABLE_CAP on the VM (KVM_CAP_ENABLE_CAP_VM), e.g. KVM_CAP_X2APIC_API. */
  enableCap(c: EnableCap): void {
    ioctlBuffer(this.fd, K.KVM_ENABLE_CAP, encodeEnableCap(c));
  }

  /**
   * Fetches and clears the dirty-page bitmap of a slot created with KVM_MEM_LOG_DIRTY_PAGES: one bit per 4 KiB
   * page, `bitmap` must hold ceil(pages / 64) u64 words.
   */
  getDirtyLog(slot: number, bitmap: Uint8Array): void {
    if (bitmap.byteLength % 8 !== 0) throw new RangeError('getDirtyLog: bitmap must be a whole number of u64 words');
    ioctlBuffer(this.fd, K.KVM_GET_DIRTY_LOG, encodeDirtyLog(slot, libc.addressOf(bitmap)));
  }

  /** What this VM's vCPUs support, as plain data a worker thread can receive (see Vcpu.attach). */
  vcpuFeatures(): VcpuFeatures {
    return featuresFrom((cap) => this.checkExtension(cap), this.system.msrIndexList());
  }

  /** KVM_CREATE_VCPU plus the kvm_run mapping. The Vcpu owns its fd; closing the VM closes it too. */
  createVcpu(id: number): Vcpu {
    const fd = ioctlValue(this.fd, K.KVM_CREATE_VCPU, id);
    let vcpu: Vcpu;
    try {
      vcpu = Vcpu.create(fd, id, this.system.vcpuMmapSize(), this.vcpuFeatures(), () => this.vcpus.delete(vcpu));
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    this.vcpus.add(vcpu);
    return vcpu;
  }

  /** Closes the vCPUs this VM created (their kvm_run views first) and then the VM fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const vcpu of [...this.vcpus]) vcpu.close();
    libc.close(this.fd);
  }
}
