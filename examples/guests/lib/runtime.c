#include "runtime.h"

/* 16550 registers (offsets from COM1) and bits. */
#define UART_THR 0   /* transmit holding (DLAB=0) */
#define UART_DLL 0   /* divisor latch low (DLAB=1) */
#define UART_IER 1   /* interrupt enable (DLAB=0) */
#define UART_DLM 1   /* divisor latch high (DLAB=1) */
#define UART_FCR 2   /* FIFO control */
#define UART_LCR 3   /* line control */
#define UART_MCR 4   /* modem control */
#define UART_LSR 5   /* line status */
#define LCR_DLAB 0x80
#define LCR_8N1  0x03
#define FCR_ENABLE_CLEAR 0x07
#define MCR_DTR_RTS 0x03          /* OUT2 stays clear: no serial interrupts */
#define LSR_THRE 0x20             /* transmit holding register empty */

void serial_init(void) {
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, LCR_DLAB);
    outb(COM1 + UART_DLL, 1);      /* 115200 baud */
    outb(COM1 + UART_DLM, 0);
    outb(COM1 + UART_LCR, LCR_8N1);
    outb(COM1 + UART_FCR, FCR_ENABLE_CLEAR);
    outb(COM1 + UART_MCR, MCR_DTR_RTS);
}

void putc_serial(char c) {
    /* Bounded: a UART that never reports THRE must not hang the guest. */
    for (unsigned i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & LSR_THRE); i++) { }
    outb(COM1 + UART_THR, (uint8_t)c);
}

void puts_serial(const char *s) { while (*s) putc_serial(*s++); }

static void put_u64(uint64_t v, int width, char pad) {
    /* No 64-bit division without libgcc: subtract powers of ten. */
    static const uint64_t pow10[] = {
        10000000000000000000ull, 1000000000000000000ull, 100000000000000000ull, 10000000000000000ull,
        1000000000000000ull, 100000000000000ull, 10000000000000ull, 1000000000000ull, 100000000000ull,
        10000000000ull, 1000000000ull, 100000000ull, 10000000ull, 1000000ull, 100000ull, 10000ull, 1000ull,
        100ull, 10ull, 1ull,
    };
    char buf[21];
    int n = 0;
    for (unsigned i = 0; i < sizeof pow10 / sizeof pow10[0]; i++) {
        char d = '0';
        while (v >= pow10[i]) { v -= pow10[i]; d++; }
        if (d != '0' || n > 0 || i == sizeof pow10 / sizeof pow10[0] - 1) buf[n++] = d;
    }
    for (int i = n; i < width; i++) putc_serial(pad);
    for (int i = 0; i < n; i++) putc_serial(buf[i]);
}

static void put_hex(uint32_t v) {
    for (int shift = 28; shift >= 0; shift -= 4) putc_serial("0123456789abcdef"[(v >> shift) & 0xf]);
}

void print(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') { putc_serial(*fmt); continue; }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') { pad = '0'; fmt++; }
        while (*fmt >= '1' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') { longs++; fmt++; }
        switch (*fmt) {
        case 's': puts_serial(va_arg(ap, const char *)); break;
        case 'c': putc_serial((char)va_arg(ap, int)); break;
        case 'u': put_u64(longs >= 2 ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t), width, pad); break;
        case 'd': {
            int32_t v = va_arg(ap, int32_t);
            if (v < 0) { putc_serial('-'); v = -v; }
            put_u64((uint32_t)v, width, pad);
            break;
        }
        case 'x': put_hex(va_arg(ap, uint32_t)); break;
        case '%': putc_serial('%'); break;
        default: putc_serial('?'); break;
        }
    }
    va_end(ap);
}

void halt_forever(void) {
    for (;;) __asm__ volatile("cli; hlt");
}

void debug_exit(uint32_t code) {
    outl(DEBUG_EXIT_PORT, code);
    halt_forever();            /* no debug-exit device: stop here */
}

/* ---- Multiboot info ---- */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002
#define MBI_FLAG_CMDLINE (1u << 2)

const char *mb_cmdline(void) {
    if (mb_magic != MULTIBOOT_BOOTLOADER_MAGIC || mb_info == 0) return "";
    const uint32_t *mbi = (const uint32_t *)mb_info;
    if (!(mbi[0] & MBI_FLAG_CMDLINE) || mbi[4] == 0) return "";
    return (const char *)mbi[4];
}

