/* The AP start-up trampoline. Assembled into the image, copied by the BSP to 0x8000; an AP starts here in real
 * mode with CS:IP = 0800:0000. Everything it reads before the far jump is addressed relative to its start. */
#define SEL_CODE32 0x08
#define SEL_DATA   0x10
#define MAX_CPUS   16

    .text
    .code16
    .globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl ap_gdtr - ap_trampoline_start
    mov %cr0, %eax
    or $1, %eax                      /* CR0.PE */
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $ap_protected
    .align 4
    .word 0
ap_gdtr:
    .word 31                         /* the image's GDT: 4 descriptors */
    .long guest_gdt
ap_trampoline_end:

    .code32
ap_protected:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $1, %eax
    lock xadd %eax, ap_stack_next    /* eax = this AP's index */
    cmp $MAX_CPUS, %eax
    jae 2f
    inc %eax
    shl $12, %eax
    add $ap_stacks, %eax             /* top of stack index: ap_stacks + (index + 1) * 4096 */
    mov %eax, %esp
    call ap_main
2:  cli
    hlt
    jmp 2b
