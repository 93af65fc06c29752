/* virtio-blk-bench: 4 KiB request throughput of the first modern virtio-blk device on PCI bus 0, for bench/blk.ts.
 * The guest only issues requests and counts them; the HOST times each phase from when the phase's marker lines
 * arrive on COM1, which works the same under every VMM and needs no guest clock or calibration.
 *
 * Completions are POLLED on the used ring with interrupts off: no interrupt delivery cost in either VMM, and
 * interrupts are suppressed at the source too (EVENT_IDX with used_event left at 0, or VIRTQ_AVAIL_F_NO_INTERRUPT).
 * Notifications (kicks) follow the device's avail_event as a driver would.
 *
 * Disk layout the host prepares and checks: 4 KiB block b holds b (u32, little-endian) in its first 4 bytes. Every
 * read checks that stamp; every write writes it (so the image stays as prepared).
 *
 * After an untimed warm-up (64 writes, 64 reads), phases of `count=` requests (default 2000) of 8 sectors (4 KiB):
 *   seq-write qd1, seq-read qd1, rand-read qd1, rand-write qd1, seq-read qd16 (qd= sets the last one's depth)
 * Sequential phases walk blocks 0, 1, 2, … (wrapping at the capacity); random ones pick blocks with an LCG.
 * Output (one line each; bench/blk.ts parses it):
 *   blk-bench: start
 *   blk-bench: capacity S sectors, B blocks, queue size Q, indirect 0|1, event_idx 0|1, completions polled
 *   blk-bench: phase NAME qdD start
 *   blk-bench: phase NAME qdD done N requests E errors
 *   blk-bench: all ok                      (or blk-bench: FAILED …)
 * Exit values: 0 ok, 0x10 no virtio-blk, 0x11 PCI/BAR placement, 0x21 device set-up, 0x22 a request failed. */
#include "runtime.h"
#include "pci.h"
#include "virtio.h"

#define EXIT_OK 0
#define EXIT_NO_BLK 0x10
#define EXIT_PCI 0x11
#define EXIT_SETUP 0x21
#define EXIT_IO 0x22

#define MMIO_BASE  0xc0000000u               /* window for BARs nobody placed: the PCI hole of pc and of tsvmm */
#define MMIO_LIMIT 0xfec00000u               /* IOAPIC, HPET, LAPIC and the BIOS above */
#define POLL_LIMIT (1u << 25)                /* polls of the used ring before a request counts as lost */

#define VIRTIO_BLK_F_RO 5                    /* read-only device */
#define VIRTIO_BLK_CFG_CAPACITY 0            /* u64, 512-byte sectors */
#define VIRTIO_BLK_T_IN  0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_S_OK  0
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1         /* driver: no interrupts please (without EVENT_IDX) */
#define SECTORS_PER_BLOCK 8
#define BLOCK_BYTES 4096
#define MAX_DEPTH VQ_SIZE_MAX                /* one request per descriptor (indirect) at most */
#define DEFAULT_COUNT 2000
#define WARMUP_REQUESTS 64                   /* each way, untimed, before the phases */
#define LCG_MUL 1103515245u                  /* the C standard's example rand() */
#define LCG_ADD 12345u

struct blk_req { uint32_t type, reserved; uint64_t sector; } __attribute__((packed));

/* One in-flight request's memory. */
struct slot {
    struct blk_req hdr;
    uint8_t status;
    uint32_t block;
};

static struct pci_function functions[PCI_MAX_FOUND];
static struct virtio_dev dev;
static struct virtq vq;
static struct slot slots[MAX_DEPTH];
static uint8_t data[MAX_DEPTH][BLOCK_BYTES] __attribute__((aligned(BLOCK_BYTES)));
static int8_t slot_of_head[VQ_SIZE_MAX];     /* which slot a head in flight belongs to */
static uint32_t blocks;                      /* disk size in 4 KiB blocks */
static uint32_t lcg_state = 1;

static void fail(unsigned code, const char *why) {
    print("blk-bench: FAILED: %s\n", why);
    debug_exit(code);
}

static uint32_t random_block(void) {
    lcg_state = lcg_state * LCG_MUL + LCG_ADD;
    return (lcg_state >> 8) % blocks;        /* the low bits of this LCG have short periods */
}

/* Queues slot `s` as a request for `block` (its own indirect table when depth > 1 needs it). */
static int submit(unsigned s, uint32_t type, uint32_t block, int indirect) {
    struct slot *sl = &slots[s];
    sl->hdr.type = type;
    sl->hdr.sector = (uint64_t)block * SECTORS_PER_BLOCK;
    sl->status = 0xff;
    sl->block = block;
    if (type == VIRTIO_BLK_T_OUT) *(uint32_t *)data[s] = block;
    struct vq_buf bufs[3] = { { &sl->hdr, sizeof sl->hdr }, { data[s], BLOCK_BYTES }, { &sl->status, 1 } };
    int head = type == VIRTIO_BLK_T_OUT ? vq_add(&vq, bufs, 2, 1, indirect) : vq_add(&vq, bufs, 1, 2, indirect);
    if (head < 0) return -1;
    slot_of_head[head] = (int8_t)s;
    return 0;
}

