/* s3: suspends itself to RAM through ACPI S3 and checks how it is woken. A flat real-mode image for load address
 * 0x7c00 (~2 KiB; not a boot sector). It reads the ACPI tables in real mode, so they must lie below 1 MiB, as
 * tsvmm's do (0xF0000-0xFFFFF); under SeaBIOS they are near the top of RAM and this guest would say so and fail.
 *
 * Boot: finds the RSDP ("RSD PTR " with a good checksum on a 16-byte boundary in 0xE0000-0xFFFFF), follows the
 * XSDT (RSDT when the RSDP has no XSDT) to the FADT, reads FIRMWARE_CTRL (X_FIRMWARE_CTRL when 0), PM1a_EVT_BLK,
 * PM1a_CNT_BLK and the DSDT (X_DSDT when set), and takes the S3 SLP_TYPa from the DSDT's \_S3_ package (the first
 * "_S3_" NameSeg followed by PackageOp; ZeroOp, OneOp, BytePrefix, WordPrefix or DWordPrefix). Prints
 *   S3: FACS 0x........ PM1a_EVT 0x.... PM1a_CNT 0x.... SLP_TYP 0x....
 * stores its waking routine's address in FACS.Firmware_Waking_Vector (or 0 when flag bit 0 is clear), leaves a
 * marker in RAM at 0x9000, prints "S3: suspending" and writes SLP_TYP<<10 | SLP_EN to PM1a_CNT.
 *
 * Wake: firmware starts the waking routine in real mode with CS:IP = (vector >> 4):(vector & 0xF) — the vector is
 * deliberately 3 past a 16-byte boundary, so IP must be 3. The routine assumes nothing else (it sets its own
 * segments, stack and COM1), checks CR0.PE = 0, CS = vector >> 4, the RAM marker, and WAK_STS in PM1a_STS (then
 * clears WAK_STS and PWRBTN_STS, write-1-to-clear, and checks they read 0). Prints
 *   S3: woke in real mode at the waking vector / S3: woke, marker intact / S3: WAK_STS set
 *   [S3: PWRBTN_STS set: woken by the power button]
 * and exits through isa-debug-exit with EXIT_WOKE (user wake-up) or EXIT_WOKE_PWRBTN.
 *
 * A boot that finds the marker already there (the machine booted the guest again instead of resuming: no waking
 * vector) prints "S3: booted again from the start, marker 0x00000001" and exits with EXIT_BOOTED_AGAIN.
 * Any failed check prints "S3: FAIL: <why>" and exits with EXIT_FAIL.
 *
 * Patchable header (see s3-tsvmm.test.ts):
 *   offset 4: "S3GT"  magic
 *   offset 8: u8 flags, bit 0 (S3_FLAG_SET_VECTOR, default set): set the waking vector before suspending */
    .code16
    .text
    .globl start

    .set MARKER, 0x9000              /* u32 magic, u32 suspend count: RAM that must survive S3 (not in the image) */
    .set MARKER_MAGIC, 0x4b524d33    /* "3MRK" */
    .set COM1, 0x3f8
    .set DEBUG_EXIT, 0xf4            /* isa-debug-exit: status (value << 1) | 1 */
    .set EXIT_WOKE, 0x10             /* resumed at the vector after a system_wakeup: status 33 */
    .set EXIT_WOKE_PWRBTN, 0x11      /* resumed at the vector, woken by the power button: status 35 */
    .set EXIT_BOOTED_AGAIN, 0x12     /* booted from the start again after the suspend: status 37 */
    .set EXIT_FAIL, 0x20             /* a check failed: status 65 */
    .set S3_FLAG_SET_VECTOR, 0x01

    .set SIG_FACP, 0x50434146        /* "FACP" as a little-endian u32 */
    .set SIG_FACS, 0x53434146        /* "FACS" */
    .set SIG_DSDT, 0x54445344        /* "DSDT" */
    .set NAME_S3, 0x5f33535f         /* "_S3_" */
    .set AML_PACKAGE_OP, 0x12
    .set AML_BYTE_PREFIX, 0x0a
    .set AML_WORD_PREFIX, 0x0b
    .set AML_DWORD_PREFIX, 0x0c

    .set PM1_STS_PWRBTN, 0x0100      /* PM1_STS: the power button was pressed */
    .set PM1_STS_WAK, 0x8000         /* PM1_STS: the system woke from a sleeping state */
    .set PM1_CNT_SLP_TYP_SHIFT, 10   /* PM1_CNT bits 12-10: the sleeping state to enter */
    .set PM1_CNT_SLP_EN, 0x2000      /* PM1_CNT: enter it */

    .macro FAIL msg
    mov $\msg, %si
    jmp fail
    .endm

