/* realmode-long: the shape of a long real-mode instruction test (as PC test suites have one), to see where its time
 * goes under a VMM. A multiboot v1 image linked at 32 KiB (header flags 0): the entry (32-bit protected mode) loads
 * its own GDT, drops through a 16-bit protected-mode segment to real mode and runs there, with segments 0 and its
 * own stack. Then, like such a suite:
 *
 *   - ROUNDS rounds of 8 short instruction sequences, each run the suite's way: copied into a 32-byte code buffer
 *     (self-modifying code), padded with nops, entered through a switch to "big real mode" and back (lgdt, CR0.PE on,
 *     GS loaded from a flat 4 GiB descriptor, PE off) with its input registers swapped in, its results swapped out
 *     and checked; the first round prints "realmode-long: PASS <name>" (or FAIL) for each (COM1, polling LSR.THRE per byte);
 *   - 6 timing loops of 1,000,000 iterations (`addr32 loop` around one instruction) between two rdtsc, each
 *     printing "realmode-long: loop N: C cycles/iteration";
 *   - "realmode-long: done R rounds, F failures", then isa-debug-exit with F (0 → status 1).
 *
 * ROUNDS is 128. No interrupts are enabled, no BIOS is used: it runs the same under QEMU's -kernel and tsvmm's. */
    .set COM1, 0x3f8
    .set DEBUG_EXIT, 0xf4
    .set BUF_LEN, 32

    .text
    .code32
    .globl start
mb_header:
    .long 0x1BADB002, 0, -0x1BADB002
rounds: .word 128

start:
    cli
    lgdtl gdt_descr
    ljmp $0x08, $1f                    /* 16-bit protected-mode code segment */
1:  .code16
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr0, %eax
    and $~1, %eax
    mov %eax, %cr0
    ljmp $0, $real
real:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $stack_top, %esp
    cld
    call serial_init

    movl $0, failures
    movw $0, round
next_round:
    mov $tests, %si
next_test:
    mov (%si), %bx                     /* sequence: u16 code, u16 length, u16 name, u32 expected eax */
    test %bx, %bx
    jz round_done
    push %si
    call run_in_big_real_mode          /* %si = test entry */
    pop %si
    mov $msg_pass, %bx
    mov 6(%si), %eax
    cmp %eax, out_eax
    je 2f
    incl failures
    mov $msg_fail, %bx
2:  cmpw $0, round
    jne 3f
    push %si
    mov %bx, %si
    call puts
    pop %si
    push %si
    mov 4(%si), %si
    call puts
    mov $msg_nl, %si
    call puts
    pop %si
3:  add $10, %si
    jmp next_test
round_done:
    incw round
    mov round, %ax
    cmp rounds, %ax
    jb next_round

    /* Timing loops: rdtsc, 1,000,000 x (insn; addr32 loop), rdtsc. */
    xor %di, %di
4:  mov %di, %bx
    shl $1, %bx
    mov loops(%bx), %bx
    mov $1000000, %ecx
    push %di                           /* the loop bodies use %edi */
    call *%bx
    pop %di
    sub %ebp, %eax                     /* end - start (low 32 bits) */
    mov $1000000, %ecx
    xor %edx, %edx
    div %ecx
    push %eax
    mov $msg_loop, %si
    call puts
    mov %di, %ax
    movzwl %ax, %eax
    call putu
    mov $msg_colon, %si
    call puts
    pop %eax
    call putu
    mov $msg_cycles, %si
    call puts
    inc %di
    cmp $6, %di
    jb 4b

    mov $msg_done, %si
    call puts
    movzwl round, %eax
    call putu
    mov $msg_rounds, %si
    call puts
    mov failures, %eax
    call putu
    mov $msg_failures, %si
    call puts
    mov failures, %eax
    mov $DEBUG_EXIT, %dx
    out %al, %dx
5:  hlt
    jmp 5b

/* Copies the sequence at test entry %si into the buffer, enters big real mode, runs it on in_regs, saves out_eax. */
run_in_big_real_mode:
    mov (%si), %bx
    mov 2(%si), %cx
    mov $buf, %di
    push %si
    mov %bx, %si
    rep movsb                          /* self-modifying: the buffer is about to run */
    mov $buf + BUF_LEN, %cx
    sub %di, %cx
    mov $0x90, %al
    rep stosb
    pop %si
    lgdtl gdt_descr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    mov $0x18, %ax
    mov %ax, %gs                       /* flat 4 GiB data: big real mode once PE is off again */
    mov %cr0, %eax
    and $~1, %eax
    mov %eax, %cr0
    mov $0x12345678, %eax
    mov $0x9abcdef0, %ebx
    mov $3, %ecx
    mov $0x000f0000, %edx
