/* Interrupt stubs and the wait primitive behind irq-wait.h (see there for why this is not an iret). */
#define FIRST_VECTOR 0x20
#define STUB_SIZE 16

    .text
/* One 16-byte stub per vector 0x20-0xff: push the vector, go to the common path. */
    .globl irq_wait_stubs
    .balign STUB_SIZE
irq_wait_stubs:
    .set vec, FIRST_VECTOR
    .rept 256 - FIRST_VECTOR
    .balign STUB_SIZE
    pushl $vec
    jmp irq_wait_common
    .set vec, vec + 1
    .endr

irq_wait_common:
    pop %eax                    /* the vector */
    add $12, %esp               /* drop the CPU's frame: EIP, CS, EFLAGS (ring 0 to ring 0, no error code) */
    push %eax
    call irq_wait_record        /* counts it and sends the EOI */
    pop %eax
    cmpl $0, irq_wait_armed
    je guest_idle               /* nobody is waiting: idle, as the runtime's own stubs do */
    movl $0, irq_wait_armed
    mov irq_wait_esp, %esp      /* back into irq_wait's frame; IF is clear (interrupt gate) */
    pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret                         /* irq_wait returns the vector in EAX */

/* uint32_t irq_wait(void) */
    .globl irq_wait
irq_wait:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov %esp, irq_wait_esp
    movl $1, irq_wait_armed
1:  sti                         /* the interrupt shadow covers the hlt: an interrupt pending now wakes it */
    hlt
    cli                         /* woken without a vector (NMI, SMI): halt again */
    jmp 1b

    .bss
    .align 4
    .globl irq_wait_armed, irq_wait_esp
irq_wait_armed: .long 0
irq_wait_esp:   .long 0
