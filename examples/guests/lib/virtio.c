#include "virtio.h"
#include "irq-wait.h"

#define RING_PAGES 8                          /* queues across all devices */
#define RING_AVAIL_OFFSET 0x400               /* within a queue's page: descriptors at 0 (16 x 16 bytes) */
#define RING_USED_OFFSET  0x800
#define FIRST_QUEUE_VECTOR 0x40               /* IDT vectors handed to queues, one each, upwards */
#define LAST_QUEUE_VECTOR  0xef

static uint8_t ring_pages[RING_PAGES][4096] __attribute__((aligned(4096)));
static unsigned ring_pages_used;
static unsigned next_vector = FIRST_QUEUE_VECTOR;

static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
/* A full barrier (store then load ordering, for the EVENT_IDX checks): a locked no-op, which the emulator has. */
static inline void mb(void) { __asm__ volatile("lock; orl $0, (%%esp)" ::: "memory"); }
static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

static void fail_line(struct virtio_dev *d, const char *what) {
    print("virtio-%s: ", d->name);
    pci_print_bdf(d->pci->bdf);
    print(" %s\n", what);
}

/* Where a capability's structure lives: inside a memory BAR, whole. 0 if it is not. */
static uintptr_t cap_address(struct pci_function *f, uint8_t cap, uint32_t *length) {
    uint8_t bar = pci_cfg_read8(f->bdf, cap + VIRTIO_PCI_CAP_BAR);
    uint32_t offset = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_CAP_OFFSET);
    uint32_t len = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_CAP_LENGTH);
    if (bar >= PCI_NUM_BARS || !f->bar[bar].size || f->bar[bar].io) return 0;
    if ((uint64_t)offset + len > f->bar[bar].size || f->bar[bar].addr + f->bar[bar].size > 0x100000000ull) return 0;
    *length = len;
    return (uintptr_t)f->bar[bar].addr + offset;
}

static int find_structures(struct virtio_dev *d) {
    struct pci_function *f = d->pci;
    uint32_t common_len = 0, isr_len = 0;
    for (uint8_t cap = pci_find_cap(f->bdf, PCI_CAP_ID_VENDOR, 0); cap; cap = pci_find_cap(f->bdf, PCI_CAP_ID_VENDOR, cap)) {
        uint8_t type = pci_cfg_read8(f->bdf, cap + VIRTIO_PCI_CAP_TYPE);
        uint32_t len = 0;
        uintptr_t at = 0;
        /* The first structure of each type is the one to use (4.1.4); later ones are alternatives. */
        switch (type) {
        case VIRTIO_PCI_CAP_COMMON_CFG:
            if (!d->common && (at = cap_address(f, cap, &len))) { d->common = at; common_len = len; }
            break;
        case VIRTIO_PCI_CAP_NOTIFY_CFG:
            if (!d->notify_base && (at = cap_address(f, cap, &len))) {
                d->notify_base = at;
                d->notify_len = len;
                d->notify_mult = pci_cfg_read32(f->bdf, cap + VIRTIO_PCI_NOTIFY_MULTIPLIER);
            }
            break;
        case VIRTIO_PCI_CAP_ISR_CFG:
            if (!d->isr && (at = cap_address(f, cap, &len))) { d->isr = at; isr_len = len; }
            break;
        case VIRTIO_PCI_CAP_DEVICE_CFG:
            if (!d->device_cfg && (at = cap_address(f, cap, &len))) { d->device_cfg = at; d->device_cfg_len = len; }
            break;
        default:
            break;
        }
    }
    if (!d->common || common_len < VIRTIO_COMMON_SIZE) { fail_line(d, "has no usable common configuration capability"); return -1; }
    if (!d->notify_base) { fail_line(d, "has no usable notify capability"); return -1; }
    if (!d->isr || isr_len < 1) { fail_line(d, "has no usable ISR capability"); return -1; }
    return 0;
}

static void set_status(struct virtio_dev *d, uint8_t bits) {
    mmio_write8(d->common + VIRTIO_COMMON_STATUS, mmio_read8(d->common + VIRTIO_COMMON_STATUS) | bits);
}

