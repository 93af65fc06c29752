/* virtio-intx: legacy INTx# interrupts of a modern virtio-pci device, end to end through the IOAPIC. MSI-X is never
 * enabled (lib/virtio.c's virtio_init would enable it, and pci_msix_enable sets INTX_DISABLE, so the device is set up
 * here by hand; the split-queue code of lib/virtio.c is reused). The IOAPIC pin is INTERRUPT_LINE, as the firmware or
 * the VMM left it: SeaBIOS on QEMU's pc writes the ISA IRQ of the PIIX PIRQ link (10/11 = IOAPIC pins 10/11), tsvmm
 * presets the GSI the pin is swizzled onto (16-23). The pin is programmed level-triggered, active high, fixed
 * delivery to this CPU. Then, for each of `rounds=` (default 3) virtio-rng requests: kick, wait for the vector, check
 * the used ring, read the ISR (bit 0 set, which lowers the line) and read it again (0). Last, with COMMAND.INTX_DISABLE
 * set a completed request raises nothing for 200 ms (STATUS.INTERRUPT still says the function asserts INTx#), and
 * clearing INTX_DISABLE delivers it.
 *
 * Level-triggered and irq_wait: the stub sends the LAPIC EOI before we read the ISR, while the line is still high, so
 * the IOAPIC (Remote IRR cleared by the EOI, line still asserted) sends the vector again at once. That second
 * delivery waits in the LAPIC's IRR (interrupts are off outside irq_wait); after the ISR read lowered the line we take
 * it (its EOI finds the line low: nothing more) and count it as "redelivered". At most one is tolerated per request.
 *
 * Output: `virtio-intx: rng round K: irq on gsi G vector 0x50, isr 0x1 then 0x0, N bytes, redelivered R` per round,
 * `virtio-intx: rng intx disabled: completed, status.interrupt 1, no irq in 200 ms`, a line like the rounds' for
 * `intx enabled again`, then `virtio-intx: all ok`. Exit values: 0 ok, 0x10 no virtio-rng, 0x11 PCI (BARs, capabilities,
 * pin), 0x12 IOAPIC (pin out of range), 0x22 rng (device refused set-up, no or too many interrupts, bad ISR). */
#include "runtime.h"
#include "pci.h"
#include "virtio.h"
#include "irq-wait.h"

#define EXIT_OK 0
#define EXIT_NO_RNG 0x10
#define EXIT_PCI 0x11
#define EXIT_IOAPIC 0x12
#define EXIT_RNG 0x22

#define INTX_VECTOR 0x50                     /* IDT vector the IOAPIC entry sends */
#define REQUEST_MS 2000                      /* bound on waiting for one interrupt */
#define QUIET_MS 200                         /* INTX_DISABLE: how long no interrupt must come */
#define RNG_BYTES 16
#define DEFAULT_MMIO_BASE 0xc0000000u        /* where BARs the firmware left unassigned go (as virtio-probe) */
#define MMIO_LIMIT        0xfec00000u        /* IOAPIC, HPET, LAPIC and the BIOS above */

/* ---- IOAPIC (82093AA): an index register and a data window ---- */
#define IOAPIC_BASE     0xfec00000u
#define IOAPIC_IOREGSEL 0x00                 /* u32: register index */
#define IOAPIC_IOWIN    0x10                 /* u32: the selected register */
#define IOAPIC_REG_VER  0x01                 /* version: maximum redirection entry in 23:16 */
#define IOAPIC_REDTBL_LO(pin) (0x10 + 2 * (pin))
#define IOAPIC_REDTBL_HI(pin) (0x11 + 2 * (pin))   /* destination APIC id in 31:24 */
#define IOAPIC_RTE_DELIVERY_FIXED 0x00000000u      /* 10:8 = 000 */
#define IOAPIC_RTE_DEST_PHYSICAL  0x00000000u      /* bit 11 = 0 */
#define IOAPIC_RTE_ACTIVE_HIGH    0x00000000u      /* bit 13 = 0 */
#define IOAPIC_RTE_REMOTE_IRR     0x00004000u      /* bit 14 (read-only): level interrupt accepted, no EOI yet */
#define IOAPIC_RTE_LEVEL          0x00008000u      /* bit 15: level-triggered */
#define IOAPIC_RTE_MASKED         0x00010000u      /* bit 16 */

