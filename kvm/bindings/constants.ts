// Named constants of the KVM ABI (<linux/kvm.h>, <asm/kvm.h>) that tsvmm uses. Every export whose name starts
// with `KVM_` is compared with the header by kvm/bindings/abi.test.ts, so only names the header defines belong here.

/** The only KVM API version there has ever been (KVM_GET_API_VERSION). */
export const KVM_API_VERSION = 12;

// ---- exit reasons (kvm_run.exit_reason) -------------------------------------------------------------------------
export const KVM_EXIT_UNKNOWN = 0; // hw.hardware_exit_reason holds the vendor's reason
export const KVM_EXIT_EXCEPTION = 1; // ex.exception / ex.error_code
export const KVM_EXIT_IO = 2; // port I/O: io.*
export const KVM_EXIT_HYPERCALL = 3; // hypercall.* (KVM_CAP_EXIT_HYPERCALL)
export const KVM_EXIT_DEBUG = 4; // debug.arch.* (guest debugging)
export const KVM_EXIT_HLT = 5; // hlt without an in-kernel irqchip
export const KVM_EXIT_MMIO = 6; // access to guest-physical memory no memslot covers: mmio.*
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7; // request_interrupt_window satisfied
export const KVM_EXIT_SHUTDOWN = 8; // triple fault
export const KVM_EXIT_FAIL_ENTRY = 9; // VM entry failed: fail_entry.*
export const KVM_EXIT_INTR = 10; // a signal (a kick) interrupted KVM_RUN
export const KVM_EXIT_SET_TPR = 11;
export const KVM_EXIT_TPR_ACCESS = 12;
export const KVM_EXIT_NMI = 16;
export const KVM_EXIT_INTERNAL_ERROR = 17; // internal.suberror: emulation failure and friends
export const KVM_EXIT_SYSTEM_EVENT = 24; // system_event.type: shutdown/reset/crash (PSCI-style, Hyper-V)
export const KVM_EXIT_IOAPIC_EOI = 26; // split irqchip only
export const KVM_EXIT_X86_RDMSR = 29; // user-space MSR handling (KVM_CAP_X86_USER_SPACE_MSR)
export const KVM_EXIT_X86_WRMSR = 30;
export const KVM_EXIT_DIRTY_RING_FULL = 31;
export const KVM_EXIT_X86_BUS_LOCK = 33;
export const KVM_EXIT_NOTIFY = 37;

// ---- kvm_run.io.direction ---------------------------------------------------------------------------------------
export const KVM_EXIT_IO_IN = 0; // guest reads: user space fills the data area
export const KVM_EXIT_IO_OUT = 1; // guest writes: the data area holds the bytes

// ---- kvm_run.internal.suberror ----------------------------------------------------------------------------------
export const KVM_INTERNAL_ERROR_EMULATION = 1; // the instruction emulator gave up
export const KVM_INTERNAL_ERROR_SIMUL_EX = 2; // exception while delivering an exception
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3; // unexpected exit while delivering an event
export const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;

// ---- kvm_run.system_event.type ----------------------------------------------------------------------------------
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
export const KVM_SYSTEM_EVENT_RESET = 2;
export const KVM_SYSTEM_EVENT_CRASH = 3;
export const KVM_SYSTEM_EVENT_WAKEUP = 4;
export const KVM_SYSTEM_EVENT_SUSPEND = 5;
export const KVM_SYSTEM_EVENT_SEV_TERM = 6;

// ---- kvm_mp_state.mp_state (x86 uses the first five) ------------------------------------------------------------
export const KVM_MP_STATE_RUNNABLE = 0; // running, or ready to run
export const KVM_MP_STATE_UNINITIALIZED = 1; // an AP that has not received INIT
export const KVM_MP_STATE_INIT_RECEIVED = 2; // an AP waiting for SIPI
export const KVM_MP_STATE_HALTED = 3; // hlt, waiting for an interrupt
export const KVM_MP_STATE_SIPI_RECEIVED = 4;

// ---- capabilities (KVM_CHECK_EXTENSION) -------------------------------------------------------------------------
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_HLT = 1;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_SET_TSS_ADDR = 4;
export const KVM_CAP_EXT_CPUID = 7;
export const KVM_CAP_NR_VCPUS = 9; // recommended maximum vCPUs per VM
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_PIT = 11;
export const KVM_CAP_MP_STATE = 14;
export const KVM_CAP_COALESCED_MMIO = 15;
export const KVM_CAP_SYNC_MMU = 16;
export const KVM_CAP_IRQ_ROUTING = 25;
export const KVM_CAP_IRQ_INJECT_STATUS = 26;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_PIT2 = 33;
export const KVM_CAP_SET_BOOT_CPU_ID = 34;
export const KVM_CAP_PIT_STATE2 = 35;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
export const KVM_CAP_ADJUST_CLOCK = 39; // KVM_GET/SET_CLOCK; the value is the KVM_CLOCK_* flags supported
export const KVM_CAP_INTERNAL_ERROR_DATA = 40;
export const KVM_CAP_VCPU_EVENTS = 41;
export const KVM_CAP_DEBUGREGS = 50;
export const KVM_CAP_ENABLE_CAP = 54;
export const KVM_CAP_XSAVE = 55;
export const KVM_CAP_XCRS = 56;
export const KVM_CAP_TSC_CONTROL = 60; // KVM_SET_TSC_KHZ on a vCPU
export const KVM_CAP_GET_TSC_KHZ = 61;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;
export const KVM_CAP_KVMCLOCK_CTRL = 76;
export const KVM_CAP_SIGNAL_MSI = 77;
export const KVM_CAP_READONLY_MEM = 81;
export const KVM_CAP_IRQFD_RESAMPLE = 82;
export const KVM_CAP_ENABLE_CAP_VM = 98;
export const KVM_CAP_IOEVENTFD_NO_LENGTH = 100;
export const KVM_CAP_CHECK_EXTENSION_VM = 105;
export const KVM_CAP_SPLIT_IRQCHIP = 121;
export const KVM_CAP_IOEVENTFD_ANY_LENGTH = 122;
export const KVM_CAP_MAX_VCPU_ID = 128;
export const KVM_CAP_X2APIC_API = 129;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_GET_MSR_FEATURES = 153;
export const KVM_CAP_EXCEPTION_PAYLOAD = 164;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_XSAVE2 = 208; // the value is the kvm_xsave size KVM_GET_XSAVE2 fills

