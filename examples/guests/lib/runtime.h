/* The test guests' tiny runtime: port I/O, COM1 output, printing, the multiboot command line, fw_cfg, the PICs,
 * the PIT, the LAPIC, an IDT, spinlocks. Only devices QEMU's PC machine has (and tsvmm emulates) are used. */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>

/* ---- I/O ports ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint32_t mmio_read32(uintptr_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uintptr_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
/* This CPU's initial APIC id: CPUID.1:EBX[31:24]. */
static inline uint32_t apic_id(void) { uint32_t a, b, c, d; cpuid(1, &a, &b, &c, &d); return b >> 24; }

/* ---- Device addresses ---- */
#define COM1            0x3f8   /* 16550 UART */
#define DEBUG_EXIT_PORT 0xf4    /* isa-debug-exit: a write of v ends the VM with status (v << 1) | 1 */
#define DEBUGCON_PORT   0xe9    /* isa-debugcon */
#define FW_CFG_SELECTOR 0x510   /* fw_cfg: 16-bit key */
#define FW_CFG_DATA     0x511   /* fw_cfg: data, byte by byte */
#define FW_CFG_SIGNATURE 0x0000 /* "QEMU" */
#define FW_CFG_NB_CPUS   0x0005 /* u16 little-endian */
#define LAPIC_BASE      0xfee00000u
#define PIT_HZ          1193182u

/* Exit code the guests use when something unexpected happens (an exception, a timeout). */
#define EXIT_FAILURE_CODE 0x3f

/* ---- Output (COM1, polled) ---- */
void serial_init(void);
void putc_serial(char c);
void puts_serial(const char *s);
/* printf subset: %s %c %u %d %x (32-bit), %llu (64-bit unsigned), %%; width only as in "%02u". */
void print(const char *fmt, ...);

/* ---- Exit ---- */
void debug_exit(uint32_t code) __attribute__((noreturn));
void halt_forever(void) __attribute__((noreturn));

/* ---- Multiboot ---- */
extern uint32_t mb_magic, mb_info;
const char *mb_cmdline(void);                              /* "" if none */
/* The value of the first `key=value` word on the command line (decimal or 0x hex), or `fallback`. */
uint32_t cmdline_uint(const char *key, uint32_t fallback);

/* ---- fw_cfg ---- */
void fw_cfg_read(uint16_t key, void *buf, uint32_t len);

/* ---- Interrupts ---- */
void idt_init(void);                                       /* exceptions 0-31, PIC vectors 0x20-0x2f, rest idle */
void pic_init(uint16_t unmasked);                          /* remap to 0x20/0x28, bit i of unmasked = IRQ i open */
void pic_eoi(unsigned irq);
void lapic_enable_virtual_wire(void);                      /* SVR enable + LINT0 ExtINT: PIC -> this CPU */
void pit_periodic(uint16_t divisor);                       /* channel 0, mode 2 */
void pit_stop(void);
/* Busy-waits about `us` microseconds (<= 50000) on PIT channel 2; bounded even without a PIT. */
void delay_us(uint32_t us);
void guest_idle(void) __attribute__((noreturn));           /* sti; hlt forever, with a fresh stack */

/* Per-CPU interrupt set-up (APs start with no IDT and a software-disabled LAPIC). */
void idt_load(void);                                       /* lidt the shared IDT on this CPU (after idt_init) */
void idt_set_gate(unsigned vector, void (*handler)(void)); /* 32-bit interrupt gate for `vector`, all CPUs */
void lapic_enable(void);                                   /* SVR enable, spurious vector 0xff; LVTs untouched */
void lapic_eoi(void);
void lapic_send_ipi(uint32_t icr);                         /* ICR high = 0, ICR low = icr; waits for delivery */
/* LAPIC timer, divide by 16: periodic at `count` (0 stops it); one-shot masked + current count for calibration. */
void lapic_timer_periodic(uint8_t vector, uint32_t count);
void lapic_timer_oneshot_masked(uint32_t count);
uint32_t lapic_timer_current(void);

/* Provided by each guest. */
void main(void);
/* Optional (weak defaults): IRQ and exception handlers. on_irq must send the EOI. */
void on_irq(unsigned irq);
void on_exception(unsigned vector, uint32_t w0, uint32_t w1, uint32_t w2);

/* ---- Spinlocks (xchg is implicitly locked) ---- */
static inline void spin_lock(volatile uint32_t *l) {
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) while (*l) { }
}
static inline void spin_unlock(volatile uint32_t *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int strncmp(const char *a, const char *b, size_t n);
size_t strlen(const char *s);

#endif
