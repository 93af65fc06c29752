/* Multiboot entry for the test guests: the header, a flat GDT of our own, bss clearing, the idle loop, and the
 * interrupt/exception stubs. Built with -DAOUT_KLUDGE the header also carries the a.out-kludge addresses (flag 16),
 * which the flat .bin form of a guest needs.
 *
 * Host rules (KVM emulator on this host, see examples/guests/README.md): no iret, no int n/int3. So handlers never
 * return: an IRQ stub drops the 12-byte frame (EIP, CS, EFLAGS; no privilege change, no error code), calls the C
 * handler and jumps back into the idle loop, which is the only place interrupts are ever enabled. */

#define MB_MAGIC 0x1BADB002
#ifdef AOUT_KLUDGE
#define MB_FLAGS 0x00010003   /* page-align modules, memory info, address fields valid */
#else
#define MB_FLAGS 0x00000003   /* page-align modules, memory info */
#endif

#define SEL_CODE32 0x08
#define SEL_DATA   0x10

    .section .multiboot, "a"
    .align 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
#ifdef AOUT_KLUDGE
    .long mb_header         /* header_addr */
    .long __image_start     /* load_addr */
    .long __load_end        /* load_end_addr */
    .long __bss_end         /* bss_end_addr */
    .long _start            /* entry_addr */
#endif

    .text
    .globl _start
_start:
    cli
    cld
    /* Clear bss ourselves too (before anything lives there), so a loader that forgets is caught by nothing. */
    mov %eax, %esi
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl
    mov %esi, mb_magic
    mov %ebx, mb_info
    mov $boot_stack_top, %esp
    lgdt guest_gdtr
    ljmp $SEL_CODE32, $1f
1:  mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    call guest_start            /* runtime init, then the guest's main(); returns only to exit */
    push $0
    call debug_exit

/* The idle loop: the only place interrupts are enabled. Resets the stack, so whatever called it is gone. */
    .globl guest_idle
guest_idle:
    mov $boot_stack_top, %esp
2:  sti
    hlt
    jmp 2b

/* Exceptions 0-31: push the vector and report (never returns). */
    .macro EXC n
    .globl exc_\n
exc_\n:
    push $\n
    jmp exception_common
    .endm
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXC \n
    .endr
exception_common:
    call on_exception           /* on_exception(vector, then the CPU's frame words) */
3:  cli
    hlt
    jmp 3b

/* PIC IRQs 0-15 (vectors 0x20-0x2f): drop the frame, run on_irq(irq), back to idle. */
    .macro IRQ n
    .globl irq_\n
irq_\n:
    add $12, %esp
    push $\n
    call on_irq
    jmp guest_idle
    .endm
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    IRQ \n
    .endr

/* Any other vector (LAPIC spurious 0xff, stray IPIs): drop the frame, back to idle, no EOI. */
    .globl irq_other
irq_other:
    add $12, %esp
    jmp guest_idle

    .section .rodata
    .align 4
    .globl exc_stubs, irq_stubs
exc_stubs:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .long exc_\n
    .endr
irq_stubs:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .long irq_\n
    .endr

    .data
    .align 8
/* Our own GDT: the loader's may be anywhere (or, per the multiboot spec, invalid). 0x18 is for lm-shim. */
    .globl guest_gdt, guest_gdtr
guest_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: 32-bit code, base 0, 4 GiB, accessed */
    .quad 0x00cf93000000ffff    /* 0x10: data, base 0, 4 GiB, accessed */
    .quad 0x00af9b000000ffff    /* 0x18: 64-bit code (L=1) */
guest_gdt_end:
    .align 4
    .word 0
guest_gdtr:
    .word guest_gdt_end - guest_gdt - 1
    .long guest_gdt

    .globl mb_magic, mb_info
mb_magic: .long 0
mb_info:  .long 0

    .bss
    .align 16
    .globl boot_stack_top
boot_stack:
    .skip 16384
boot_stack_top:
