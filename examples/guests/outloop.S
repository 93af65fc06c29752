/* outloop: the exit-rate benchmark guest. A flat real-mode image for load address 0x7c00 (also a boot sector).
 * It executes `out %al, %dx` ITERATIONS times in a tight loop, prints "outloop: done" and exits with debug-exit
 * value 0. The loop parameters live at fixed offsets so a benchmark can patch the image (see patchOutloop in
 * build.ts):
 *   offset 4:  "OUTL"          magic
 *   offset 8:  u32 iterations  (default 10000)
 *   offset 12: u16 port        (default 0x80, the POST port)
 *   offset 14: u8  value       (default 0) */
    .code16
    .text
    .globl start
start:
    jmp code
    .org 4
    .ascii "OUTL"
iterations: .long 10000
port:       .word 0x80
value:      .byte 0
    .byte 0
code:
    cli
    cld
    ljmp $0, $1f
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    mov iterations, %ecx
    mov port, %dx
    mov value, %al
    test %ecx, %ecx
    jz 3f
2:  out %al, %dx
    dec %ecx
    jnz 2b
3:  mov $msg, %si
    call puts
    mov $0xf4, %dx
    xor %al, %al
    out %al, %dx
4:  hlt
    jmp 4b

puts:                                /* ds:si = NUL-terminated string (COM1 left as the loader/BIOS set it) */
    lodsb
    test %al, %al
    jz 6f
    mov %al, %ah
    mov $0x3fd, %dx
    mov $0xffff, %cx
5:  in %dx, %al
    test $0x20, %al
    loopz 5b
    mov $0x3f8, %dx
    mov %ah, %al
    out %al, %dx
    jmp puts
6:  ret

msg: .asciz "outloop: done\n"

    .org 510
    .word 0xaa55
