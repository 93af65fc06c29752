// Pieces of the small 32-bit guests that drive QEMU's edu device passed through (edu-passthrough and edu-cpr tests),
// as GNU assembler text for test/support/asm.ts. Each guest writes its own flow; what they share is here.

/** The PCI slot tsvmm gives the first vfio-pci function when there is no virtio device. */
export const EDU_SLOT = 1;

/** The config address register value (port 0xcf8) for register `reg` of edu's function. */
export const eduCfgAddress = (reg: number): number => (0x80000000 | (EDU_SLOT << 11) | reg) >>> 0;

/**
 * MSI on, to vector 0x40 of APIC 0, and the guest ready to take it: expects %ebx = the config address of edu's
 * MSI capability. Writes the message address and data, sets MSI enable, installs `handler` as IDT gate 0x40 (the
 * guest's `idt`, see EDU_IDT), enables the local APIC and interrupts.
 */
export const EDU_MSI_TO_VECTOR_0X40 = `
  lea 4(%ebx), %eax
  mov $0xfee00000, %ecx
  call cfgwrite
  lea 8(%ebx), %eax
  xor %ecx, %ecx
  call cfgwrite
  lea 12(%ebx), %eax
  mov $0x40, %ecx
  call cfgwrite
  mov %ebx, %eax
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfe, %dx
  mov $0x0001, %ax
  out %ax, %dx
  lea handler, %eax
  mov %ax, idt + 0x40 * 8
  shr $16, %eax
  mov %ax, idt + 0x40 * 8 + 6
  mov %cs, %ax
  mov %ax, idt + 0x40 * 8 + 2
  movw $0x8e00, idt + 0x40 * 8 + 4
  lidt idtr
  orl $0x100, 0xfee000f0
  sti
`;

/** Subroutines: config space through ports 0xcf8/0xcfc, and output to COM1 (strings, hex words). */
export const EDU_GUEST_ROUTINES = `
# eax = config address register value -> eax = dword
cfgread:
  push %edx
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfc, %dx
  in %dx, %eax
  pop %edx
  ret
# eax = config address, ecx = dword
cfgwrite:
  push %edx
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfc, %dx
  mov %ecx, %eax
  out %eax, %dx
  pop %edx
  ret
# edi = NUL-terminated string to COM1
puts:
  push %eax
  push %edx
  mov $0x3f8, %dx
1:movb (%edi), %al
  test %al, %al
  jz 2f
  out %al, %dx
  inc %edi
  jmp 1b
2:pop %edx
  pop %eax
  ret
# eax as 8 hex digits, then a newline (puthex) or not (puthex8)
puthex:
  call puthex8
  push %eax
  push %edx
  mov $0x3f8, %dx
  mov $10, %al
  out %al, %dx
  pop %edx
  pop %eax
  ret
puthex8:
  push %eax
  push %ecx
  push %edx
  push %ebx
  mov %eax, %ebx
  mov $0x3f8, %dx
  mov $8, %ecx
1:rol $4, %ebx
  mov %ebx, %eax
  and $0xf, %eax
  movb hexdigits(%eax), %al
  out %al, %dx
  loop 1b
  pop %ebx
  pop %edx
  pop %ecx
  pop %eax
  ret
hexdigits: .ascii "0123456789abcdef"
`;

/** The IDT (gates 0..0x40, all absent until EDU_MSI_TO_VECTOR_0X40 fills 0x40) and its descriptor. */
export const EDU_IDT = `
.balign 8
idtr: .word 0x40 * 8 + 7
  .long idt
.balign 8
idt: .fill 0x41 * 8, 1, 0
`;