start:
    jmp code
    .org 4
    .ascii "S3GT"
flags:  .byte S3_FLAG_SET_VECTOR
    .byte 0, 0, 0

code:
    cli
    cld
    ljmp $0, $1f                     /* normalise CS:IP to 0000:7cxx whatever the loader used */
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    call serial_init
    cmpl $MARKER_MAGIC, MARKER
    jne 2f
    mov $msg_again, %si
    call puts
    mov MARKER+4, %eax
    call print_hex32
    call newline
    mov $EXIT_BOOTED_AGAIN, %al
    jmp exit
2:  movl $MARKER_MAGIC, MARKER
    movl $1, MARKER+4

    call find_rsdp                   /* es:0 = RSDP */
    call find_fadt                   /* fs:bx = FADT, ecx = its length */
    call read_fadt
    call read_s3_slp_typ

    mov $msg_facs, %si
    call puts
    mov facs, %eax
    call print_hex32
    mov $msg_evt, %si
    call puts
    mov pm1a_evt, %ax
    call print_hex16
    mov $msg_cnt, %si
    call puts
    mov pm1a_cnt, %ax
    call print_hex16
    mov $msg_slp, %si
    call puts
    mov slp_typ, %ax
    call print_hex16
    call newline

    /* The waking vector: this routine's physical address (CS base is 0, linked at 0x7c00), or 0. */
    mov facs, %eax
    call table_at
    cmpl $SIG_FACS, %fs:(%bx)
    je 3f
    FAIL msg_no_facs
3:  xor %eax, %eax
    testb $S3_FLAG_SET_VECTOR, flags
    jz 4f
    mov $wake, %eax
4:  mov %eax, %fs:12(%bx)            /* Firmware_Waking_Vector */
    movl $0, %fs:24(%bx)             /* X_Firmware_Waking_Vector = 0: wake in real mode */
    movl $0, %fs:28(%bx)
    mov $msg_vector, %si
    call puts
    mov %fs:12(%bx), %eax            /* read back what the FACS now holds */
    call print_hex32
    call newline

    mov $msg_suspending, %si
    call puts
    mov slp_typ, %ax
    shl $PM1_CNT_SLP_TYP_SHIFT, %ax
    or $PM1_CNT_SLP_EN, %ax
    mov pm1a_cnt, %dx
    out %ax, %dx
    /* The machine stops here. Spin like an OS waiting for the sleep to take (~1-2 s under the emulator), then
     * report that it did not. */
    mov $2000000, %ecx
5:  dec %ecx
    jnz 5b
    FAIL msg_still_running

/* Scans 0xE0000-0xFFFFF for the RSDP; returns es = its segment (offset 0). */
find_rsdp:
    mov $0xe000, %bx
1:  mov %bx, %es
    xor %di, %di
    mov $sig_rsdp, %si
    mov $8, %cx
    repe cmpsb
    jne 3f
    xor %di, %di                     /* ACPI 1.0 checksum: the first 20 bytes sum to 0 */
    mov $20, %cx
    xor %al, %al
2:  add %es:(%di), %al
    inc %di
    loop 2b
    test %al, %al
    jz 4f
3:  inc %bx
    jnz 1b
    FAIL msg_no_rsdp
