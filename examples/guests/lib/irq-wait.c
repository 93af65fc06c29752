#include "irq-wait.h"

#define FIRST_VECTOR 0x20
#define STUB_SIZE 16
/* KVM's (and QEMU's) LAPIC timer runs at 1 GHz; divided by 16: 62.5 counts per microsecond. */
#define LAPIC_COUNTS_PER_MS 62500u

extern char irq_wait_stubs[];
volatile uint32_t irq_counts[256];

/* Called by the stubs with interrupts disabled. */
void irq_wait_record(uint32_t vector) {
    irq_counts[vector & 0xff]++;
    if (vector >= 0x20 && vector < 0x30) pic_eoi(vector - 0x20);   /* an 8259 line (all are masked; defensive) */
    else if (vector != IRQ_WAIT_SPURIOUS_VECTOR) lapic_eoi();
}

void irq_wait_init(void) {
    for (unsigned v = FIRST_VECTOR; v < 256; v++) {
        idt_set_gate(v, (void (*)(void))(irq_wait_stubs + STUB_SIZE * (v - FIRST_VECTOR)));
    }
    pic_init(0);
    lapic_enable();
    lapic_timer_periodic(IRQ_WAIT_TIMER_VECTOR, IRQ_WAIT_TICK_MS * LAPIC_COUNTS_PER_MS);
}

void irq_wait_stop(void) { lapic_timer_periodic(IRQ_WAIT_TIMER_VECTOR, 0); }
