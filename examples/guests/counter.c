/* counter: a 1 ms PIT tick drives a 64-bit counter kept at the FIXED guest-physical address 0x101000 (the .state
 * section, see lib/guest.ld). Each tick also writes one byte ('.') to the debugcon port 0xe9, so an observer can
 * time ticks from outside (e.g. a checkpoint's pause). Every 100 ticks it prints "counter: N". It runs until
 * killed, or with `ticks=N` on the command line prints "counter: done N" and exits 0 after N ticks.
 * All of its state is in RAM (this page and the stack): a checkpoint/restore continues the count. */
#include "runtime.h"

#define PIT_DIVISOR_1MS 1193
#define COUNTER_MAGIC 0x52544e43u   /* "CNTR" */

/* Layout documented in README.md; tests read `ticks` at 0x101000 from outside. */
struct counter_state {
    volatile uint64_t ticks;       /* 0x101000: ticks so far */
    uint64_t limit;                /* 0x101008: ticks=N from the command line, 0 = run forever */
    uint32_t since_print;          /* 0x101010: ticks since the last "counter:" line */
    uint32_t magic;                /* 0x101014: COUNTER_MAGIC once initialised */
};

__attribute__((section(".state"), used)) struct counter_state counter_state = { 0, 0, 0, 0 };

void main(void) {
    struct counter_state *s = &counter_state;
    s->ticks = 0;
    s->since_print = 0;
    s->limit = cmdline_uint("ticks=", 0);
    s->magic = COUNTER_MAGIC;
    print("counter: state at 0x%x, limit %u\n", (uint32_t)s, (uint32_t)s->limit);
    lapic_enable_virtual_wire();
    pic_init(1u << 0);
    pit_periodic(PIT_DIVISOR_1MS);
    guest_idle();
}

void on_irq(unsigned irq) {
    struct counter_state *s = &counter_state;
    if (irq == 0) {
        uint64_t t = s->ticks + 1;
        s->ticks = t;
        outb(DEBUGCON_PORT, '.');
        if (++s->since_print >= 100) {
            s->since_print = 0;
            print("counter: %llu\n", t);
        }
        if (s->limit != 0 && t >= s->limit) {
            pit_stop();
            print("counter: done %llu\n", t);
            debug_exit(0);
        }
    }
    pic_eoi(irq);
}