uint32_t cmdline_uint(const char *key, uint32_t fallback) {
    const char *s = mb_cmdline();
    size_t klen = strlen(key);
    while (*s) {
        while (*s == ' ') s++;
        if (strncmp(s, key, klen) == 0) {
            s += klen;
            uint32_t v = 0, base = 10;
            if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; s += 2; }
            int digits = 0;
            for (;; s++, digits++) {
                uint32_t d;
                if (*s >= '0' && *s <= '9') d = *s - '0';
                else if (base == 16 && *s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
                else if (base == 16 && *s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
                else break;
                v = v * base + d;
            }
            return digits ? v : fallback;
        }
        while (*s && *s != ' ') s++;
    }
    return fallback;
}

/* ---- fw_cfg (I/O-port interface) ---- */
void fw_cfg_read(uint16_t key, void *buf, uint32_t len) {
    outw(FW_CFG_SELECTOR, key);
    uint8_t *p = buf;
    for (uint32_t i = 0; i < len; i++) p[i] = inb(FW_CFG_DATA);
}

/* ---- IDT ---- */
extern const uint32_t exc_stubs[32], irq_stubs[16];
extern void irq_other(void);
static uint64_t idt[256] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

#define GATE_INTERRUPT32 0x8e   /* present, DPL 0, 32-bit interrupt gate (clears IF on entry) */
#define SEL_CODE32 0x08

static uint64_t gate(uint32_t handler) {
    return (handler & 0xffffull) | ((uint64_t)SEL_CODE32 << 16) | ((uint64_t)GATE_INTERRUPT32 << 40)
         | ((uint64_t)(handler >> 16) << 48);
}

void idt_init(void) {
    for (unsigned v = 0; v < 256; v++) idt[v] = gate((uint32_t)irq_other);
    for (unsigned v = 0; v < 32; v++) idt[v] = gate(exc_stubs[v]);
    for (unsigned v = 0; v < 16; v++) idt[0x20 + v] = gate(irq_stubs[v]);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" :: "m"(idtr));
}

void idt_load(void) { __asm__ volatile("lidt %0" :: "m"(idtr)); }

void idt_set_gate(unsigned vector, void (*handler)(void)) {
    if (vector < 256) idt[vector] = gate((uint32_t)handler);
}

/* ---- 8259 PICs ---- */
#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xa0
#define PIC2_DATA 0xa1
#define ICW1_INIT_ICW4 0x11     /* edge-triggered, cascade, ICW4 follows */
#define ICW4_8086 0x01
#define OCW2_EOI 0x20           /* non-specific end of interrupt */

void pic_init(uint16_t unmasked) {
    outb(PIC1_CMD, ICW1_INIT_ICW4);
    outb(PIC2_CMD, ICW1_INIT_ICW4);
    outb(PIC1_DATA, 0x20);      /* ICW2: master vectors 0x20-0x27 */
    outb(PIC2_DATA, 0x28);      /* ICW2: slave vectors 0x28-0x2f */
    outb(PIC1_DATA, 0x04);      /* ICW3: slave on IRQ2 */
    outb(PIC2_DATA, 0x02);      /* ICW3: slave identity 2 */
    outb(PIC1_DATA, ICW4_8086);
    outb(PIC2_DATA, ICW4_8086);
    if (unmasked & 0xff00) unmasked |= 1u << 2;   /* the cascade line */
    outb(PIC1_DATA, (uint8_t)~unmasked);
    outb(PIC2_DATA, (uint8_t)~(unmasked >> 8));
}

void pic_eoi(unsigned irq) {
    if (irq >= 8) outb(PIC2_CMD, OCW2_EOI);
    outb(PIC1_CMD, OCW2_EOI);
}

/* ---- LAPIC ---- */
#define LAPIC_SVR   0x0f0       /* spurious-interrupt vector register */
#define LAPIC_LVT0  0x350       /* local vector table: LINT0 */
#define SVR_ENABLE  0x100
#define SPURIOUS_VECTOR 0xff
#define LVT_EXTINT  0x700       /* delivery mode ExtINT, unmasked */

void lapic_enable_virtual_wire(void) {
    mmio_write32(LAPIC_BASE + LAPIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR);
    mmio_write32(LAPIC_BASE + LAPIC_LVT0, LVT_EXTINT);
}

#define LAPIC_EOI        0x0b0  /* end of interrupt: write 0 */
#define LAPIC_ICR_LOW    0x300  /* interrupt command, low word (writing it sends) */
#define LAPIC_ICR_HIGH   0x310  /* interrupt command, high word: destination in bits 31:24 */
#define ICR_BUSY         0x1000 /* delivery status: send pending */
#define LAPIC_LVT_TIMER  0x320  /* local vector table: timer */
#define LAPIC_TIMER_INIT 0x380  /* timer initial count (writing it starts the timer) */
#define LAPIC_TIMER_CUR  0x390  /* timer current count */
#define LAPIC_TIMER_DIV  0x3e0  /* timer divide configuration */
#define TIMER_DIV_16     0x3    /* divide the bus clock by 16 */
#define LVT_MASKED       0x10000
#define LVT_TIMER_PERIODIC 0x20000 /* timer mode bits 18:17 = 01 */

void lapic_enable(void) { mmio_write32(LAPIC_BASE + LAPIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR); }

void lapic_eoi(void) { mmio_write32(LAPIC_BASE + LAPIC_EOI, 0); }

void lapic_send_ipi(uint32_t icr) {
    mmio_write32(LAPIC_BASE + LAPIC_ICR_HIGH, 0);
    mmio_write32(LAPIC_BASE + LAPIC_ICR_LOW, icr);
    for (unsigned i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LOW) & ICR_BUSY); i++) { }
}