4:  ret

/* es:0 = RSDP. Walks the XSDT (RSDT when the RSDP is revision 0 or has no XSDT below 4 GiB); returns fs:bx = FADT,
 * ecx = its length. */
find_fadt:
    mov %es:16, %eax                 /* RsdtAddress */
    movw $4, entry_size
    cmpb $2, %es:15                  /* Revision: XsdtAddress exists from 2 on */
    jb 1f
    cmpl $0, %es:28                  /* XsdtAddress above 4 GiB: real mode cannot reach it, use the RSDT */
    jne 1f
    mov %es:24, %edx
    test %edx, %edx
    jz 1f
    mov %edx, %eax
    movw $8, entry_size
1:  call table_at
    mov %fs, %ax
    mov %ax, %gs                     /* gs:di walks the root table's entries, gs:si is its end */
    lea 36(%bx), %di
    mov %bx, %si
    add %cx, %si
2:  mov %di, %ax
    add entry_size, %ax
    cmp %si, %ax
    ja 4f
    mov %gs:(%di), %eax
    cmpw $8, entry_size
    jne 3f
    cmpl $0, %gs:4(%di)
    jne 5f                           /* a table above 4 GiB is not the FADT we can use */
3:  push %si
    push %di
    call table_at
    pop %di
    pop %si
    cmpl $SIG_FACP, %fs:(%bx)
    je 6f
5:  add entry_size, %di
    jmp 2b
4:  FAIL msg_no_fadt
6:  ret

/* fs:bx = FADT, ecx = length: stores facs, pm1a_evt, pm1a_cnt, dsdt. */
read_fadt:
    cmp $116, %ecx                   /* the ACPI 1.0 FADT's size: every field used below but the X_ ones */
    jb 9f
    mov %fs:56(%bx), %eax            /* PM1a_EVT_BLK */
    call check_port
    mov %ax, pm1a_evt
    mov %fs:64(%bx), %eax            /* PM1a_CNT_BLK */
    call check_port
    mov %ax, pm1a_cnt
    mov %fs:36(%bx), %eax            /* FIRMWARE_CTRL */
    test %eax, %eax
    jnz 1f
    cmp $140, %ecx                   /* X_FIRMWARE_CTRL (ACPI 2.0+) */
    jb 8f
    cmpl $0, %fs:136(%bx)
    jne 8f
    mov %fs:132(%bx), %eax
    test %eax, %eax
    jz 8f
1:  mov %eax, facs
    mov %fs:40(%bx), %eax            /* DSDT; X_DSDT wins when set */
    cmp $148, %ecx
    jb 2f
    cmpl $0, %fs:144(%bx)
    jne 2f
    mov %fs:140(%bx), %edx
    test %edx, %edx
    jz 2f
    mov %edx, %eax
2:  mov %eax, dsdt
    ret
8:  FAIL msg_no_facs
9:  FAIL msg_short_fadt

/* eax = a PM1 block's port from the FADT: must be set and the whole u16 register inside the port space. */
check_port:
    test %eax, %eax
    jz 1f
    cmp $0xfffe, %eax
    ja 1f
    ret
1:  FAIL msg_bad_port

/* Finds the \_S3_ package in the DSDT and stores its first element (SLP_TYPa) in slp_typ. */
read_s3_slp_typ:
    mov dsdt, %eax
    call table_at
    cmpl $SIG_DSDT, %fs:(%bx)
    je 1f
    FAIL msg_no_dsdt
1:  mov %bx, %di
    add %cx, %di
    sub $15, %di                     /* the last start with the name, op, PkgLength (<= 4), count and a DWord */
    lea 36(%bx), %si
2:  cmp %di, %si
    ja 8f
    cmpl $NAME_S3, %fs:(%si)
    jne 3f
    cmpb $AML_PACKAGE_OP, %fs:4(%si)
    je 4f
3:  inc %si
    jmp 2b
