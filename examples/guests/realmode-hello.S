/* realmode-hello: a flat real-mode guest for load address 0x7c00 (also a valid boot sector, so a BIOS runs it the
 * same way). Prints "Hello from real mode" on COM1 and exits with debug-exit value 0. */
    .code16
    .text
    .globl start
start:
    cli
    cld
    ljmp $0, $1f                     /* normalise CS:IP to 0000:7cxx whatever the loader used */
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    call serial_init
    mov $msg, %si
    call puts
    mov $0xf4, %dx                   /* isa-debug-exit */
    xor %al, %al
    out %al, %dx
2:  hlt
    jmp 2b

serial_init:
    mov $0x3f9, %dx; xor %al, %al; out %al, %dx          /* IER = 0 */
    mov $0x3fb, %dx; mov $0x80, %al; out %al, %dx        /* LCR: DLAB */
    mov $0x3f8, %dx; mov $1, %al; out %al, %dx           /* DLL = 1: 115200 baud */
    mov $0x3f9, %dx; xor %al, %al; out %al, %dx          /* DLM = 0 */
    mov $0x3fb, %dx; mov $0x03, %al; out %al, %dx        /* LCR: 8N1 */
    ret

puts:                                /* ds:si = NUL-terminated string */
    lodsb
    test %al, %al
    jz 4f
    mov %al, %ah
    mov $0x3fd, %dx                  /* LSR */
    mov $0xffff, %cx
3:  in %dx, %al
    test $0x20, %al                  /* THRE */
    loopz 3b
    mov $0x3f8, %dx
    mov %ah, %al
    out %al, %dx
    jmp puts
4:  ret

msg: .asciz "Hello from real mode\n"

    .org 510
    .word 0xaa55                     /* boot-sector signature (ignored by tsvmm's flat loader) */
