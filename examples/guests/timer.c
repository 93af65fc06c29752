/* timer: programs PIT channel 0 for ~1 ms ticks (divisor 1193), routes IRQ0 through the 8259 to this CPU (LAPIC
 * LINT0 in ExtINT "virtual wire" mode), counts `ticks=N` interrupts (default 100) in an IDT handler that does not
 * iret, prints "timer: N ticks" and exits 0. */
#include "runtime.h"

#define PIT_DIVISOR_1MS 1193   /* 1193182 Hz / 1193 = 1000.15 Hz */

static volatile uint32_t ticks;
static uint32_t target;

void main(void) {
    target = cmdline_uint("ticks=", 100);
    if (target == 0) target = 1;
    print("timer: waiting for %u ticks\n", target);
    lapic_enable_virtual_wire();
    pic_init(1u << 0);
    pit_periodic(PIT_DIVISOR_1MS);
    guest_idle();
}

void on_irq(unsigned irq) {
    if (irq == 0 && ++ticks >= target) {
        pit_stop();
        print("timer: %u ticks\n", ticks);
        debug_exit(0);
    }
    pic_eoi(irq);
}