4:  movzbw %fs:5(%si), %cx           /* PkgLength lead byte: bits 7-6 = how many bytes follow it */
    shr $6, %cx
    add %cx, %si
    add $7, %si                      /* past the name, PackageOp, the lead byte and NumElements */
    movzbw %fs:(%si), %ax            /* ZeroOp (0x00) and OneOp (0x01) are their own value */
    cmp $1, %ax
    jbe 6f
    cmp $AML_BYTE_PREFIX, %al
    jne 5f
    movzbw %fs:1(%si), %ax
    jmp 6f
5:  cmp $AML_WORD_PREFIX, %al
    je 7f
    cmp $AML_DWORD_PREFIX, %al
    jne 9f
    cmpw $0, %fs:3(%si)
    jne 9f
7:  mov %fs:1(%si), %ax
6:  cmp $7, %ax                      /* SLP_TYP is 3 bits */
    ja 9f
    mov %ax, slp_typ
    ret
8:  FAIL msg_no_s3
9:  FAIL msg_bad_s3

/* eax = physical address of an ACPI table: fs:bx addresses it, ecx = its length (header Length). Fails when it is
 * not below 1 MiB (real mode reaches no further) or its length is not 36..0xff00 (one segment). */
table_at:
    cmp $0x100000, %eax
    jae 1f
    mov %eax, %ecx
    shr $4, %ecx
    mov %cx, %fs
    mov %ax, %bx
    and $0xf, %bx
    mov %fs:4(%bx), %ecx
    cmp $36, %ecx
    jb 2f
    cmp $0xff00, %ecx
    ja 2f
    ret
1:  FAIL msg_high_table
2:  FAIL msg_bad_length

/* ---- the waking routine ----------------------------------------------------------------------------------- */
    .balign 16
wrong_ip:                            /* CS:IP = (vector >> 4):0 would start here instead of at `wake` */
    jmp bad_ip
    .org wrong_ip + 3
wake:                                /* the FACS waking vector: CS = wake >> 4, IP = 3; nothing else is known */
    cli
    cld
    mov %cs, %bx                     /* what firmware chose, before anything changes it */
    smsw %di                         /* CR0 low word: PE must be 0 */
    ljmp $0, $1f
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    call serial_init
    test $1, %di
    jz 2f
    FAIL msg_not_real
2:  mov $wake, %ax
    shr $4, %ax
    cmp %ax, %bx
    je 3f
    FAIL msg_bad_cs
3:  mov $msg_woke, %si
    call puts
    cmpl $MARKER_MAGIC, MARKER
    jne 4f
    cmpl $1, MARKER+4
    je 5f
4:  FAIL msg_marker_lost
5:  mov $msg_marker, %si
    call puts
    mov pm1a_evt, %dx                /* PM1a_STS */
    in %dx, %ax
    mov %ax, %bx
    test $PM1_STS_WAK, %bx
    jnz 6f
    FAIL msg_no_wak
6:  mov $msg_wak, %si
    call puts
    mov pm1a_evt, %dx
    mov $(PM1_STS_WAK | PM1_STS_PWRBTN), %ax   /* write 1 to clear, as an OS does after resume */
    out %ax, %dx
    in %dx, %ax
    test $(PM1_STS_WAK | PM1_STS_PWRBTN), %ax
    jz 7f
    FAIL msg_sts_stuck
7:  mov $EXIT_WOKE, %al
    test $PM1_STS_PWRBTN, %bx
    jz exit
    mov $msg_pwrbtn, %si
    call puts
    mov $EXIT_WOKE_PWRBTN, %al
exit:                                /* al = isa-debug-exit value */
    mov $DEBUG_EXIT, %dx
    out %al, %dx
8:  hlt
    jmp 8b

bad_ip:                              /* entered through CS:0 instead of CS:3 */
    ljmp $0, $1f
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    call serial_init
    FAIL msg_bad_ip

fail:                                /* ds:si = why */
    push %si
    mov $msg_fail, %si
    call puts
    pop %si
    call puts
    call newline
    mov $EXIT_FAIL, %al
    jmp exit