// ---- in-kernel irqchip ids (kvm_irqchip.chip_id, kvm_irq_routing_irqchip.irqchip) -------------------------------
export const KVM_IRQCHIP_PIC_MASTER = 0;
export const KVM_IRQCHIP_PIC_SLAVE = 1;
export const KVM_IRQCHIP_IOAPIC = 2;
export const KVM_NR_IRQCHIPS = 3;
export const KVM_IOAPIC_NUM_PINS = 24;

// ---- KVM_IRQFD flags --------------------------------------------------------------------------------------------
export const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0; // remove the irqfd
export const KVM_IRQFD_FLAG_RESAMPLE = 1 << 1; // level-triggered: resamplefd is signalled on EOI

// ---- KVM_IOEVENTFD flags ----------------------------------------------------------------------------------------
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0; // signal only when the written value equals datamatch
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1; // addr is an I/O port, not a guest-physical address
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2; // remove the ioeventfd

// ---- KVM_SET_GSI_ROUTING entry types ----------------------------------------------------------------------------
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
export const KVM_IRQ_ROUTING_MSI = 2;
export const KVM_MSI_VALID_DEVID = 1 << 0; // kvm_msi.flags / routing entry flags: devid is valid

// ---- memory slots -----------------------------------------------------------------------------------------------
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0; // track writes for KVM_GET_DIRTY_LOG
export const KVM_MEM_READONLY = 1 << 1; // guest writes exit as MMIO (KVM_CAP_READONLY_MEM)

// ---- PIT --------------------------------------------------------------------------------------------------------
export const KVM_PIT_SPEAKER_DUMMY = 1; // KVM_CREATE_PIT2: emulate port 0x61 speaker bits in-kernel
export const KVM_PIT_FLAGS_HPET_LEGACY = 0x1; // kvm_pit_state2.flags
export const KVM_PIT_FLAGS_SPEAKER_DATA_ON = 0x2;

// ---- kvm_clock_data.flags ---------------------------------------------------------------------------------------
export const KVM_CLOCK_TSC_STABLE = 2; // the clock is derived from a stable TSC (read-only)
export const KVM_CLOCK_REALTIME = 1 << 2; // `realtime` is valid (GET) / advance by elapsed realtime (SET)
export const KVM_CLOCK_HOST_TSC = 1 << 3; // `host_tsc` is valid

// ---- kvm_vcpu_events.flags --------------------------------------------------------------------------------------
export const KVM_VCPUEVENT_VALID_NMI_PENDING = 0x01; // SET: apply nmi.pending
export const KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x02; // SET: apply sipi_vector
export const KVM_VCPUEVENT_VALID_SHADOW = 0x04; // interrupt.shadow is valid
export const KVM_VCPUEVENT_VALID_SMM = 0x08; // smi.* is valid
export const KVM_VCPUEVENT_VALID_PAYLOAD = 0x10; // exception payload (KVM_CAP_EXCEPTION_PAYLOAD)
export const KVM_VCPUEVENT_VALID_TRIPLE_FAULT = 0x20; // triple_fault.pending (KVM_CAP_X86_TRIPLE_FAULT_EVENT)

// ---- kvm_vcpu_events.interrupt.shadow -----------------------------------------------------------------------------
export const KVM_X86_SHADOW_INT_MOV_SS = 0x01; // interrupts blocked for one instruction after MOV/POP SS
export const KVM_X86_SHADOW_INT_STI = 0x02; // interrupts blocked for one instruction after STI

// ---- kvm_cpuid_entry2.flags -------------------------------------------------------------------------------------
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0; // (sic) the entry is selected by index (ECX) too

// ---- sizes ------------------------------------------------------------------------------------------------------
export const KVM_APIC_REG_SIZE = 0x400; // kvm_lapic_state.regs
export const KVM_MAX_XCRS = 16;
export const KVM_NR_INTERRUPTS = 256;
/** The kvm_pio data page's offset in the vCPU mapping, in pages (the io.data_offset area). */
export const KVM_PIO_PAGE_OFFSET = 1;