void lapic_timer_periodic(uint8_t vector, uint32_t count) {
    mmio_write32(LAPIC_BASE + LAPIC_TIMER_DIV, TIMER_DIV_16);
    mmio_write32(LAPIC_BASE + LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | vector);
    mmio_write32(LAPIC_BASE + LAPIC_TIMER_INIT, count);
}

void lapic_timer_oneshot_masked(uint32_t count) {
    mmio_write32(LAPIC_BASE + LAPIC_TIMER_DIV, TIMER_DIV_16);
    mmio_write32(LAPIC_BASE + LAPIC_LVT_TIMER, LVT_MASKED);
    mmio_write32(LAPIC_BASE + LAPIC_TIMER_INIT, count);
}

uint32_t lapic_timer_current(void) { return mmio_read32(LAPIC_BASE + LAPIC_TIMER_CUR); }

/* ---- 8254 PIT ---- */
#define PIT_CH0 0x40
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PIT_CH0_LOHI_MODE2 0x34 /* channel 0, lobyte/hibyte, rate generator */
#define PIT_CH0_LOHI_MODE0 0x30 /* channel 0, lobyte/hibyte, interrupt on terminal count (one-shot) */
#define PIT_CH2_LOHI_MODE0 0xb0 /* channel 2, lobyte/hibyte, one-shot */
#define PORT_B 0x61             /* bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 output */

void pit_periodic(uint16_t divisor) {
    outb(PIT_CMD, PIT_CH0_LOHI_MODE2);
    outb(PIT_CH0, divisor & 0xff);
    outb(PIT_CH0, divisor >> 8);
}

void pit_stop(void) {
    /* A one-shot with the longest count: fires once more at most, ~55 ms later, then never. */
    outb(PIT_CMD, PIT_CH0_LOHI_MODE0);
    outb(PIT_CH0, 0);
    outb(PIT_CH0, 0);
}

void delay_us(uint32_t us) {
    if (us > 50000) us = 50000;
    uint32_t count = us * 1193 / 1000 + 1;
    outb(PORT_B, (inb(PORT_B) & ~0x02) | 0x01);   /* gate on, speaker off */
    outb(PIT_CMD, PIT_CH2_LOHI_MODE0);
    outb(PIT_CH2, count & 0xff);
    outb(PIT_CH2, count >> 8);
    for (uint32_t i = 0; i < 1000000 && !(inb(PORT_B) & 0x20); i++) { }
}

/* ---- Defaults and start-up ---- */
__attribute__((weak)) void on_irq(unsigned irq) { pic_eoi(irq); }

static const char *const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?", "#TS", "#NP", "#SS", "#GP", "#PF", "?",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

__attribute__((weak)) void on_exception(unsigned vector, uint32_t w0, uint32_t w1, uint32_t w2) {
    /* Vectors 8, 10-14, 17, 21, 29, 30 push an error code before EIP. */
    int has_error = vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30;
    uint32_t eip = has_error ? w1 : w0;
    const char *name = vector < 32 && exception_names[vector] ? exception_names[vector] : "?";
    print("guest: exception %u %s at eip=0x%x", vector, name, eip);
    if (has_error) print(" error=0x%x", w0);
    print(" (w2=0x%x)\n", w2);
    debug_exit(EXIT_FAILURE_CODE);
}

void guest_start(void) {
    serial_init();
    idt_init();
    main();
}

void *memcpy(void *d, const void *s, size_t n) {
    uint8_t *dp = d;
    const uint8_t *sp = s;
    while (n--) *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, size_t n) {
    uint8_t *dp = d;
    while (n--) *dp++ = (uint8_t)c;
    return d;
}

int strncmp(const char *a, const char *b, size_t n) {
    for (; n; n--, a++, b++) {
        if (*a != *b) return (unsigned char)*a - (unsigned char)*b;
        if (!*a) return 0;
    }
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
