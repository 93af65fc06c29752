// Plain-data shapes of the KVM structures (vCPU registers and state, irqchip, PIT, clock, routing). The codecs in
// kvm/bindings/codec-vcpu.ts and kvm/bindings/codec-vm.ts turn these into the kernel's binary layout (kvm/bindings/structs.ts); boot code,
// device glue and checkpoints use these shapes. Everything here is plain data: numbers for fields of 32 bits or
// less, bigints for 64-bit fields, Uint8Arrays for opaque byte areas.

export interface Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

/** struct kvm_segment. `type` is the 4-bit descriptor type; the flags are 0/1. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** struct kvm_dtable (GDTR/IDTR). */
export interface DTable {
  base: bigint;
  limit: number;
}

/** struct kvm_sregs. */
export interface Sregs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DTable;
  idt: DTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** Pending external interrupt bitmap: 256 bits as four u64 words. */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

/** struct kvm_fpu (the legacy FXSAVE image KVM keeps when XSAVE is not in use). */
export interface Fpu {
  /** ST0-ST7 / MM0-MM7: 8 registers of 16 bytes (80-bit value plus padding). */
  fpr: Uint8Array;
  fcw: number;
  fsw: number;
  /** Abridged tag word, FXSAVE format. */
  ftwx: number;
  lastOpcode: number;
  lastIp: bigint;
  lastDp: bigint;
  /** XMM0-XMM15: 16 registers of 16 bytes. */
  xmm: Uint8Array;
  mxcsr: number;
}

/** struct kvm_msr_entry. */
export interface MsrEntry {
  index: number;
  data: bigint;
}

/** struct kvm_cpuid_entry2. `index` is the subleaf (ECX) and matters when flags has KVM_CPUID_FLAG_SIGNIFCANT_INDEX. */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** struct kvm_xcr (XCR0 is xcr 0). */
export interface Xcr {
  xcr: number;
  value: bigint;
}

/** struct kvm_vcpu_events: pending/injected exception, interrupt, NMI, SMI and the interrupt shadow. */
export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  /** KVM_VCPUEVENT_VALID_* bits saying which fields are meaningful. */
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFault: { pending: number };
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}

/** struct kvm_debugregs. */
export interface DebugRegs {
  db: [bigint, bigint, bigint, bigint];
  dr6: bigint;
  dr7: bigint;
  flags: bigint;
}

/** struct kvm_pic_state: one 8259A as KVM models it. */
export interface PicState {
  lastIrr: number;
  irr: number;
  imr: number;
  isr: number;
  priorityAdd: number;
  irqBase: number;
  readRegSelect: number;
  poll: number;
  specialMask: number;
  initState: number;
  autoEoi: number;
  rotateOnAutoEoi: number;
  specialFullyNestedMode: number;
  init4: number;
  elcr: number;
  elcrMask: number;
}

/** struct kvm_ioapic_state. Each redirection entry is the raw 64-bit register (see decodeRedirEntry). */
export interface IoapicState {
  baseAddress: bigint;
  ioregsel: number;
  id: number;
  irr: number;
  redirtbl: bigint[];
}

/** struct kvm_irqchip, by chip: the two PICs or the IOAPIC. */
export type IrqchipState = { chipId: 0 | 1; pic: PicState } | { chipId: 2; ioapic: IoapicState };

/** struct kvm_pit_channel_state (one 8254 counter). */
export interface PitChannelState {
  count: number;
  latchedCount: number;
  countLatched: number;
  statusLatched: number;
  status: number;
  readState: number;
  writeState: number;
  writeLatch: number;
  rwMode: number;
  mode: number;
  bcd: number;
  gate: number;
  /** Host ktime (ns) at which the count was loaded. */
  countLoadTime: bigint;
}

/** struct kvm_pit_state2. */
export interface PitState2 {
  channels: [PitChannelState, PitChannelState, PitChannelState];
  /** KVM_PIT_FLAGS_* */
  flags: number;
}

/** struct kvm_clock_data: the VM's kvmclock in ns, with the host clocks it was read against. */
export interface ClockData {
  clock: bigint;
  /** KVM_CLOCK_* */
  flags: number;
  realtime: bigint;
  hostTsc: bigint;
}

/** struct kvm_userspace_memory_region. */
export interface UserMemoryRegion {
  slot: number;
  /** KVM_MEM_* */
  flags: number;
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
}

/** struct kvm_irq_routing_entry: a GSI routed to an irqchip pin or to an MSI message. */
export type IrqRoute =
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number; flags?: number; devid?: number };

/** struct kvm_msi. */
export interface Msi {
  addressLo: number;
  addressHi: number;
  data: number;
  flags?: number;
  devid?: number;
}

/** struct kvm_irqfd. */
export interface Irqfd {
  fd: number;
  gsi: number;
  /** KVM_IRQFD_FLAG_* */
  flags?: number;
  resampleFd?: number;
}

/** struct kvm_ioeventfd. */
export interface Ioeventfd {
  fd: number;
  addr: bigint;
  /** 1, 2, 4 or 8 bytes; 0 matches any length (KVM_CAP_IOEVENTFD_ANY_LENGTH). */
  len: number;
  datamatch?: bigint;
  /** KVM_IOEVENTFD_FLAG_* */
  flags?: number;
}

/** struct kvm_enable_cap. */
export interface EnableCap {
  cap: number;
  flags?: number;
  args?: bigint[];
}

/**
 * Everything KVM holds for one vCPU that a checkpoint must carry to recreate it in a new process. Optional parts
 * are null when this KVM (or this VM: no in-kernel irqchip → no LAPIC) does not have them.
 */
export interface VcpuState {
  /** The CPUID table the vCPU runs with (KVM_GET_CPUID2). */
  cpuid: CpuidEntry[];
  /** Guest TSC frequency (KVM_GET_TSC_KHZ), null when KVM cannot report it. */
  tscKhz: number | null;
  /** KVM_MP_STATE_* */
  mpState: number;
  regs: Regs;
  sregs: Sregs;
  /**
   * KVM_GET_FPU. When `xsave` is present it is authoritative and `fpu` is only KVM's view of its legacy part
   * (KVM leaves e.g. MXCSR 0 here while SSE is in its init state); `fpu` is restored only when `xsave` is null.
   */
  fpu: Fpu;
  /** The kvm_xsave area (4096 bytes or KVM_CAP_XSAVE2's size), null without KVM_CAP_XSAVE. */
  xsave: Uint8Array | null;
  /** Extended control registers (XCR0), null without KVM_CAP_XCRS. */
  xcrs: Xcr[] | null;
  debugregs: DebugRegs | null;
  /** The 1 KiB LAPIC register page, null without an in-kernel LAPIC. */
  lapic: Uint8Array | null;
  /** Every MSR of KVM_GET_MSR_INDEX_LIST this vCPU can read, in list order. */
  msrs: MsrEntry[];
  events: VcpuEvents | null;
}