buf: .fill BUF_LEN, 1, 0x90
    mov %eax, out_eax
    xor %ax, %ax
    mov %ax, %gs
    cld
    ret

serial_init:
    mov $COM1 + 3, %dx
    in %dx, %al
    or $0x80, %al
    out %al, %dx                       /* DLAB */
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx                       /* 115200 baud */
    inc %dx
    xor %al, %al
    out %al, %dx
    mov $COM1 + 3, %dx
    in %dx, %al
    and $0x7f, %al
    out %al, %dx
    ret

/* Prints the NUL-terminated string at %si, polling LSR.THRE before every byte. */
puts:
    push %dx
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %ah
    mov $COM1 + 5, %dx
2:  in %dx, %al
    test $0x20, %al
    jz 2b
    mov $COM1, %dx
    mov %ah, %al
    out %al, %dx
    jmp 1b
3:  pop %dx
    ret

/* Prints %eax in decimal. */
putu:
    push %di
    mov $numbuf + 11, %di
    movb $0, (%di)
    mov $10, %ecx
1:  xor %edx, %edx
    div %ecx
    add $'0', %dl
    dec %di
    mov %dl, (%di)
    test %eax, %eax
    jnz 1b
    mov %di, %si
    call puts
    pop %di
    ret

    .macro LOOP name, insn
\name:
    rdtsc
    mov %eax, %ebp
1:  \insn
    addr32 loop 1b
    rdtsc
    ret
    .endm
    LOOP loop_nop, nop
    LOOP loop_mov, "mov %esi, %edi"
    LOOP loop_add, "add $4, %edi"
    LOOP loop_load, "cmpl $0, scratch"
    LOOP loop_store, "mov %ax, scratch"
    LOOP loop_rmw, "addl $1, scratch"

/* The instruction sequences: code and length, name, expected %eax after them (inputs: see run_in_big_real_mode). */
    .macro SEQ name, code, expect
    .section .rodata
1:  \code
2:
    .section .data
3:  .asciz "\name"
    .section .tests, "a"
    .word 1b, 2b - 1b, 3b
    .long \expect
    .text
    .endm
    .section .tests, "a"
tests:
    .text
    SEQ "xchg", "xchg %eax, %ebx", 0x9abcdef0
    SEQ "shld", "shld $8, %ebx, %eax", 0x3456789a
    SEQ "imul", "imul %ecx, %eax", 0x369d0368
    SEQ "div", "xor %edx, %edx; div %ecx", 0x06117228
    SEQ "push/pop", "push %eax; pop %ebx; mov %ebx, %eax", 0x12345678
    SEQ "lahf", "xor %eax, %eax; lahf; and $0xd500, %eax", 0x4400
    SEQ "big real mode load", "movl %gs:0x000f0000, %eax; mov $1, %eax", 1
    SEQ "das", "mov $0x9a, %eax; das", 0x34

    .section .tests, "a"
    .word 0                            /* end of the list */

    .data
    .align 8
gdt:
    .quad 0
    .quad 0x00009b000000ffff           /* 0x08: 16-bit code, base 0, 64 KiB */
    .quad 0x000093000000ffff           /* 0x10: 16-bit data, base 0, 64 KiB */
    .quad 0x00cf93000000ffff           /* 0x18: flat 4 GiB data (big real mode) */
gdt_descr:
    .word gdt_descr - gdt - 1
    .long gdt
loops: .word loop_nop, loop_mov, loop_add, loop_load, loop_store, loop_rmw
msg_pass: .asciz "realmode-long: PASS "
msg_fail: .asciz "realmode-long: FAIL "
msg_nl: .asciz "\n"
msg_loop: .asciz "realmode-long: loop "
msg_colon: .asciz ": "
msg_cycles: .asciz " cycles/iteration\n"
msg_done: .asciz "realmode-long: done "
msg_rounds: .asciz " rounds, "
msg_failures: .asciz " failures\n"

    .bss
    .align 4
failures: .long 0
out_eax: .long 0
scratch: .long 0
round: .word 0
numbuf: .skip 12
    .align 16
    .skip 2048
stack_top:
