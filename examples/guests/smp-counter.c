/* smp-counter: every CPU counts ticks of its own LAPIC timer in a state page at the FIXED guest-physical address
 * 0x101000 (the .state section, see lib/guest.ld), so a checkpoint/restore test can show that every vCPU runs.
 *
 * The BSP reads the CPU count from fw_cfg, calibrates the LAPIC timer against PIT channel 2 (~1 ms per tick), starts
 * every AP with INIT-SIPI-SIPI (the smp guest's trampoline) and waits until each has its timer running. From then on
 * each CPU, BSP included, sits in `sti; hlt` and adds one to ticks[its APIC id] per timer interrupt. Every 100 of its
 * own ticks the BSP prints "smp-counter: T0 T1 … Tn-1". With `ticks=N` on the command line, once every counter is
 * at least N the BSP prints "smp-counter: done T0 … Tn-1" and exits 0; without it the guest runs until killed.
 * All of its state is RAM (this page, the stacks) and the LAPICs' timer registers, which a checkpoint saves. */
#include "runtime.h"

#define TRAMPOLINE_ADDR 0x8000          /* below 1 MiB, 4 KiB aligned: SIPI vector 0x08 */
#define MAX_CPUS 16                     /* = the trampoline's stack count and the size of ticks[] */
#define TIMER_VECTOR 0xf0               /* highest priority class: nothing else can hold it off */
#define TICK_US 1000                    /* one tick, approximately */
#define CALIBRATE_US 10000              /* LAPIC timer measured over this much PIT time */
#define FALLBACK_COUNT_PER_MS 62500     /* KVM's and QEMU's 1 GHz APIC bus / 16, if calibration fails */
#define PRINT_EVERY 100                 /* BSP ticks between two counter lines */
#define SMP_COUNTER_MAGIC 0x43504d53u   /* "SMPC" */

#define ICR_INIT         0x00000500     /* delivery mode INIT */
#define ICR_STARTUP      0x00000600     /* delivery mode start-up; vector = page number */
#define ICR_LEVEL_ASSERT 0x00004000
#define ICR_ALL_BUT_SELF 0x000c0000     /* destination shorthand */

/* Layout documented in README.md and build.ts (SMP_COUNTER_*); tests read it from a RAM file. */
struct smp_counter_state {
    uint32_t magic;                     /* 0x101000: SMP_COUNTER_MAGIC once the fields below are set */
    uint32_t cpus;                      /* 0x101004: CPUs counting (fw_cfg NB_CPUS, at most MAX_CPUS) */
    uint32_t limit;                     /* 0x101008: ticks=N from the command line, 0 = run forever */
    volatile uint32_t running;          /* 0x10100c: CPUs whose timer is running (APs, then the BSP) */
    uint32_t timer_count;               /* 0x101010: LAPIC timer initial count (divide by 16) for one tick */
    uint32_t bsp_apic_id;               /* 0x101014: the BSP's APIC id */
    uint32_t since_print;               /* 0x101018: BSP ticks since its last line */
    uint32_t reserved;                  /* 0x10101c */
    volatile uint64_t ticks[MAX_CPUS];  /* 0x101020: ticks[i] = ticks counted by the CPU with APIC id i */
};

__attribute__((section(".state"), used)) struct smp_counter_state smp_counter_state = { 0 };

/* Used by smp-trampoline.S: each AP takes the next stack with lock xadd and calls ap_main. */
volatile uint32_t ap_stack_next;
uint8_t ap_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));

static volatile uint32_t print_lock;
extern char ap_trampoline_start[], ap_trampoline_end[];

/* Interrupt entries. No iret on this host: drop the 12-byte frame (EIP, CS, EFLAGS), do the work, and jump back to
 * the idle loop. The stack stays balanced because interrupts are only ever enabled inside that loop, so each CPU
 * keeps its own stack (lib's guest_idle would move an AP onto the BSP's boot stack). */
void smpc_timer_entry(void);
void smpc_other_entry(void);
void smpc_idle(void) __attribute__((noreturn));
__asm__(
    "    .text\n"
    "    .globl smpc_timer_entry, smpc_other_entry, smpc_idle\n"
    "smpc_timer_entry:\n"
    "    add $12, %esp\n"
    "    call smpc_on_timer\n"
    "    jmp smpc_idle\n"
    "smpc_other_entry:\n"              /* spurious (0xff) or stray vectors: EOI is a no-op with nothing in service */
    "    add $12, %esp\n"
    "    call lapic_eoi\n"
    "smpc_idle:\n"
    "    sti\n"
    "    hlt\n"
    "    jmp smpc_idle\n");

static void fail(const char *what, uint32_t a, uint32_t b) __attribute__((noreturn));
static void fail(const char *what, uint32_t a, uint32_t b) {
    spin_lock(&print_lock);
    print(what, a, b);
    spin_unlock(&print_lock);
    debug_exit(EXIT_FAILURE_CODE);
}

