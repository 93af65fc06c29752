/* enter_long_mode(cr3, entry): PAE, EFER.LME, paging, far jump to the 64-bit code segment, jump to entry. */
#define SEL_DATA   0x10
#define SEL_CODE64 0x18
#define MSR_EFER   0xc0000080
#define EFER_LME   0x100
#define CR4_PAE    0x20
#define CR0_PG     0x80000000

    .text
    .code32
    .globl enter_long_mode
enter_long_mode:
    mov 4(%esp), %eax
    mov 8(%esp), %ebx
    mov %eax, %cr3
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $CR0_PG, %eax
    mov %eax, %cr0
    ljmp $SEL_CODE64, $1f
    .code64
1:  mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x1000, %esp                /* same initial stack as tsvmm's loader (BOOT_STACK_TOP) */
    mov %ebx, %ebx                   /* zero-extend the entry address */
    jmp *%rbx
