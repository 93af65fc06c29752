/* Waiting for interrupts without iret: irq_wait() halts with interrupts enabled and "returns" when any vector from
 * 0x20 up arrives, because that vector's stub drops the CPU's frame, counts the vector, sends the LAPIC EOI and
 * jumps back into irq_wait's saved context (a longjmp) instead of returning from the interrupt. Outside irq_wait
 * interrupts stay disabled, so a message that arrives early waits in the LAPIC until the next irq_wait.
 * A 10 ms periodic LAPIC timer gives every wait a bound (deadlines count its ticks). */
#ifndef GUEST_IRQ_WAIT_H
#define GUEST_IRQ_WAIT_H

#include "runtime.h"

#define IRQ_WAIT_TIMER_VECTOR 0x30      /* LAPIC timer: the 10 ms tick */
#define IRQ_WAIT_SPURIOUS_VECTOR 0xff   /* the LAPIC's spurious vector (no EOI) */
#define IRQ_WAIT_TICK_MS 10

/* How many times each vector arrived. */
extern volatile uint32_t irq_counts[256];

/* Installs the stubs for vectors 0x20-0xff, masks the 8259s, enables this CPU's LAPIC and starts the tick. */
void irq_wait_init(void);
/* Stops the tick (before exiting, so nothing fires late). */
void irq_wait_stop(void);
/* sti; hlt until an interrupt; returns its vector with interrupts disabled again. */
uint32_t irq_wait(void);
/* Ticks so far (10 ms each). */
static inline uint32_t irq_ticks(void) { return irq_counts[IRQ_WAIT_TIMER_VECTOR]; }
/* A deadline `ms` from now, in ticks (at least one full tick away). */
static inline uint32_t irq_deadline(uint32_t ms) { return irq_ticks() + ms / IRQ_WAIT_TICK_MS + 2; }
static inline int irq_expired(uint32_t deadline) { return (int32_t)(irq_ticks() - deadline) >= 0; }

#endif