static void print_counts(const char *prefix) {
    struct smp_counter_state *s = &smp_counter_state;
    spin_lock(&print_lock);
    print("smp-counter:%s", prefix);
    for (uint32_t i = 0; i < s->cpus; i++) print(" %llu", s->ticks[i]);
    print("\n");
    spin_unlock(&print_lock);
}

/* LAPIC timer counts (divide by 16) per tick, measured against PIT channel 2; the fallback if that looks wrong. */
static uint32_t calibrate_tick(void) {
    lapic_timer_oneshot_masked(0xffffffffu);
    delay_us(CALIBRATE_US);
    uint32_t elapsed = 0xffffffffu - lapic_timer_current();
    lapic_timer_oneshot_masked(0);
    uint32_t per_tick = elapsed / (CALIBRATE_US / TICK_US);
    if (per_tick < 1000 || per_tick > 100000000) per_tick = FALLBACK_COUNT_PER_MS * TICK_US / 1000;
    return per_tick;
}

/* This CPU's slot; a CPU whose APIC id has none ends the guest (ids are 0..n-1 under QEMU and tsvmm). */
static uint32_t my_slot(void) {
    uint32_t id = apic_id();
    if (id >= smp_counter_state.cpus) fail("smp-counter: apic id %u outside 0..%u\n", id, smp_counter_state.cpus - 1);
    return id;
}

static void start_timer(void) {
    lapic_enable();
    lapic_timer_periodic(TIMER_VECTOR, smp_counter_state.timer_count);
    __atomic_fetch_add(&smp_counter_state.running, 1, __ATOMIC_RELEASE);
}

void main(void) {
    struct smp_counter_state *s = &smp_counter_state;
    uint16_t nb_cpus = 0;
    fw_cfg_read(FW_CFG_NB_CPUS, &nb_cpus, 2);
    uint32_t n = nb_cpus ? nb_cpus : 1;
    if (n > MAX_CPUS) {
        print("smp-counter: %u cpus, counting only %u\n", n, MAX_CPUS);
        n = MAX_CPUS;
    }
    s->magic = 0;
    s->cpus = n;
    s->limit = cmdline_uint("ticks=", 0);
    s->running = 0;
    s->since_print = 0;
    for (uint32_t i = 0; i < MAX_CPUS; i++) s->ticks[i] = 0;
    s->bsp_apic_id = my_slot();

    for (unsigned v = 0x20; v < 256; v++) idt_set_gate(v, smpc_other_entry);
    idt_set_gate(TIMER_VECTOR, smpc_timer_entry);
    pic_init(0);                        /* every 8259 line masked: a BIOS's PIT tick must not reach us */
    lapic_enable();
    s->timer_count = calibrate_tick();
    __atomic_store_n(&s->magic, SMP_COUNTER_MAGIC, __ATOMIC_RELEASE);
    print("smp-counter: state at 0x%x, %u cpus, limit %u, lapic count %u\n", (uint32_t)s, n, s->limit, s->timer_count);

    if (n > 1) {
        memcpy((void *)TRAMPOLINE_ADDR, ap_trampoline_start, ap_trampoline_end - ap_trampoline_start);
        lapic_send_ipi(ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_INIT);
        delay_us(10000);
        for (int i = 0; i < 2; i++) {
            lapic_send_ipi(ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
            delay_us(200);
        }
        for (unsigned waited = 0; waited < 500 && __atomic_load_n(&s->running, __ATOMIC_ACQUIRE) < n - 1; waited++) {
            delay_us(10000);
        }
        uint32_t up = __atomic_load_n(&s->running, __ATOMIC_ACQUIRE) + 1;
        if (up != n) fail("smp-counter: only %u of %u cpus up\n", up, n);
    }
    spin_lock(&print_lock);
    print("smp-counter: %u cpus counting\n", n);
    spin_unlock(&print_lock);
    start_timer();
    smpc_idle();
}

/* Called by the trampoline on each AP, in protected mode on its own stack. */
void ap_main(void) {
    idt_load();
    my_slot();
    start_timer();
    smpc_idle();
}

/* One tick of this CPU's timer (interrupts off). Only the owner writes its counter; the BSP reads them all. */
void smpc_on_timer(void) {
    struct smp_counter_state *s = &smp_counter_state;
    uint32_t id = my_slot();
    s->ticks[id] = s->ticks[id] + 1;
    lapic_eoi();
    if (id != s->bsp_apic_id) return;
    if (++s->since_print >= PRINT_EVERY) {
        s->since_print = 0;
        print_counts("");
    }
    if (s->limit == 0) return;
    for (uint32_t i = 0; i < s->cpus; i++) {
        if (s->ticks[i] < s->limit) return;
    }
    print_counts(" done");
    debug_exit(0);
}
