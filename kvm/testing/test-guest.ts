// Test support for kvm/*.test.ts: a VM with one vCPU in real mode and a small anonymous RAM mapping holding
// hand-assembled code, and a loop that runs it to the next exit. Not used outside tests.
import { existsSync } from 'node:fs';
import * as libc from '../../src/sys/libc.js';
import { Errno } from '../../src/sys/errno.js';
import { Kvm, KvmUnavailableError } from '../kvm.js';
import type { Vm } from '../vm.js';
import type { Vcpu } from '../vcpu.js';
import type { KvmRun } from '../run.js';
import type { CpuidEntry } from '../bindings/types.js';
import { KVM_MISSING_PREFIX } from '../../test/support/rig-provides.js';

/** Null when /dev/kvm can be used, otherwise a one-line reason for testIf. */
export function kvmMissing(): string | null {
  if (!existsSync('/dev/kvm')) return `${KVM_MISSING_PREFIX}: /dev/kvm does not exist on this host`;
  try {
    Kvm.open().close();
    return null;
  } catch (e) {
    if (e instanceof KvmUnavailableError) return `${KVM_MISSING_PREFIX}: ${e.message}`;
    throw e;
  }
}

export interface GuestOptions {
  /** Bytes of RAM at guest-physical 0 (default 64 KiB). */
  ramSize?: number;
  /** Where the code goes and where execution starts, as a real-mode linear address with CS = 0 (default 0x1000). */
  entry?: number;
  /** Create the in-kernel PIC/IOAPIC/LAPIC before the vCPU (then `hlt` blocks instead of exiting). */
  irqchip?: boolean;
  /** Memory slot flags (KVM_MEM_*). */
  slotFlags?: number;
  /** The CPUID table to set (default: KVM_GET_SUPPORTED_CPUID as is). */
  cpuid?: (supported: CpuidEntry[]) => CpuidEntry[];
}

export class RealModeGuest {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly vcpu: Vcpu;
  readonly ramSize: number;
  /** Host address of guest RAM (for extra memory slots in tests). */
  readonly ramAddress: libc.Pointer;
  private ramView: Uint8Array | null;

  constructor(code: readonly number[], options: GuestOptions = {}) {
    const ramSize = options.ramSize ?? 0x10000;
    const entry = options.entry ?? 0x1000;
    if (entry + code.length > ramSize) throw new RangeError('guest code does not fit in RAM');
    this.kvm = Kvm.open();
    this.vm = this.kvm.createVm();
    this.ramSize = ramSize;
    this.ramAddress = libc.mmap(
      null,
      ramSize,
      libc.PROT_READ | libc.PROT_WRITE,
      libc.MAP_PRIVATE | libc.MAP_ANONYMOUS,
      -1,
      0,
    );
    this.ramView = new Uint8Array(libc.view(this.ramAddress, ramSize));
    this.ramView.set(code, entry);
    this.vm.setUserMemoryRegion({
      slot: 0,
      flags: options.slotFlags ?? 0,
      guestPhysAddr: 0,
      memorySize: ramSize,
      userspaceAddr: this.ramAddress,
    });
    if (options.irqchip) this.vm.createIrqchip();
    this.vcpu = this.vm.createVcpu(0);
    const supported = this.kvm.supportedCpuid();
    this.vcpu.setCpuid2(options.cpuid ? options.cpuid(supported) : supported);
    const sregs = this.vcpu.getSregs();
    for (const seg of [sregs.cs, sregs.ds, sregs.es, sregs.ss]) {
      seg.base = 0n;
      seg.selector = 0;
    }
    this.vcpu.setSregs(sregs);
    const regs = this.vcpu.getRegs();
    regs.rip = BigInt(entry);
    regs.rflags = 2n; // bit 1 is always set
    regs.rsp = 0x800n;
    this.vcpu.setRegs(regs);
  }

  /** Guest RAM (valid until close()). */
  get ram(): Uint8Array {
    if (!this.ramView) throw new Error('guest closed');
    return this.ramView;
  }

  /** KVM_RUN until it returns an exit (retrying EINTR/EAGAIN); returns the KvmRun to read it from. */
  runToExit(): KvmRun {
    for (;;) {
      const r = this.vcpu.runRaw();
      if (r === 0) return this.vcpu.run;
      if (r !== -Errno.EINTR && r !== -Errno.EAGAIN) throw new Error(`KVM_RUN failed: errno ${-r}`);
    }
  }

  close(): void {
    this.vm.close(); // closes the vCPU (views, munmap, fd) first
    this.ramView = null; // drop our view of RAM before unmapping it
    libc.munmap(this.ramAddress, this.ramSize);
    this.kvm.close();
  }
}