/* ---- LAPIC interrupt request register: 8 x 32 bits, one per 16 bytes ---- */
#define LAPIC_IRR 0x200

#define PCI_INTERRUPT_PIN 0x3d               /* u8: 0 none, 1 INTA# .. 4 INTD# */
#define PCI_STATUS_INTERRUPT 0x0008          /* the function asserts INTx# (even while INTX_DISABLE) */
#define VIRTIO_PCI_ISR_QUEUE 0x1             /* ISR bit 0: a queue interrupt */

static struct pci_function functions[PCI_MAX_FOUND];
static struct virtio_dev dev;
static struct virtq vq;
static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static uint8_t rng_buf[RNG_BYTES];
static uint32_t gsi;
static uint32_t first_deliveries, redeliveries;

static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }

static uint32_t ioapic_read(uint32_t reg) {
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, reg);
    return mmio_read32(IOAPIC_BASE + IOAPIC_IOWIN);
}

static void ioapic_write(uint32_t reg, uint32_t v) {
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, v);
}

static int lapic_irr_pending(uint8_t vector) {
    return (mmio_read32(LAPIC_BASE + LAPIC_IRR + 0x10 * (vector >> 5)) >> (vector & 31)) & 1;
}

__attribute__((noreturn)) static void fail(unsigned code, const char *why) {
    irq_wait_stop();
    print("virtio-intx: FAILED: %s\n", why);
    debug_exit(code);
}

/* ---- virtio set-up without MSI-X (virtio 1.2 4.1.4, 3.1.1) ---- */
/* Where a capability's structure lives, whole inside a memory BAR below 4 GiB; 0 if not. */
static uintptr_t cap_address(struct pci_function *f, uint8_t cap, uint32_t min_len) {
    uint8_t bar = pci_cfg_read8(f->bdf, cap + VIRTIO_PCI_CAP_BAR);
    uint32_t offset = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_CAP_OFFSET);
    uint32_t len = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_CAP_LENGTH);
    if (bar >= PCI_NUM_BARS || !f->bar[bar].size || f->bar[bar].io || len < min_len) return 0;
    if ((uint64_t)offset + len > f->bar[bar].size || f->bar[bar].addr + f->bar[bar].size > 0x100000000ull) return 0;
    return (uintptr_t)f->bar[bar].addr + offset;
}

static void set_status(uint8_t bits) {
    mmio_write8(dev.common + VIRTIO_COMMON_STATUS, mmio_read8(dev.common + VIRTIO_COMMON_STATUS) | bits);
}

