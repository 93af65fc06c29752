/* s3-rtc's way back from S3: a real-mode stub that s3-rtc.c copies to its waking vector (firmware enters it with
 * CS:IP = vector >> 4 : 0), and the 32-bit code it jumps to. The stub reads PM1_STS first (its port patched in),
 * keeps the value in its own copy for resumed() to read, loads the guest's GDT (patched in), turns on protection and
 * far-jumps to resume32 (address patched in), which sets up the segments and the boot stack and calls resumed().
 * Position-independent within its segment: everything is addressed relative to wake_stub with DS = CS. */

    .data
    .code16
    .globl wake_stub, wake_stub_end, wake_pm1_sts_port, wake_pm1_sts, wake_gdtr, wake_entry
wake_stub:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    mov (wake_pm1_sts_port - wake_stub), %dx
    in %dx, %ax
    mov %ax, (wake_pm1_sts - wake_stub)
    lgdtl (wake_gdtr - wake_stub)
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    ljmpl *(wake_far - wake_stub)   /* m16:32: wake_entry, then selector 0x08 (32-bit code) */

    .balign 4
wake_pm1_sts_port: .word 0          /* PM1a_EVT_BLK + PM1_STS */
wake_pm1_sts:      .word 0          /* what the stub read there */
wake_gdtr:         .word 0          /* a copy of the guest's GDTR: limit, base */
                   .long 0
wake_far:
wake_entry:        .long 0          /* resume32 */
                   .word 0x08
wake_stub_end:

    .text
    .code32
    .globl resume32
resume32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $boot_stack_top, %esp
    call resumed
1:  cli
    hlt
    jmp 1b
