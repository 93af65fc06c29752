/* smp-outloop: outloop for two vCPUs (bench/exits, lock contention). A flat image for load address 0x7c00: the boot
 * vCPU enters 32-bit protected mode, optionally wakes vCPU 1 with INIT-SIPI-SIPI (the in-kernel LAPIC does the
 * rest), and both run the same `out %al, %dx` loop ITERATIONS times at once. The boot vCPU then waits for the
 * other to finish and writes 0 to isa-debug-exit (port 0xf4). With aps = 0 only the boot vCPU loops: the 1-vCPU
 * baseline runs exactly the same code in the same mode.
 * Patchable parameters (see bench/exits/guests.ts):
 *   offset 4:  "OUT2"          magic
 *   offset 8:  u32 iterations  per vCPU
 *   offset 12: u16 port
 *   offset 14: u8  value
 *   offset 15: u8  aps         0 = boot vCPU only, 1 = wake vCPU 1 too
 *   offset 16: u32 ap_done     set by vCPU 1 when its loop is over
 * No interrupts are ever enabled: the guest needs no IDT (and so never executes iret, which this host's emulator
 * cannot run in protected mode). */
    .set LAPIC_SVR, 0xfee000f0
    .set LAPIC_ICR_LOW, 0xfee00300
    .set LAPIC_ICR_HIGH, 0xfee00310
    .set SVR_APIC_ENABLE, 0x100
    .set ICR_INIT_ALL_BUT_SELF, 0x000c4500     /* delivery INIT, level assert, shorthand all-excluding-self */
    .set ICR_SIPI_ALL_BUT_SELF, 0x000c4600     /* delivery start-up; the vector (page number) is or-ed in */
    .set AP_VECTOR, 0x08                       /* ap_start is at 0x8000 (.org 0x400 from the 0x7c00 load address) */
    .set SEL_CODE32, 0x08
    .set SEL_DATA, 0x10
    .set DEBUG_EXIT_PORT, 0xf4

    .code16
    .text
    .globl start
start:
    jmp code
    .org 4
    .ascii "OUT2"
iterations: .long 10000
port:       .word 0xe9
value:      .byte 0
aps:        .byte 0
ap_done:    .long 0

code:
    cli
    cld
    ljmp $0, $1f
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax                       /* CR0.PE */
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $bsp32

    .code32
bsp32:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %esp
    cmpb $0, aps
    je 2f
    orl $SVR_APIC_ENABLE, LAPIC_SVR
    movl $0, LAPIC_ICR_HIGH
    movl $ICR_INIT_ALL_BUT_SELF, LAPIC_ICR_LOW
    movl $(ICR_SIPI_ALL_BUT_SELF | AP_VECTOR), LAPIC_ICR_LOW
    movl $(ICR_SIPI_ALL_BUT_SELF | AP_VECTOR), LAPIC_ICR_LOW
2:  call outloop
    cmpb $0, aps
    je 4f
3:  cmpl $0, ap_done                  /* wait for vCPU 1's loop */
    je 3b
4:  xor %eax, %eax
    out %al, $DEBUG_EXIT_PORT
5:  hlt
    jmp 5b

/* The loop itself, shared by both vCPUs: the same instructions as outloop's. */
outloop:
    mov iterations, %ecx
    mov port, %dx
    mov value, %al
    test %ecx, %ecx
    jz 7f
6:  out %al, %dx
    dec %ecx
    jnz 6b
7:  ret

    .align 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff          /* 0x08: 32-bit code, base 0, 4 GiB */
    .quad 0x00cf92000000ffff          /* 0x10: data, base 0, 4 GiB */
gdtr:
    .word gdtr - gdt - 1
    .long gdt

/* vCPU 1 starts here in real mode at CS:IP = 0800:0000 after the SIPI. */
    .code16
    .org 0x400
ap_start:
    cli
    ljmp $0, $8f
8:  xor %ax, %ax
    mov %ax, %ds
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $ap32

    .code32
ap32:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %esp
    call outloop
    lock incl ap_done
9:  cli
    hlt
    jmp 9b