/* VERSION_1 only (no EVENT_IDX: every completion interrupts), queue 0 in ring_page, DRIVER_OK. */
static void rng_setup(struct pci_function *f) {
    memset(&dev, 0, sizeof dev);
    dev.pci = f;
    dev.name = "rng";
    for (uint8_t cap = pci_find_cap(f->bdf, PCI_CAP_ID_VENDOR, 0); cap; cap = pci_find_cap(f->bdf, PCI_CAP_ID_VENDOR, cap)) {
        uint8_t type = pci_cfg_read8(f->bdf, cap + VIRTIO_PCI_CAP_TYPE);
        if (type == VIRTIO_PCI_CAP_COMMON_CFG && !dev.common) dev.common = cap_address(f, cap, VIRTIO_COMMON_SIZE);
        if (type == VIRTIO_PCI_CAP_ISR_CFG && !dev.isr) dev.isr = cap_address(f, cap, 1);
        if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !dev.notify_base && (dev.notify_base = cap_address(f, cap, 2))) {
            dev.notify_len = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_CAP_LENGTH);
            dev.notify_mult = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_NOTIFY_MULTIPLIER);
        }
    }
    if (!dev.common || !dev.isr || !dev.notify_base) fail(EXIT_PCI, "virtio-rng lacks a usable common, ISR or notify capability");
    virtio_reset(&dev);
    set_status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    mmio_write32(dev.common + VIRTIO_COMMON_DFSELECT, 1);
    dev.offered = (uint64_t)mmio_read32(dev.common + VIRTIO_COMMON_DF) << 32;
    if (!(dev.offered & VIRTIO_FEATURE(VIRTIO_F_VERSION_1))) fail(EXIT_RNG, "virtio-rng does not offer VERSION_1");
    dev.features = VIRTIO_FEATURE(VIRTIO_F_VERSION_1);
    mmio_write32(dev.common + VIRTIO_COMMON_GFSELECT, 0);
    mmio_write32(dev.common + VIRTIO_COMMON_GF, 0);
    mmio_write32(dev.common + VIRTIO_COMMON_GFSELECT, 1);
    mmio_write32(dev.common + VIRTIO_COMMON_GF, (uint32_t)(dev.features >> 32));
    set_status(VIRTIO_STATUS_FEATURES_OK);
    if (!(mmio_read8(dev.common + VIRTIO_COMMON_STATUS) & VIRTIO_STATUS_FEATURES_OK)) fail(EXIT_RNG, "virtio-rng refused VERSION_1");

    memset(&vq, 0, sizeof vq);
    vq.dev = &dev;
    mmio_write16(dev.common + VIRTIO_COMMON_Q_SELECT, 0);
    uint16_t max = mmio_read16(dev.common + VIRTIO_COMMON_Q_SIZE), size = VQ_SIZE_MAX;
    while (size > max) size >>= 1;           /* a power of two no larger than the device's maximum */
    if (!size) fail(EXIT_RNG, "virtio-rng has no queue 0");
    vq.size = size;
    mmio_write16(dev.common + VIRTIO_COMMON_Q_SIZE, size);
    vq.desc = (volatile struct virtq_desc *)ring_page;
    vq.avail = (volatile uint16_t *)(ring_page + 0x400);
    vq.used = (volatile uint32_t *)(ring_page + 0x800);
    for (uint16_t i = 0; i < size; i++) vq.next[i] = i + 1;
    vq.num_free = size;
    mmio_write32(dev.common + VIRTIO_COMMON_Q_DESCLO, (uint32_t)vq.desc);
    mmio_write32(dev.common + VIRTIO_COMMON_Q_DESCHI, 0);
    mmio_write32(dev.common + VIRTIO_COMMON_Q_AVAILLO, (uint32_t)vq.avail);
    mmio_write32(dev.common + VIRTIO_COMMON_Q_AVAILHI, 0);
    mmio_write32(dev.common + VIRTIO_COMMON_Q_USEDLO, (uint32_t)vq.used);
    mmio_write32(dev.common + VIRTIO_COMMON_Q_USEDHI, 0);
    uint32_t notify_off = mmio_read16(dev.common + VIRTIO_COMMON_Q_NOFF) * dev.notify_mult;
    if (notify_off + 2 > dev.notify_len) fail(EXIT_RNG, "virtio-rng queue 0 notifies outside its notify structure");
    vq.notify = dev.notify_base + notify_off;
    mmio_write16(dev.common + VIRTIO_COMMON_Q_ENABLE, 1);
    set_status(VIRTIO_STATUS_DRIVER_OK);
    if (mmio_read8(dev.common + VIRTIO_COMMON_STATUS) & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) fail(EXIT_RNG, "virtio-rng refused DRIVER_OK");
}

/* Queues one RNG_BYTES request and kicks; returns its head. */
static int rng_request(void) {
    struct vq_buf b = { rng_buf, RNG_BYTES };
    int head = vq_add(&vq, &b, 0, 1, 0);
    if (head < 0) fail(EXIT_RNG, "virtio-rng queue full");
    vq_kick(&vq);
    return head;
}

