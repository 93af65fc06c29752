// Plain-data shapes of the vCPU register state (mirroring struct kvm_regs / kvm_sregs). The encoders in
// kvm/structs.ts turn these into the kernel's binary layout; boot code and checkpoints use these shapes.

export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
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
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: DTable; idt: DTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** Pending external interrupt bitmap: 256 bits as four u64 words. */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}