/* ---- COM1 ------------------------------------------------------------------------------------------------- */
serial_init:
    mov $COM1+1, %dx; xor %al, %al; out %al, %dx         /* IER = 0 */
    mov $COM1+3, %dx; mov $0x80, %al; out %al, %dx       /* LCR: DLAB */
    mov $COM1, %dx; mov $1, %al; out %al, %dx            /* DLL = 1: 115200 baud */
    mov $COM1+1, %dx; xor %al, %al; out %al, %dx         /* DLM = 0 */
    mov $COM1+3, %dx; mov $0x03, %al; out %al, %dx       /* LCR: 8N1 */
    ret

putc:                                /* al = character; keeps every register */
    push %dx
    push %cx
    push %ax
    mov $COM1+5, %dx                 /* LSR */
    mov $0xffff, %cx
1:  in %dx, %al
    test $0x20, %al                  /* THRE */
    loopz 1b
    pop %ax
    mov $COM1, %dx
    out %al, %dx
    pop %cx
    pop %dx
    ret

puts:                                /* ds:si = NUL-terminated string */
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

newline:
    mov $'\n', %al
    jmp putc

print_hex16:                         /* ax, as 4 hex digits */
    shl $16, %eax
    mov $4, %cx
    jmp print_hex
print_hex32:                         /* eax, as 8 hex digits */
    mov $8, %cx
print_hex:                           /* the top cx digits of eax */
1:  rol $4, %eax
    push %ax
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('A' - '0' - 10), %al
2:  call putc
    pop %ax
    loop 1b
    ret

/* ---- data (in the image: it survives the suspend with the rest of RAM) ------------------------------------ */
    .balign 4
facs:       .long 0
dsdt:       .long 0
pm1a_evt:   .word 0
pm1a_cnt:   .word 0
slp_typ:    .word 0
entry_size: .word 0

sig_rsdp:          .ascii "RSD PTR "
msg_facs:          .asciz "S3: FACS 0x"
msg_evt:           .asciz " PM1a_EVT 0x"
msg_cnt:           .asciz " PM1a_CNT 0x"
msg_slp:           .asciz " SLP_TYP 0x"
msg_vector:        .asciz "S3: waking vector 0x"
msg_suspending:    .asciz "S3: suspending\n"
msg_woke:          .asciz "S3: woke in real mode at the waking vector\n"
msg_marker:        .asciz "S3: woke, marker intact\n"
msg_wak:           .asciz "S3: WAK_STS set\n"
msg_pwrbtn:        .asciz "S3: PWRBTN_STS set: woken by the power button\n"
msg_again:         .asciz "S3: booted again from the start, marker 0x"
msg_fail:          .asciz "S3: FAIL: "
msg_still_running: .asciz "still running after SLP_EN"
msg_no_rsdp:       .asciz "no RSDP in 0xE0000-0xFFFFF"
msg_no_fadt:       .asciz "no FACP in the XSDT/RSDT"
msg_short_fadt:    .asciz "FADT shorter than 116 bytes"
msg_bad_port:      .asciz "FADT PM1a block port unset or out of range"
msg_no_facs:       .asciz "no FACS"
msg_no_dsdt:       .asciz "no DSDT"
msg_no_s3:         .asciz "no _S3_ package in the DSDT"
msg_bad_s3:        .asciz "unexpected SLP_TYP encoding in _S3_"
msg_high_table:    .asciz "ACPI table above 1 MiB"
msg_bad_length:    .asciz "ACPI table length out of range"
msg_not_real:      .asciz "woke with CR0.PE set"
msg_bad_cs:        .asciz "woke with CS != vector >> 4"
msg_bad_ip:        .asciz "woke with IP != vector & 0xF"
msg_marker_lost:   .asciz "RAM marker lost"
msg_no_wak:        .asciz "WAK_STS clear after wake-up"
msg_sts_stuck:     .asciz "WAK_STS/PWRBTN_STS did not clear on write 1"