/* Halts until INTX_VECTOR has arrived (beyond `before` deliveries) or the deadline; returns how many came. */
static uint32_t wait_vector(uint32_t before, uint32_t deadline) {
    while (irq_counts[INTX_VECTOR] == before && !irq_expired(deadline)) irq_wait();
    return irq_counts[INTX_VECTOR] - before;
}

/* Whether the device has used an entry we have not taken yet. */
static int used_pending(void) { return ((volatile uint16_t *)vq.used)[1] != vq.last_used; }

/* After the vector arrived for request `head`: the used entry, the ISR read twice, the redelivery taken and nothing
 * left pending. Prints the result line for round `k` (0: `intx enabled again`). */
static void acknowledge(uint32_t k, int head) {
    uint32_t len = 0;
    int done = vq_get_used(&vq, &len);
    if (done != head) fail(EXIT_RNG, "interrupt came, but the used ring does not hold the request");
    if (len == 0 || len > RNG_BYTES) fail(EXIT_RNG, "the device wrote no or too many bytes");
    uint8_t isr1 = mmio_read8(dev.isr);       /* acknowledges: the line goes low */
    uint8_t isr2 = mmio_read8(dev.isr);
    /* The stub's EOI came while the line was high: the IOAPIC may have sent the vector again. Take it now. */
    uint32_t extra = 0;
    uint32_t deadline = irq_deadline(REQUEST_MS);
    while (lapic_irr_pending(INTX_VECTOR) && !irq_expired(deadline)) extra += wait_vector(irq_counts[INTX_VECTOR], deadline);
    /* One tick later nothing more may come: the line is low, Remote IRR clear. */
    uint32_t settle = irq_deadline(0), count = irq_counts[INTX_VECTOR];
    while (!irq_expired(settle)) irq_wait();
    extra += irq_counts[INTX_VECTOR] - count;
    uint32_t rte = ioapic_read(IOAPIC_REDTBL_LO(gsi));
    if (k) print("virtio-intx: rng round %u: irq on gsi %u vector 0x", k, gsi);
    else print("virtio-intx: rng intx enabled again: irq on gsi %u vector 0x", gsi);
    print_hex(INTX_VECTOR, 2);
    print(", isr 0x");
    print_hex(isr1, 1);
    print(" then 0x");
    print_hex(isr2, 1);
    print(", %u bytes, redelivered %u\n", len, extra);
    first_deliveries++;
    redeliveries += extra;
    if (isr1 != VIRTIO_PCI_ISR_QUEUE || isr2 != 0) fail(EXIT_RNG, "the ISR did not read 0x1 then 0x0");
    if (extra > 1) fail(EXIT_RNG, "the vector kept coming after the ISR read lowered the line");
    if (rte & IOAPIC_RTE_REMOTE_IRR) fail(EXIT_RNG, "the IOAPIC entry's Remote IRR is still set after the EOIs");
}

