/* longmode-hello: a flat guest started directly in 64-bit long mode (tsvmm's flat loader, mode 'long'; load
 * address 0x200000). Position-independent, so QEMU tests can start it through lm-shim from wherever the module
 * lands. Reads EFER to prove long mode is active, prints "Hello from long mode (EFER.LMA=1)" on COM1 and exits
 * with debug-exit value 0. */
    .code64
    .text
    .globl start
start:
    cld
    call serial_init
    lea msg(%rip), %rsi
    call puts
    mov $0xc0000080, %ecx            /* IA32_EFER */
    rdmsr
    shr $10, %eax                    /* LMA */
    and $1, %eax
    add $'0', %al
    call putc
    lea msg_end(%rip), %rsi
    call puts
    mov $0xf4, %dx
    xor %eax, %eax
    out %al, %dx
1:  hlt
    jmp 1b

serial_init:
    mov $0x3f9, %dx; xor %al, %al; out %al, %dx
    mov $0x3fb, %dx; mov $0x80, %al; out %al, %dx
    mov $0x3f8, %dx; mov $1, %al; out %al, %dx
    mov $0x3f9, %dx; xor %al, %al; out %al, %dx
    mov $0x3fb, %dx; mov $0x03, %al; out %al, %dx
    ret

putc:                                /* al = byte */
    mov %al, %ah
    mov $0x3fd, %dx
    mov $0xffff, %ecx
2:  in %dx, %al
    test $0x20, %al
    jnz 3f
    dec %ecx
    jnz 2b
3:  mov $0x3f8, %dx
    mov %ah, %al
    out %al, %dx
    ret

puts:                                /* rsi = NUL-terminated string */
    lodsb
    test %al, %al
    jz 4f
    call putc
    jmp puts
4:  ret

msg:     .asciz "Hello from long mode (EFER.LMA="
msg_end: .asciz ")\n"
