// KVM ioctl request numbers, computed as the kernel's _IO/_IOR/_IOW/_IOWR macros do (src/sys/ioc.ts:
// dir << 30 | size << 16 | type << 8 | nr), with the size taken from the struct layout table. `IOCTLS` lists every
// request tsvmm issues; kvm/bindings/abi.test.ts compares each with the value the C compiler gives for <linux/kvm.h>.
// The named constants of the KVM ABI (exit reasons, capabilities, flags) live in kvm/bindings/constants.ts and are
// re-exported here, so `import * as K from './ioctls.js'` gives both.
import { ioc, IOC_NONE, IOC_READ, IOC_WRITE } from '../../src/sys/ioc.js';
import { sizeOf, type StructName } from './structs.js';

export * from './constants.js';

/** The ioctl "type" (magic) byte of every KVM request. */
export const KVMIO = 0xae;

/** What the request's argument is, for the size field: a struct, a plain u64, or nothing. */
export type IoctlArg = StructName | 'u64' | null;

export interface IoctlDef {
  readonly name: string;
  readonly number: number;
  readonly dir: 'none' | 'r' | 'w' | 'rw';
  readonly nr: number;
  readonly arg: IoctlArg;
}

const argSize = (arg: IoctlArg): number => (arg === null ? 0 : arg === 'u64' ? 8 : sizeOf(arg));
const dirBits = { none: IOC_NONE, r: IOC_READ, w: IOC_WRITE, rw: IOC_READ | IOC_WRITE } as const;

const table: IoctlDef[] = [];
function def(name: string, dir: IoctlDef['dir'], nr: number, arg: IoctlArg = null): number {
  const number = ioc(dirBits[dir], KVMIO, nr, argSize(arg));
  table.push({ name, number, dir, nr, arg });
  return number;
}

// ---- /dev/kvm (system) ------------------------------------------------------------------------------------------
export const KVM_GET_API_VERSION = def('KVM_GET_API_VERSION', 'none', 0x00);
export const KVM_CREATE_VM = def('KVM_CREATE_VM', 'none', 0x01);
export const KVM_GET_MSR_INDEX_LIST = def('KVM_GET_MSR_INDEX_LIST', 'rw', 0x02, 'kvm_msr_list');
export const KVM_CHECK_EXTENSION = def('KVM_CHECK_EXTENSION', 'none', 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = def('KVM_GET_VCPU_MMAP_SIZE', 'none', 0x04);
export const KVM_GET_SUPPORTED_CPUID = def('KVM_GET_SUPPORTED_CPUID', 'rw', 0x05, 'kvm_cpuid2');
export const KVM_GET_MSR_FEATURE_INDEX_LIST = def('KVM_GET_MSR_FEATURE_INDEX_LIST', 'rw', 0x0a, 'kvm_msr_list');

// ---- VM fd ------------------------------------------------------------------------------------------------------
export const KVM_CREATE_VCPU = def('KVM_CREATE_VCPU', 'none', 0x41);
export const KVM_GET_DIRTY_LOG = def('KVM_GET_DIRTY_LOG', 'w', 0x42, 'kvm_dirty_log');
export const KVM_SET_USER_MEMORY_REGION = def('KVM_SET_USER_MEMORY_REGION', 'w', 0x46, 'kvm_userspace_memory_region');
export const KVM_SET_TSS_ADDR = def('KVM_SET_TSS_ADDR', 'none', 0x47);
export const KVM_SET_IDENTITY_MAP_ADDR = def('KVM_SET_IDENTITY_MAP_ADDR', 'w', 0x48, 'u64');
export const KVM_CREATE_IRQCHIP = def('KVM_CREATE_IRQCHIP', 'none', 0x60);
export const KVM_IRQ_LINE = def('KVM_IRQ_LINE', 'w', 0x61, 'kvm_irq_level');
export const KVM_GET_IRQCHIP = def('KVM_GET_IRQCHIP', 'rw', 0x62, 'kvm_irqchip');
// The header declares KVM_SET_IRQCHIP with _IOR although the kernel reads the struct; the number is what counts.
export const KVM_SET_IRQCHIP = def('KVM_SET_IRQCHIP', 'r', 0x63, 'kvm_irqchip');
export const KVM_IRQ_LINE_STATUS = def('KVM_IRQ_LINE_STATUS', 'rw', 0x67, 'kvm_irq_level');
export const KVM_SET_GSI_ROUTING = def('KVM_SET_GSI_ROUTING', 'w', 0x6a, 'kvm_irq_routing');
export const KVM_IRQFD = def('KVM_IRQFD', 'w', 0x76, 'kvm_irqfd');
export const KVM_CREATE_PIT2 = def('KVM_CREATE_PIT2', 'w', 0x77, 'kvm_pit_config');
export const KVM_SET_BOOT_CPU_ID = def('KVM_SET_BOOT_CPU_ID', 'none', 0x78);
export const KVM_IOEVENTFD = def('KVM_IOEVENTFD', 'w', 0x79, 'kvm_ioeventfd');
export const KVM_SET_CLOCK = def('KVM_SET_CLOCK', 'w', 0x7b, 'kvm_clock_data');
export const KVM_GET_CLOCK = def('KVM_GET_CLOCK', 'r', 0x7c, 'kvm_clock_data');
export const KVM_GET_PIT2 = def('KVM_GET_PIT2', 'r', 0x9f, 'kvm_pit_state2');
export const KVM_SET_PIT2 = def('KVM_SET_PIT2', 'w', 0xa0, 'kvm_pit_state2');
export const KVM_SIGNAL_MSI = def('KVM_SIGNAL_MSI', 'w', 0xa5, 'kvm_msi');
/** On the VM fd (KVM_CAP_ENABLE_CAP_VM) and on a vCPU fd (KVM_CAP_ENABLE_CAP): the same request number. */
export const KVM_ENABLE_CAP = def('KVM_ENABLE_CAP', 'w', 0xa3, 'kvm_enable_cap');

// ---- vCPU fd ----------------------------------------------------------------------------------------------------
export const KVM_RUN = def('KVM_RUN', 'none', 0x80);
export const KVM_GET_REGS = def('KVM_GET_REGS', 'r', 0x81, 'kvm_regs');
export const KVM_SET_REGS = def('KVM_SET_REGS', 'w', 0x82, 'kvm_regs');
export const KVM_GET_SREGS = def('KVM_GET_SREGS', 'r', 0x83, 'kvm_sregs');
export const KVM_SET_SREGS = def('KVM_SET_SREGS', 'w', 0x84, 'kvm_sregs');
export const KVM_GET_MSRS = def('KVM_GET_MSRS', 'rw', 0x88, 'kvm_msrs');
export const KVM_SET_MSRS = def('KVM_SET_MSRS', 'w', 0x89, 'kvm_msrs');
export const KVM_SET_SIGNAL_MASK = def('KVM_SET_SIGNAL_MASK', 'w', 0x8b, 'kvm_signal_mask');
export const KVM_GET_FPU = def('KVM_GET_FPU', 'r', 0x8c, 'kvm_fpu');
export const KVM_SET_FPU = def('KVM_SET_FPU', 'w', 0x8d, 'kvm_fpu');
export const KVM_GET_LAPIC = def('KVM_GET_LAPIC', 'r', 0x8e, 'kvm_lapic_state');
export const KVM_SET_LAPIC = def('KVM_SET_LAPIC', 'w', 0x8f, 'kvm_lapic_state');
export const KVM_SET_CPUID2 = def('KVM_SET_CPUID2', 'w', 0x90, 'kvm_cpuid2');
export const KVM_GET_CPUID2 = def('KVM_GET_CPUID2', 'rw', 0x91, 'kvm_cpuid2');
export const KVM_GET_MP_STATE = def('KVM_GET_MP_STATE', 'r', 0x98, 'kvm_mp_state');
export const KVM_SET_MP_STATE = def('KVM_SET_MP_STATE', 'w', 0x99, 'kvm_mp_state');
export const KVM_GET_VCPU_EVENTS = def('KVM_GET_VCPU_EVENTS', 'r', 0x9f, 'kvm_vcpu_events');
export const KVM_SET_VCPU_EVENTS = def('KVM_SET_VCPU_EVENTS', 'w', 0xa0, 'kvm_vcpu_events');
export const KVM_GET_DEBUGREGS = def('KVM_GET_DEBUGREGS', 'r', 0xa1, 'kvm_debugregs');
export const KVM_SET_DEBUGREGS = def('KVM_SET_DEBUGREGS', 'w', 0xa2, 'kvm_debugregs');
export const KVM_SET_TSC_KHZ = def('KVM_SET_TSC_KHZ', 'none', 0xa2);
export const KVM_GET_TSC_KHZ = def('KVM_GET_TSC_KHZ', 'none', 0xa3);
export const KVM_GET_XSAVE = def('KVM_GET_XSAVE', 'r', 0xa4, 'kvm_xsave');
export const KVM_SET_XSAVE = def('KVM_SET_XSAVE', 'w', 0xa5, 'kvm_xsave');
export const KVM_GET_XCRS = def('KVM_GET_XCRS', 'r', 0xa6, 'kvm_xcrs');
export const KVM_SET_XCRS = def('KVM_SET_XCRS', 'w', 0xa7, 'kvm_xcrs');
export const KVM_KVMCLOCK_CTRL = def('KVM_KVMCLOCK_CTRL', 'none', 0xad);
/** Reads as many bytes as KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) reports on the VM fd (at least 4096). */
export const KVM_GET_XSAVE2 = def('KVM_GET_XSAVE2', 'r', 0xcf, 'kvm_xsave');

/** Every request above, in declaration order: `{ name: 'KVM_RUN', number, dir, nr, arg }`. */
export const IOCTLS: readonly IoctlDef[] = Object.freeze(table);

const byNumber = new Map<number, string>();
for (const d of table) if (!byNumber.has(d.number)) byNumber.set(d.number, d.name);

/** The request's name for error messages (`ioctl(7, KVM_SET_SREGS) failed: EINVAL`). */
export function ioctlName(number: number): string {
  return byNumber.get(number) ?? `0x${number.toString(16)}`;
}