void main(void) {
    print("virtio-intx: start\n");
    uint32_t rounds = cmdline_uint("rounds=", 3);
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    irq_wait_init();

    struct pci_function *rng = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        if ((f->class_rev >> 24) == 0x06) continue;    /* bridges: not ours */
        pci_size_bars(f);
        if (!rng && f->vendor == VIRTIO_PCI_VENDOR && f->device == VIRTIO_PCI_DEVICE_MODERN + VIRTIO_ID_RNG) rng = f;
    }
    if (!rng) fail(EXIT_NO_RNG, "no modern virtio-rng (1af4:1044) on bus 0");
    pci_reserve_existing(functions, n);
    pci_reserve(MMIO_LIMIT, 0x100000000ull - MMIO_LIMIT);
    struct pci_window window = { DEFAULT_MMIO_BASE, MMIO_LIMIT };
    if (pci_assign_bars(rng, &window, 0)) fail(EXIT_PCI, "cannot place virtio-rng's BARs");
    /* INTx on: INTX_DISABLE clear (pci_assign_bars kept it as it was). */
    pci_cfg_write16(rng->bdf, PCI_COMMAND, pci_cfg_read16(rng->bdf, PCI_COMMAND) & ~PCI_COMMAND_INTX_DISABLE);

    uint8_t pin = pci_cfg_read8(rng->bdf, PCI_INTERRUPT_PIN);
    gsi = pci_cfg_read8(rng->bdf, PCI_INTERRUPT_LINE);
    uint32_t max_entry = (ioapic_read(IOAPIC_REG_VER) >> 16) & 0xff;
    print("virtio-intx: rng ");
    pci_print_bdf(rng->bdf);
    print(" pin INT%c line %u, ioapic pins 0-%u, apic %u\n", pin >= 1 && pin <= 4 ? 'A' + pin - 1 : '?', gsi, max_entry, apic_id());
    if (pin < 1 || pin > 4) fail(EXIT_PCI, "virtio-rng declares no INTx pin");
    if (gsi > max_entry) fail(EXIT_IOAPIC, "INTERRUPT_LINE is not an IOAPIC pin");

    /* Fixed delivery to this CPU, physical destination, level-triggered, active high; unmasked last. */
    uint32_t rte = INTX_VECTOR | IOAPIC_RTE_DELIVERY_FIXED | IOAPIC_RTE_DEST_PHYSICAL | IOAPIC_RTE_ACTIVE_HIGH | IOAPIC_RTE_LEVEL;
    ioapic_write(IOAPIC_REDTBL_LO(gsi), rte | IOAPIC_RTE_MASKED);
    ioapic_write(IOAPIC_REDTBL_HI(gsi), apic_id() << 24);
    ioapic_write(IOAPIC_REDTBL_LO(gsi), rte);

    rng_setup(rng);
    for (uint32_t k = 1; k <= rounds; k++) {
        int head = rng_request();
        if (!wait_vector(irq_counts[INTX_VECTOR], irq_deadline(REQUEST_MS))) fail(EXIT_RNG, "no interrupt within 2000 ms");
        acknowledge(k, head);
    }

    /* INTX_DISABLE: the request completes and the function asserts INTx#, but the pin stays quiet. */
    uint16_t cmd = pci_cfg_read16(rng->bdf, PCI_COMMAND);
    pci_cfg_write16(rng->bdf, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE);
    int head = rng_request();
    uint32_t before = irq_counts[INTX_VECTOR];
    uint32_t quiet = irq_deadline(QUIET_MS);
    while (!irq_expired(quiet)) irq_wait();
    uint32_t early = irq_counts[INTX_VECTOR] - before;
    int completed = used_pending();
    uint32_t status_int = (pci_cfg_read16(rng->bdf, PCI_STATUS) & PCI_STATUS_INTERRUPT) != 0;
    print("virtio-intx: rng intx disabled: %s, status.interrupt %u, %u irqs in %u ms\n",
          completed ? "completed" : "not completed", status_int, early, QUIET_MS);
    if (!completed) fail(EXIT_RNG, "the request did not complete while INTX_DISABLE was set");
    if (!status_int) fail(EXIT_RNG, "STATUS.INTERRUPT is clear with an interrupt pending");
    if (early) fail(EXIT_RNG, "an interrupt came through INTX_DISABLE");
    pci_cfg_write16(rng->bdf, PCI_COMMAND, cmd & ~PCI_COMMAND_INTX_DISABLE);
    if (!wait_vector(before, irq_deadline(REQUEST_MS))) fail(EXIT_RNG, "clearing INTX_DISABLE delivered nothing within 2000 ms");
    acknowledge(0, head);

    irq_wait_stop();
    ioapic_write(IOAPIC_REDTBL_LO(gsi), rte | IOAPIC_RTE_MASKED);
    virtio_reset(&dev);
    print("virtio-intx: %u requests, %u interrupts, %u redelivered after an early EOI\n", rounds + 1, first_deliveries, redeliveries);
    print("virtio-intx: all ok\n");
    debug_exit(EXIT_OK);
}