/* Polls for the next completion; returns its slot, or fails the run if none comes. Counts bad ones in *errors. */
static unsigned reap(unsigned *errors) {
    int head = -1;
    for (uint32_t polls = 0; head < 0; polls++) {
        if (polls == POLL_LIMIT) fail(EXIT_IO, "a request was not completed (used ring polled 2^25 times)");
        head = vq_get_used(&vq, 0);
    }
    unsigned s = (unsigned)slot_of_head[head];
    struct slot *sl = &slots[s];
    if (sl->status != VIRTIO_BLK_S_OK || (sl->hdr.type == VIRTIO_BLK_T_IN && *(uint32_t *)data[s] != sl->block)) {
        if (!*errors) print("blk-bench: block %u: status %u, stamp %u\n", sl->block, sl->status, *(uint32_t *)data[s]);
        ++*errors;
    }
    return s;
}

/* One phase: `count` requests of `type`, `depth` in flight, sequential or random blocks. Without a name: silent. */
static void phase(const char *name, uint32_t type, int random, unsigned depth, uint32_t count) {
    unsigned errors = 0, free_slots[MAX_DEPTH], nfree = depth;
    uint32_t submitted = 0, completed = 0, next_block = 0;
    int indirect = depth > 1;
    for (unsigned i = 0; i < depth; i++) free_slots[i] = i;
    if (name) print("blk-bench: phase %s qd%u start\n", name, depth);
    while (completed < count) {
        /* Fill the queue, publish once (one notification per batch, as a driver does), then take one completion. */
        while (nfree && submitted < count) {
            uint32_t block = random ? random_block() : next_block;
            if (++next_block == blocks) next_block = 0;
            if (submit(free_slots[--nfree], type, block, indirect)) fail(EXIT_IO, "the queue is full");
            submitted++;
        }
        vq_kick(&vq);
        free_slots[nfree++] = reap(&errors);
        completed++;
    }
    if (name) print("blk-bench: phase %s qd%u done %u requests %u errors\n", name, depth, completed, errors);
    if (errors) fail(EXIT_IO, "requests failed");
}

/* Finds the first modern virtio-blk function and gives its BARs addresses if nobody did. */
static struct pci_function *find_blk(void) {
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    struct pci_function *blk = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        if ((f->class_rev >> 24) == 0x06) continue;    /* bridges: not ours */
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

void main(void) {
    print("blk-bench: start\n");
    struct pci_function *f = find_blk();
    if (virtio_init(&dev, f, "blk", VIRTIO_FEATURE(VIRTIO_BLK_F_RO))) fail(EXIT_SETUP, "device set-up");
    if (virtio_has(&dev, VIRTIO_BLK_F_RO)) fail(EXIT_SETUP, "the device is read-only");
    if (virtio_setup_queue(&dev, &vq, 0)) fail(EXIT_SETUP, "queue set-up");
    /* No interrupts: with EVENT_IDX used_event stays 0 (and flags must stay 0, 2.7.7.1); without, the flag. */
    if (!virtio_has(&dev, VIRTIO_F_RING_EVENT_IDX)) vq.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
    if (virtio_driver_ok(&dev)) fail(EXIT_SETUP, "DRIVER_OK");
    uint64_t capacity = virtio_cfg_read64(&dev, VIRTIO_BLK_CFG_CAPACITY);
    if (capacity / SECTORS_PER_BLOCK == 0 || capacity / SECTORS_PER_BLOCK > 0xffffffffull) fail(EXIT_SETUP, "capacity is not 1..2^32 blocks");
    blocks = (uint32_t)(capacity / SECTORS_PER_BLOCK);
    int indirect = virtio_has(&dev, VIRTIO_F_RING_INDIRECT_DESC);
    print("blk-bench: capacity %llu sectors, %u blocks, queue size %u, indirect %u, event_idx %u, completions polled\n",
          capacity, blocks, vq.size, indirect, virtio_has(&dev, VIRTIO_F_RING_EVENT_IDX));

    uint32_t count = cmdline_uint("count=", DEFAULT_COUNT);
    unsigned depth = cmdline_uint("qd=", MAX_DEPTH);
    unsigned max_depth = indirect ? vq.size : vq.size / 3;   /* a direct request takes 3 descriptors */
    if (depth > max_depth) depth = max_depth;
    if (depth == 0) depth = 1;
    /* Untimed warm-up: the VMM's first requests (thread-pool start, JIT, first touches) are not what is measured. */
    phase(0, VIRTIO_BLK_T_OUT, 0, 1, WARMUP_REQUESTS);
    phase(0, VIRTIO_BLK_T_IN, 0, 1, WARMUP_REQUESTS);
    phase("seq-write", VIRTIO_BLK_T_OUT, 0, 1, count);
    phase("seq-read", VIRTIO_BLK_T_IN, 0, 1, count);
    phase("rand-read", VIRTIO_BLK_T_IN, 1, 1, count);
    phase("rand-write", VIRTIO_BLK_T_OUT, 1, 1, count);
    phase("seq-read", VIRTIO_BLK_T_IN, 0, depth, count);
    virtio_reset(&dev);
    print("blk-bench: all ok\n");
    debug_exit(EXIT_OK);
}