void virtio_reset(struct virtio_dev *d) {
    mmio_write8(d->common + VIRTIO_COMMON_STATUS, 0);
    /* The reset is complete when status reads back 0 (4.1.4.3.2). Bounded. */
    for (unsigned i = 0; i < 1000 && mmio_read8(d->common + VIRTIO_COMMON_STATUS) != 0; i++) { }
}

int virtio_init(struct virtio_dev *d, struct pci_function *f, const char *name, uint64_t wanted) {
    memset(d, 0, sizeof *d);
    d->pci = f;
    d->name = name;
    if (find_structures(d)) return -1;
    virtio_reset(d);
    if (mmio_read8(d->common + VIRTIO_COMMON_STATUS) != 0) { fail_line(d, "does not finish its reset"); return -1; }
    set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    set_status(d, VIRTIO_STATUS_DRIVER);

    mmio_write32(d->common + VIRTIO_COMMON_DFSELECT, 0);
    uint32_t lo = mmio_read32(d->common + VIRTIO_COMMON_DF);
    mmio_write32(d->common + VIRTIO_COMMON_DFSELECT, 1);
    uint32_t hi = mmio_read32(d->common + VIRTIO_COMMON_DF);
    d->offered = ((uint64_t)hi << 32) | lo;
    if (!(d->offered & VIRTIO_FEATURE(VIRTIO_F_VERSION_1))) { fail_line(d, "does not offer VERSION_1"); return -1; }
    uint64_t want = wanted | VIRTIO_FEATURE(VIRTIO_F_VERSION_1) | VIRTIO_FEATURE(VIRTIO_F_RING_INDIRECT_DESC)
                  | VIRTIO_FEATURE(VIRTIO_F_RING_EVENT_IDX);
    d->features = d->offered & want;
    mmio_write32(d->common + VIRTIO_COMMON_GFSELECT, 0);
    mmio_write32(d->common + VIRTIO_COMMON_GF, (uint32_t)d->features);
    mmio_write32(d->common + VIRTIO_COMMON_GFSELECT, 1);
    mmio_write32(d->common + VIRTIO_COMMON_GF, (uint32_t)(d->features >> 32));
    set_status(d, VIRTIO_STATUS_FEATURES_OK);
    if (!(mmio_read8(d->common + VIRTIO_COMMON_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
        fail_line(d, "refused our features (FEATURES_OK did not stick)");
        set_status(d, VIRTIO_STATUS_FAILED);
        return -1;
    }
    d->num_queues = mmio_read16(d->common + VIRTIO_COMMON_NUMQ);
    if (pci_msix_enable(f, &d->msix)) { set_status(d, VIRTIO_STATUS_FAILED); return -1; }
    /* No configuration-change interrupts: nothing here reacts to them. */
    mmio_write16(d->common + VIRTIO_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
    return 0;
}

int virtio_setup_queue(struct virtio_dev *d, struct virtq *q, uint16_t index) {
    memset(q, 0, sizeof *q);
    q->dev = d;
    q->index = index;
    if (index >= d->num_queues) { fail_line(d, "has too few queues"); return -1; }
    if (ring_pages_used >= RING_PAGES || next_vector > LAST_QUEUE_VECTOR) { fail_line(d, "needs more queues than the guest has room for"); return -1; }
    if (d->msix_next_entry >= d->msix.entries) { fail_line(d, "has too few MSI-X table entries (one per queue)"); return -1; }
    mmio_write16(d->common + VIRTIO_COMMON_Q_SELECT, index);
    uint16_t max = mmio_read16(d->common + VIRTIO_COMMON_Q_SIZE);
    if (max == 0) { fail_line(d, "queue is not available (size 0)"); return -1; }
    uint16_t size = VQ_SIZE_MAX;
    while (size > max) size >>= 1;           /* a power of two no larger than the device's maximum */
    if (size == 0) { fail_line(d, "queue size is unusable"); return -1; }
    mmio_write16(d->common + VIRTIO_COMMON_Q_SIZE, size);
    q->size = size;

    uint8_t *page = ring_pages[ring_pages_used++];
    memset(page, 0, 4096);
    q->desc = (volatile struct virtq_desc *)page;
    q->avail = (volatile uint16_t *)(page + RING_AVAIL_OFFSET);
    q->used = (volatile uint32_t *)(page + RING_USED_OFFSET);
    for (uint16_t i = 0; i < size; i++) q->next[i] = i + 1;
    q->free_head = 0;
    q->num_free = size;

    q->msix_entry = d->msix_next_entry++;
    q->vector = (uint8_t)next_vector++;
    pci_msix_route(&d->msix, q->msix_entry, apic_id(), q->vector);
    mmio_write16(d->common + VIRTIO_COMMON_Q_MSIX, q->msix_entry);
    if (mmio_read16(d->common + VIRTIO_COMMON_Q_MSIX) != q->msix_entry) {
        fail_line(d, "refused the queue's MSI-X vector");
        return -1;
    }
    mmio_write32(d->common + VIRTIO_COMMON_Q_DESCLO, (uint32_t)q->desc);
    mmio_write32(d->common + VIRTIO_COMMON_Q_DESCHI, 0);
    mmio_write32(d->common + VIRTIO_COMMON_Q_AVAILLO, (uint32_t)q->avail);
    mmio_write32(d->common + VIRTIO_COMMON_Q_AVAILHI, 0);
    mmio_write32(d->common + VIRTIO_COMMON_Q_USEDLO, (uint32_t)q->used);
    mmio_write32(d->common + VIRTIO_COMMON_Q_USEDHI, 0);
    uint32_t notify_off = mmio_read16(d->common + VIRTIO_COMMON_Q_NOFF) * d->notify_mult;
    if (notify_off + 2 > d->notify_len) { fail_line(d, "queue's notify address lies outside the notify structure"); return -1; }
    q->notify = d->notify_base + notify_off;
    mmio_write16(d->common + VIRTIO_COMMON_Q_ENABLE, 1);
    return 0;
}

int virtio_driver_ok(struct virtio_dev *d) {
    pci_msix_unmask_function(d->pci, &d->msix);
    set_status(d, VIRTIO_STATUS_DRIVER_OK);
    uint8_t status = mmio_read8(d->common + VIRTIO_COMMON_STATUS);
    if (status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED) || !(status & VIRTIO_STATUS_DRIVER_OK)) {
        fail_line(d, "did not accept DRIVER_OK");
        return -1;
    }
    return 0;
}

/* ---- Device configuration ---- */
static uint8_t generation(struct virtio_dev *d) { return mmio_read8(d->common + VIRTIO_COMMON_CFGGENERATION); }

static int cfg_in_range(struct virtio_dev *d, uint32_t off, uint32_t size) {
    return d->device_cfg && off + size <= d->device_cfg_len;
}

uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off) {
    return cfg_in_range(d, off, 1) ? mmio_read8(d->device_cfg + off) : 0;
}

uint16_t virtio_cfg_read16(struct virtio_dev *d, uint32_t off) {
    return cfg_in_range(d, off, 2) ? mmio_read16(d->device_cfg + off) : 0;
}

uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off) {
    return cfg_in_range(d, off, 4) ? mmio_read32(d->device_cfg + off) : 0;
}

uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off) {
    if (!cfg_in_range(d, off, 8)) return 0;
    uint64_t v = 0;
    for (unsigned tries = 0; tries < 16; tries++) {
        uint8_t before = generation(d);
        v = ((uint64_t)mmio_read32(d->device_cfg + off + 4) << 32) | mmio_read32(d->device_cfg + off);
        if (generation(d) == before) break;
    }
    return v;
}

/* ---- Split virtqueue ---- */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING(i) (2 + (i))
#define USED_IDX(q) (((volatile uint16_t *)(q)->used)[1])
#define USED_ID(q, i) ((q)->used[1 + 2 * (i)])
#define USED_LEN(q, i) ((q)->used[2 + 2 * (i)])
#define USED_FLAGS(q) (((volatile uint16_t *)(q)->used)[0])
#define USED_EVENT(q) ((q)->avail[AVAIL_RING((q)->size)])                            /* in the avail ring */
#define AVAIL_EVENT(q) (((volatile uint16_t *)(q)->used)[2 + 4 * (q)->size])         /* in the used ring */

int vq_add(struct virtq *q, const struct vq_buf *bufs, unsigned n_out, unsigned n_in, int indirect) {
    unsigned n = n_out + n_in;
    indirect = indirect && virtio_has(q->dev, VIRTIO_F_RING_INDIRECT_DESC);
    if (n == 0 || q->num_free < (indirect ? 1 : n) || (indirect && n > VQ_INDIRECT_MAX)) return -1;
    uint16_t head = q->free_head;
    if (indirect) {
        struct virtq_desc *t = q->indirect[head];
        for (unsigned i = 0; i < n; i++) {
            t[i].addr = (uint32_t)bufs[i].addr;
            t[i].len = bufs[i].len;
            t[i].flags = (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) | (i >= n_out ? VIRTQ_DESC_F_WRITE : 0);
            t[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
        }
        q->desc[head].addr = (uint32_t)t;
        q->desc[head].len = n * sizeof(struct virtq_desc);
        q->desc[head].flags = VIRTQ_DESC_F_INDIRECT;
        q->desc[head].next = 0;
        q->free_head = q->next[head];
        q->chain_len[head] = 1;
        q->num_free--;
    } else {
        uint16_t id = head, last = head;
        for (unsigned i = 0; i < n; i++) {
            last = id;
            q->desc[id].addr = (uint32_t)bufs[i].addr;
            q->desc[id].len = bufs[i].len;
            q->desc[id].flags = (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) | (i >= n_out ? VIRTQ_DESC_F_WRITE : 0);
            q->desc[id].next = q->next[id];
            id = q->next[id];
        }
        q->free_head = q->next[last];
        q->chain_len[head] = (uint8_t)n;
        q->num_free -= n;
    }
    q->avail[AVAIL_RING(q->avail_idx % q->size)] = head;
    q->avail_idx++;
    return head;
}

void vq_kick(struct virtq *q) {
    uint16_t old = q->kicked_idx, now = q->avail_idx;
    compiler_barrier();                      /* ring entries before the index (x86 keeps stores in order) */
    q->avail[AVAIL_IDX] = now;
    q->kicked_idx = now;
    mb();                                    /* the index must be visible before we read what the device wants */
    int notify;
    if (virtio_has(q->dev, VIRTIO_F_RING_EVENT_IDX)) {
        uint16_t event = AVAIL_EVENT(q);
        notify = (uint16_t)(now - event - 1) < (uint16_t)(now - old);    /* vring_need_event */
    } else {
        notify = !(USED_FLAGS(q) & VIRTQ_USED_F_NO_NOTIFY);
    }
    if (notify) mmio_write16(q->notify, q->index);
}

int vq_get_used(struct virtq *q, uint32_t *len) {
    if (USED_IDX(q) == q->last_used) return -1;
    compiler_barrier();
    uint16_t slot = q->last_used % q->size;
    uint32_t id = USED_ID(q, slot), written = USED_LEN(q, slot);
    if (id >= q->size || q->chain_len[id] == 0) {
        print("virtio-%s: queue %u: the device returned head %u, which is not in flight\n", q->dev->name, q->index, id);
        return -1;
    }
    q->last_used++;
    /* Back on the free list: the chain's links are our copies in next[] (the device cannot corrupt them). */
    uint16_t last = (uint16_t)id;
    for (unsigned i = 1; i < q->chain_len[id]; i++) last = q->next[last];
    q->next[last] = q->free_head;
    q->free_head = (uint16_t)id;
    q->num_free += q->chain_len[id];
    q->chain_len[id] = 0;
    q->completions++;
    if (len) *len = written;
    return (int)id;
}

int vq_wait(struct virtq *q, uint32_t ms, uint32_t *len) { return vq_wait_until(q, irq_deadline(ms), len); }

int vq_wait_until(struct virtq *q, uint32_t deadline, uint32_t *len) {
    for (;;) {
        /* Ask for an interrupt when the next used entry appears, then look once more before halting. */
        if (virtio_has(q->dev, VIRTIO_F_RING_EVENT_IDX)) USED_EVENT(q) = q->last_used;
        mb();
        int head = vq_get_used(q, len);
        if (head >= 0) return head;
        if (irq_expired(deadline)) return -1;
        irq_wait();
    }
}

uint32_t vq_interrupts(const struct virtq *q) { return irq_counts[q->vector]; }
