/* blk-flood: a guest that tries to wedge the VMM's I/O thread (src/machine/liveness.test.ts). It fills the first
 * modern virtio-blk device's queue (16 entries, the guest library's ring) with reads of sector 0, each one indirect
 * table of 1024 descriptors — the 16-byte header, 1022 times the same 4 MiB buffer, the status byte — so every
 * request asks for almost 4 GiB (the disk must be that large; a sparse file is), kicks once, and then runs the
 * counter guest's clock: a 1 ms PIT tick counts at guest-physical 0x101000, so the host sees whether the guest runs.
 * Completions are counted from the tick (polled; the device is asked for no interrupts).
 * Output: "blk-flood: queued N requests of B bytes", then "blk-flood: ticks T, done D" every 1000 ticks.
 * Exit values: 0x10 no virtio-blk, 0x11 PCI/BAR placement, 0x21 device set-up. */
#include "runtime.h"
#include "pci.h"
#include "virtio.h"

#define EXIT_NO_BLK 0x10
#define EXIT_PCI 0x11
#define EXIT_SETUP 0x21

#define MMIO_BASE  0xc0000000u               /* as virtio-blk-bench: the PCI hole, below the IOAPIC */
#define MMIO_LIMIT 0xfec00000u
#define PIT_DIVISOR_1MS 1193
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_T_IN 0
#define TABLE_ENTRIES 1024                   /* the longest indirect table a device must take (QEMU's bound) */
#define BUFFER_BYTES (4u << 20)
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define COUNTER_MAGIC 0x444f4f4cu            /* "FLOD" */

struct blk_req { uint32_t type, reserved; uint64_t sector; } __attribute__((packed));

/* At 0x101000 as counter.c's (lib/guest.ld's .state section): the host reads `ticks` there. */
struct flood_state {
    volatile uint64_t ticks;
    volatile uint32_t done;                  /* requests completed */
    uint32_t magic;
    uint32_t since_print;                    /* ticks since the last line (no 64-bit division in this runtime) */
};
__attribute__((section(".state"), used)) struct flood_state flood_state = { 0, 0, 0, 0 };

static struct pci_function functions[PCI_MAX_FOUND];
static struct virtio_dev dev;
static struct virtq vq;
static struct virtq_desc tables[VQ_SIZE_MAX][TABLE_ENTRIES] __attribute__((aligned(16)));
static struct blk_req headers[VQ_SIZE_MAX];
static uint8_t status[VQ_SIZE_MAX];
static uint8_t buffer[BUFFER_BYTES] __attribute__((aligned(4096)));

static void fail(unsigned code, const char *why) {
    print("blk-flood: FAILED: %s\n", why);
    debug_exit(code);
}

static struct pci_function *find_blk(void) {
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    struct pci_function *blk = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        if ((f->class_rev >> 24) == 0x06) continue;
        pci_size_bars(f);
        if (!blk && f->vendor == VIRTIO_PCI_VENDOR && f->device == VIRTIO_PCI_DEVICE_MODERN + VIRTIO_ID_BLOCK) blk = f;
    }
    if (!blk) fail(EXIT_NO_BLK, "no modern virtio-blk device on bus 0");
    pci_reserve_existing(functions, n);
    pci_reserve(MMIO_LIMIT, 0x100000000ull - MMIO_LIMIT);
    struct pci_window window = { MMIO_BASE, MMIO_LIMIT };
    if (pci_assign_bars(blk, &window, 0)) fail(EXIT_PCI, "cannot place the BARs");
    return blk;
}

static void set_desc(volatile struct virtq_desc *d, const void *addr, uint32_t len, uint16_t flags, uint16_t next) {
    d->addr = (uint32_t)addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

void main(void) {
    struct flood_state *s = &flood_state;
    s->ticks = 0;
    s->done = 0;
    s->since_print = 0;
    s->magic = COUNTER_MAGIC;
    struct pci_function *f = find_blk();
    if (virtio_init(&dev, f, "blk", VIRTIO_FEATURE(VIRTIO_BLK_F_RO))) fail(EXIT_SETUP, "device set-up");
    if (!virtio_has(&dev, VIRTIO_F_RING_INDIRECT_DESC)) fail(EXIT_SETUP, "no indirect descriptors");
    if (virtio_setup_queue(&dev, &vq, 0)) fail(EXIT_SETUP, "queue set-up");
    /* No interrupts: with EVENT_IDX a used_event the used index will not pass for long; without, the flag. */
    if (virtio_has(&dev, VIRTIO_F_RING_EVENT_IDX)) vq.avail[2 + vq.size] = 0x8000;
    else vq.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
    if (virtio_driver_ok(&dev)) fail(EXIT_SETUP, "DRIVER_OK");

    /* Every descriptor of the ring becomes one request (vq_add's tables hold 4 entries: these are built here). */
    for (uint16_t r = 0; r < vq.size; r++) {
        headers[r].type = VIRTIO_BLK_T_IN;
        headers[r].sector = 0;
        status[r] = 0xff;
        struct virtq_desc *t = tables[r];
        set_desc(&t[0], &headers[r], sizeof headers[r], VIRTQ_DESC_F_NEXT, 1);
        for (uint16_t i = 1; i < TABLE_ENTRIES - 1; i++)
            set_desc(&t[i], buffer, BUFFER_BYTES, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, i + 1);
        set_desc(&t[TABLE_ENTRIES - 1], &status[r], 1, VIRTQ_DESC_F_WRITE, 0);
        set_desc(&vq.desc[r], t, sizeof tables[r], VIRTQ_DESC_F_INDIRECT, 0);
        vq.avail[2 + (vq.avail_idx % vq.size)] = r;
        vq.avail_idx++;
        vq.chain_len[r] = 1;                 /* in flight, for vq_get_used */
    }
    vq.num_free = 0;
    vq_kick(&vq);
    print("blk-flood: queued %u requests of %u bytes\n", vq.size, (TABLE_ENTRIES - 2) * BUFFER_BYTES + 1);

    lapic_enable_virtual_wire();
    pic_init(1u << 0);
    pit_periodic(PIT_DIVISOR_1MS);
    guest_idle();
}

void on_irq(unsigned irq) {
    struct flood_state *s = &flood_state;
    if (irq == 0) {
        uint64_t t = s->ticks + 1;
        s->ticks = t;
        while (vq_get_used(&vq, 0) >= 0) s->done++;
        if (++s->since_print == 1000) {
            s->since_print = 0;
            print("blk-flood: ticks %u, done %u\n", (uint32_t)t, s->done);
        }
    }
    pic_eoi(irq);
}
