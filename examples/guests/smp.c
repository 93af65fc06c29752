/* smp: the BSP reads the CPU count from fw_cfg, copies a real-mode trampoline to 0x8000 and starts every AP with
 * INIT-SIPI-SIPI (broadcast to all but itself). Each AP enters protected mode, takes a stack, prints "cpu N up"
 * (N = its APIC id from CPUID leaf 1) under a spinlock and counts itself in. The BSP waits (at most ~5 s) and
 * prints "all N cpus up", exit 0; or "smp: only K of N cpus up", exit 0x3f. */
#include "runtime.h"

#define TRAMPOLINE_ADDR 0x8000        /* below 1 MiB, 4 KiB aligned: SIPI vector 0x08 */
#define MAX_CPUS 16
#define LAPIC_ICR_LOW  0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_INIT        0x00000500    /* delivery mode INIT */
#define ICR_STARTUP     0x00000600    /* delivery mode start-up; vector = page number */
#define ICR_LEVEL_ASSERT 0x00004000
#define ICR_ALL_BUT_SELF 0x000c0000   /* destination shorthand */
#define ICR_BUSY        0x00001000    /* delivery status: send pending */

extern char ap_trampoline_start[], ap_trampoline_end[];

volatile uint32_t print_lock;
volatile uint32_t aps_up;
volatile uint32_t ap_stack_next;       /* the trampoline takes stacks in order with lock xadd */
uint8_t ap_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));

static void send_ipi(uint32_t icr) {
    mmio_write32(LAPIC_BASE + LAPIC_ICR_HIGH, 0);
    mmio_write32(LAPIC_BASE + LAPIC_ICR_LOW, icr);
    for (unsigned i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LOW) & ICR_BUSY); i++) { }
}

void main(void) {
    uint16_t cpus = 0;
    fw_cfg_read(FW_CFG_NB_CPUS, &cpus, 2);
    uint32_t n = cpus ? cpus : 1;
    if (n > MAX_CPUS) {
        print("smp: %u cpus, starting only %u\n", n, MAX_CPUS);
        n = MAX_CPUS;
    }
    spin_lock(&print_lock);
    print("smp: bsp apic id %u, %u cpus\n", apic_id(), n);
    spin_unlock(&print_lock);
    if (n > 1) {
        memcpy((void *)TRAMPOLINE_ADDR, ap_trampoline_start, ap_trampoline_end - ap_trampoline_start);
        lapic_enable_virtual_wire();
        send_ipi(ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_INIT);
        delay_us(10000);
        for (int i = 0; i < 2; i++) {
            send_ipi(ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
            delay_us(200);
        }
        for (unsigned waited = 0; waited < 500 && __atomic_load_n(&aps_up, __ATOMIC_ACQUIRE) < n - 1; waited++) {
            delay_us(10000);
        }
    }
    uint32_t up = __atomic_load_n(&aps_up, __ATOMIC_ACQUIRE) + 1;
    spin_lock(&print_lock);
    if (up == n) print("all %u cpus up\n", n);
    else print("smp: only %u of %u cpus up\n", up, n);
    spin_unlock(&print_lock);
    debug_exit(up == n ? 0 : EXIT_FAILURE_CODE);
}

/* Called by the trampoline on each AP, in protected mode on its own stack. */
void ap_main(void) {
    uint32_t id = apic_id();
    spin_lock(&print_lock);
    print("cpu %u up\n", id);
    spin_unlock(&print_lock);
    __atomic_fetch_add(&aps_up, 1, __ATOMIC_RELEASE);
    halt_forever();
}
