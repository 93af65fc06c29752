/* virtio-probe: enumerates PCI bus 0 (type-1, and ECAM when given `ecam=0x…`), places BARs itself where firmware or
 * the VMM left them unassigned (or above 4 GiB), and drives every modern virtio-pci device it finds with MSI-X
 * interrupts: blk (write/read back/flush/GET_ID/out-of-range read), rng, console (port 0, no MULTIPORT) and net
 * (an ARP request out, the reply in). Output and exit codes are documented in README.md; the host side is
 * examples/guests/virtio-probe-host.ts. Command line (any order):
 *   want=blk,rng,console,net  these must be present (else exit 0x10)
 *   ecam=0x…                  ECAM base of bus 0: compared with type-1, then used for all config accesses
 *   mmio=0x… mmio_size=0x…    window for BARs we place (default 0xc0000000, up to 0xfec00000)
 *   reassign=1                place every virtio memory BAR ourselves, even the assigned ones
 *   console_wait=MS           how long to wait for console input (default 1000; 0 = do not wait)
 *   net_wait=MS               how long to wait for the ARP reply (default 2000)
 *   rounds=N                  after the tests, keep blk and rng set up (queues, DRIVER_OK, MSI-X) and run N more
 *                             rounds on them: blk writes sector ROUND_FIRST_SECTOR + K - 1, reads it back and compares,
 *                             rng fills 64 bytes; each request must raise its queue's MSI-X vector. Prints
 *                             `virtio-probe: round K ok` per round (default 0: no rounds, devices reset as before)
 *   round_delay_ms=MS         halt this long (on the 10 ms LAPIC tick) after each round (default 100), so a host can
 *                             checkpoint the VM between (or during) rounds
 *   hold_after=K              after round K, print `virtio-probe: holding after round K` and wait for a byte on
 *                             COM1 before the next round: a host checkpoints a guest that cannot have finished, and
 *                             the process it restores into lets it go on (default 0: no hold) */
#include "runtime.h"
#include "pci.h"
#include "virtio.h"
#include "irq-wait.h"

/* Exit values (isa-debug-exit; the VMM's status is value * 2 + 1). */
#define EXIT_OK 0
#define EXIT_WANTED_MISSING 0x10
#define EXIT_PCI 0x11
#define EXIT_BLK 0x21
#define EXIT_RNG 0x22
#define EXIT_CONSOLE 0x23
#define EXIT_NET 0x24
#define EXIT_ROUNDS 0x25                     /* rounds= asked for, but neither blk nor rng is there to use */

#define DEFAULT_MMIO_BASE 0xc0000000u        /* the PCI hole of QEMU's pc with < 3 GiB RAM, and of tsvmm */
#define MMIO_LIMIT        0xfec00000u        /* IOAPIC, HPET, LAPIC and the BIOS above */
#define ECAM_SIZE         0x10000000u        /* 256 buses x 1 MiB */
#define REQUEST_MS 20000                     /* bound on any one request: a hang guard far above a loaded nested-KVM host */

static struct pci_function functions[PCI_MAX_FOUND];
static unsigned first_failure;
/* rounds= (0: the default single pass). When set, blk and rng stay set up after their tests for the rounds. */
static uint32_t rounds;
static struct virtio_dev *round_blk_dev, *round_rng_dev;
static struct virtq *round_blk_q, *round_rng_q;
static uint64_t round_blk_capacity;

static void failed(unsigned code) { if (!first_failure) first_failure = code; }

/* ---- Command line ---- */
/* Whether the comma-separated value of `want=` lists `name`. */
static int wanted(const char *name) {
    const char *s = mb_cmdline();
    size_t n = strlen(name);
    while (*s) {
        while (*s == ' ') s++;
        if (strncmp(s, "want=", 5) == 0) {
            s += 5;
            while (*s && *s != ' ') {
                if (strncmp(s, name, n) == 0 && (s[n] == ',' || s[n] == ' ' || s[n] == 0)) return 1;
                while (*s && *s != ',' && *s != ' ') s++;
                if (*s == ',') s++;
            }
            return 0;
        }
        while (*s && *s != ' ') s++;
    }
    return 0;
}

static const char *const type_names[] = { "?", "net", "blk", "console", "rng" };

/* A queue that completed requests but has counted no interrupt yet. */
static int interrupt_pending(struct virtq *qs, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if (qs[i].completions && !vq_interrupts(&qs[i])) return 1;
    return 0;
}

/* Settles pending interrupts: one tick's worth of halting, so messages already sent are counted. The VMM writes the
 * used ring before it signals, so on a loaded host the interrupt may come later still: a queue that completed
 * requests waits for its first one up to REQUEST_MS (a hang bound, not a budget). */
static void settle_interrupts(struct virtq *qs, unsigned n) {
    uint32_t deadline = irq_deadline(0);
    while (!irq_expired(deadline)) irq_wait();
    deadline = irq_deadline(REQUEST_MS);
    while (interrupt_pending(qs, n) && !irq_expired(deadline)) irq_wait();
}

/* Every queue that completed something must have had its MSI-X vector fire at least once. */
static int check_interrupts(const char *name, struct virtq *qs, unsigned n) {
    settle_interrupts(qs, n);
    int ok = 1;
    print("virtio-%s: msi-x", name);
    for (unsigned i = 0; i < n; i++) {
        print(" q%u vector 0x", qs[i].index);
        print_hex(qs[i].vector, 2);
        print(" %u irqs/%u used", vq_interrupts(&qs[i]), qs[i].completions);
        if (qs[i].completions && !vq_interrupts(&qs[i])) ok = 0;
    }
    print("\n");
    if (!ok) print("virtio-%s: FAILED: a queue completed requests without any MSI-X interrupt\n", name);
    return ok;
}

static void print_features(struct virtio_dev *d) {
    print("virtio-%s: ", d->name);
    pci_print_bdf(d->pci->bdf);
    print(" features offered 0x%x%x, using 0x%x%x, %u queues, %u msi-x entries\n",
          (uint32_t)(d->offered >> 32), (uint32_t)d->offered, (uint32_t)(d->features >> 32), (uint32_t)d->features,
          d->num_queues, d->msix.entries);
}

/* ---- virtio-blk (5.2) ---- */
#define VIRTIO_BLK_F_RO    5                 /* read-only device */
#define VIRTIO_BLK_F_FLUSH 9                 /* FLUSH requests */
#define VIRTIO_BLK_CFG_CAPACITY 0            /* u64, 512-byte sectors */
#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR 512
#define PATTERN_FIRST_SECTOR 1
#define PATTERN_SECTORS 8

struct blk_req { uint32_t type, reserved; uint64_t sector; } __attribute__((packed));

static struct blk_req blk_hdr;
static uint8_t blk_status;
static uint8_t blk_out[PATTERN_SECTORS * SECTOR], blk_in[PATTERN_SECTORS * SECTOR];
static char blk_id[VIRTIO_BLK_ID_BYTES + 1];

/* Byte k of pattern sector s (README.md; virtio-probe-host.ts checks the image against the same formula). */
static uint8_t pattern_byte(uint32_t s, uint32_t k) { return (uint8_t)(s * 37 + k * 13 + (k >> 8) + 0x5a); }

/* One request: header, optional data (to the device for OUT, from it otherwise), status. Returns the status, or
 * -1 (printed) when the device did not complete it. */
static int blk_request(struct virtq *q, uint32_t type, uint64_t sector, void *data, uint32_t len, int indirect,
                       uint32_t *used_len) {
    blk_hdr.type = type;
    blk_hdr.reserved = 0;
    blk_hdr.sector = sector;
    blk_status = 0xff;
    struct vq_buf bufs[3];
    unsigned n_out = 1, n_in = 0;
    bufs[0] = (struct vq_buf){ &blk_hdr, sizeof blk_hdr };
    if (len && type == VIRTIO_BLK_T_OUT) bufs[n_out++] = (struct vq_buf){ data, len };
    else if (len) bufs[n_out + n_in++] = (struct vq_buf){ data, len };
    bufs[n_out + n_in++] = (struct vq_buf){ &blk_status, 1 };
    int head = vq_add(q, bufs, n_out, n_in, indirect);
    if (head < 0) { print("virtio-blk: FAILED: queue full\n"); return -1; }
    vq_kick(q);
    uint32_t written = 0;
    int done = vq_wait(q, REQUEST_MS, &written);
    if (done < 0) { print("virtio-blk: FAILED: request type %u sector %u not completed in %u ms\n", type, (uint32_t)sector, REQUEST_MS); return -1; }
    if (done != head) { print("virtio-blk: FAILED: completed head %u, expected %u\n", done, head); return -1; }
    if (used_len) *used_len = written;
    return blk_status;
}

static int test_blk(struct pci_function *f) {
    static struct virtio_dev d;
    static struct virtq q;
    if (virtio_init(&d, f, "blk", VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH) | VIRTIO_FEATURE(VIRTIO_BLK_F_RO))) return -1;
    print_features(&d);
    if (virtio_has(&d, VIRTIO_BLK_F_RO)) { print("virtio-blk: FAILED: the device is read-only\n"); return -1; }
    if (!virtio_has(&d, VIRTIO_BLK_F_FLUSH)) { print("virtio-blk: FAILED: the device does not offer FLUSH\n"); return -1; }
    if (virtio_setup_queue(&d, &q, 0) || virtio_driver_ok(&d)) return -1;
    uint64_t capacity = virtio_cfg_read64(&d, VIRTIO_BLK_CFG_CAPACITY);
    if (capacity < PATTERN_FIRST_SECTOR + PATTERN_SECTORS) {
        print("virtio-blk: FAILED: capacity %llu sectors is too small for the pattern\n", capacity);
        return -1;
    }
    for (uint32_t s = 0; s < PATTERN_SECTORS; s++)
        for (uint32_t k = 0; k < SECTOR; k++) blk_out[s * SECTOR + k] = pattern_byte(PATTERN_FIRST_SECTOR + s, k);

    /* The write goes as one indirect descriptor (when negotiated), the read as a plain chain. */
    int st = blk_request(&q, VIRTIO_BLK_T_OUT, PATTERN_FIRST_SECTOR, blk_out, sizeof blk_out, 1, 0);
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: write status %u\n", st); return -1; }
    memset(blk_in, 0, sizeof blk_in);
    uint32_t used = 0;
    st = blk_request(&q, VIRTIO_BLK_T_IN, PATTERN_FIRST_SECTOR, blk_in, sizeof blk_in, 0, &used);
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: read status %u\n", st); return -1; }
    if (used != sizeof blk_in + 1) print("virtio-blk: note: read reported %u bytes written, expected %u\n", used, (uint32_t)sizeof blk_in + 1);
    for (uint32_t i = 0; i < sizeof blk_in; i++) {
        if (blk_in[i] != blk_out[i]) {
            print("virtio-blk: FAILED: read back 0x%x at byte %u of sector %u, wrote 0x%x\n", blk_in[i], i % SECTOR,
                  PATTERN_FIRST_SECTOR + i / SECTOR, blk_out[i]);
            return -1;
        }
    }
    st = blk_request(&q, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, 0);
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: flush status %u\n", st); return -1; }
    memset(blk_id, 0, sizeof blk_id);
    st = blk_request(&q, VIRTIO_BLK_T_GET_ID, 0, blk_id, VIRTIO_BLK_ID_BYTES, 1, 0);
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: GET_ID status %u\n", st); return -1; }
    for (unsigned i = 0; i < VIRTIO_BLK_ID_BYTES && blk_id[i]; i++) if (blk_id[i] < 0x20 || blk_id[i] > 0x7e) blk_id[i] = '?';
    /* One sector at the capacity: past the end, so the device must answer IOERR (and write nothing useful). */
    st = blk_request(&q, VIRTIO_BLK_T_IN, capacity, blk_in, SECTOR, 0, 0);
    if (st != VIRTIO_BLK_S_IOERR) {
        if (st >= 0) print("virtio-blk: FAILED: reading sector %llu (= capacity) gave status %u, expected IOERR (1)\n", capacity, st);
        return -1;
    }
    if (!check_interrupts("blk", &q, 1)) return -1;
    print("virtio-blk: capacity %llu, write/read ok, flush ok, id %s, oob ioerr\n", capacity, blk_id[0] ? blk_id : "(none)");
    if (rounds) { round_blk_dev = &d; round_blk_q = &q; round_blk_capacity = capacity; return 0; }   /* kept for the rounds */
    virtio_reset(&d);
    return 0;
}

/* ---- virtio-rng (5.4) ---- */
#define RNG_BYTES 64

static uint8_t rng_buf[2][RNG_BYTES];

static int test_rng(struct pci_function *f) {
    static struct virtio_dev d;
    static struct virtq q;
    if (virtio_init(&d, f, "rng", 0)) return -1;
    print_features(&d);
    if (virtio_setup_queue(&d, &q, 0) || virtio_driver_ok(&d)) return -1;
    for (unsigned round = 0; round < 2; round++) {
        uint32_t got = 0;
        /* The device may fill less than asked: ask again for the rest (bounded). */
        for (unsigned tries = 0; got < RNG_BYTES && tries < 8; tries++) {
            struct vq_buf b = { rng_buf[round] + got, RNG_BYTES - got };
            int head = vq_add(&q, &b, 0, 1, 0);
            if (head < 0) { print("virtio-rng: FAILED: queue full\n"); return -1; }
            vq_kick(&q);
            uint32_t len = 0;
            if (vq_wait(&q, REQUEST_MS, &len) != head) { print("virtio-rng: FAILED: no entropy within %u ms\n", REQUEST_MS); return -1; }
            if (len > RNG_BYTES - got) { print("virtio-rng: FAILED: device wrote %u bytes into a %u-byte buffer\n", len, RNG_BYTES - got); return -1; }
            got += len;
        }
        if (got < RNG_BYTES) { print("virtio-rng: FAILED: only %u of %u bytes\n", got, RNG_BYTES); return -1; }
        int nonzero = 0;
        for (unsigned i = 0; i < RNG_BYTES; i++) nonzero |= rng_buf[round][i];
        if (!nonzero) { print("virtio-rng: FAILED: 64 zero bytes\n"); return -1; }
    }
    int differ = 0;
    for (unsigned i = 0; i < RNG_BYTES; i++) differ |= rng_buf[0][i] ^ rng_buf[1][i];
    if (!differ) { print("virtio-rng: FAILED: two requests returned the same 64 bytes\n"); return -1; }
    if (!check_interrupts("rng", &q, 1)) return -1;
    print("virtio-rng: ok\n");
    if (rounds) { round_rng_dev = &d; round_rng_q = &q; return 0; }   /* kept for the rounds */
    virtio_reset(&d);
    return 0;
}

/* ---- virtio-console (5.3), port 0 without MULTIPORT: receiveq 0, transmitq 1 ---- */
#define CONSOLE_RX_BUFFERS 4
#define CONSOLE_RX_BYTES 64
#define CONSOLE_LINE_MAX 120

static const char console_hello[] = "virtio-console: hello\n";
static uint8_t console_rx[CONSOLE_RX_BUFFERS][CONSOLE_RX_BYTES];
static char console_line[CONSOLE_LINE_MAX + 1];

static int test_console(struct pci_function *f) {
    static struct virtio_dev d;
    static struct virtq q[2];
    /* No feature bits of its own: without F_MULTIPORT, port 0 is a plain console on queues 0 and 1. */
    if (virtio_init(&d, f, "console", 0)) return -1;
    print_features(&d);
    if (virtio_setup_queue(&d, &q[0], 0) || virtio_setup_queue(&d, &q[1], 1)) return -1;
    struct virtq *rx = &q[0], *tx = &q[1];
    /* Receive buffers go in before DRIVER_OK, so host input has somewhere to land as soon as the port opens. */
    int rx_head[CONSOLE_RX_BUFFERS];
    for (unsigned i = 0; i < CONSOLE_RX_BUFFERS; i++) {
        struct vq_buf b = { console_rx[i], CONSOLE_RX_BYTES };
        rx_head[i] = vq_add(rx, &b, 0, 1, 0);
    }
    vq_kick(rx);
    if (virtio_driver_ok(&d)) return -1;

    struct vq_buf out = { console_hello, sizeof console_hello - 1 };
    int head = vq_add(tx, &out, 1, 0, 0);
    vq_kick(tx);
    if (head < 0 || vq_wait(tx, REQUEST_MS, 0) != head) { print("virtio-console: FAILED: transmit not completed in %u ms\n", REQUEST_MS); return -1; }
    print("virtio-console: hello sent\n");

    uint32_t wait_ms = cmdline_uint("console_wait=", 1000);
    unsigned n = 0;
    int line_done = 0;
    uint32_t deadline = irq_deadline(wait_ms);
    while (wait_ms && !line_done) {
        uint32_t len = 0;
        int h = vq_wait_until(rx, deadline, &len);
        if (h < 0) break;
        unsigned which = CONSOLE_RX_BUFFERS;
        for (unsigned i = 0; i < CONSOLE_RX_BUFFERS; i++) if (rx_head[i] == h) which = i;
        if (which == CONSOLE_RX_BUFFERS || len > CONSOLE_RX_BYTES) { print("virtio-console: FAILED: bad receive completion (head %u, %u bytes)\n", h, len); return -1; }
        for (uint32_t i = 0; i < len && !line_done; i++) {
            char c = (char)console_rx[which][i];
            if (c == '\n' || c == '\r') { line_done = n > 0; continue; }
            if (n < CONSOLE_LINE_MAX) console_line[n++] = (c >= 0x20 && c <= 0x7e) ? c : '?';
        }
        struct vq_buf b = { console_rx[which], CONSOLE_RX_BYTES };   /* give the buffer back */
        rx_head[which] = vq_add(rx, &b, 0, 1, 0);
        vq_kick(rx);
    }
    console_line[n] = 0;
    if (!check_interrupts("console", q, 2)) return -1;
    if (n) print("virtio-console: received \"%s\"\n", console_line);
    else print("virtio-console: no input\n");
    virtio_reset(&d);
    return 0;
}

/* ---- virtio-net (5.1): receiveq1 0, transmitq1 1; no MRG_RXBUF, so every RX buffer holds a whole frame ---- */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_CFG_MAC 0                 /* u8[6] */
#define VIRTIO_NET_HDR_BYTES 12              /* struct virtio_net_hdr_v1 (with num_buffers, always in 1.x) */
#define NET_RX_BUFFERS 4
#define NET_RX_BYTES 1536                    /* >= 12 + 1514: a full frame without MRG_RXBUF */
#define ETH_HLEN 14
#define ETHERTYPE_ARP 0x0806
#define ARP_FRAME_BYTES 60                   /* 14 + 28, padded to the Ethernet minimum */
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2
static const uint8_t guest_ip[4] = { 10, 0, 2, 15 };
static const uint8_t peer_ip[4] = { 10, 0, 2, 2 };

static uint8_t net_tx_hdr[VIRTIO_NET_HDR_BYTES];
static uint8_t net_tx_frame[ARP_FRAME_BYTES];
static uint8_t net_rx[NET_RX_BUFFERS][NET_RX_BYTES];

static int memcmp_eq(const uint8_t *a, const uint8_t *b, unsigned n) {
    for (unsigned i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static void print_mac(const uint8_t *m) {
    for (unsigned i = 0; i < 6; i++) {
        if (i) putc_serial(':');
        print_hex(m[i], 2);
    }
}

/* RFC 1071 Internet checksum (ones' complement of the ones' complement sum); trailing zero padding changes nothing. */
static uint16_t inet_checksum(const uint8_t *p, uint32_t len) {
    uint32_t sum = 0;
    for (uint32_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1) sum += (uint32_t)p[len - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void build_arp_request(const uint8_t *mac) {
    uint8_t *f = net_tx_frame;
    memset(f, 0, ARP_FRAME_BYTES);
    memset(f, 0xff, 6);                                 /* broadcast */
    memcpy(f + 6, mac, 6);
    f[12] = ETHERTYPE_ARP >> 8; f[13] = ETHERTYPE_ARP & 0xff;
    uint8_t *a = f + ETH_HLEN;
    a[0] = 0; a[1] = 1;                                 /* htype Ethernet */
    a[2] = 0x08; a[3] = 0x00;                           /* ptype IPv4 */
    a[4] = 6; a[5] = 4;
    a[6] = 0; a[7] = ARP_OP_REQUEST;
    memcpy(a + 8, mac, 6);
    memcpy(a + 14, guest_ip, 4);
    memcpy(a + 24, peer_ip, 4);                         /* target MAC (a + 18) stays zero */
}

static int test_net(struct pci_function *f) {
    static struct virtio_dev d;
    static struct virtq q[2];
    if (virtio_init(&d, f, "net", VIRTIO_FEATURE(VIRTIO_NET_F_MAC))) return -1;
    print_features(&d);
    if (!virtio_has(&d, VIRTIO_NET_F_MAC)) { print("virtio-net: FAILED: the device has no MAC address (F_MAC)\n"); return -1; }
    if (virtio_setup_queue(&d, &q[0], 0) || virtio_setup_queue(&d, &q[1], 1)) return -1;
    struct virtq *rx = &q[0], *tx = &q[1];
    int rx_head[NET_RX_BUFFERS];
    for (unsigned i = 0; i < NET_RX_BUFFERS; i++) {
        struct vq_buf b = { net_rx[i], NET_RX_BYTES };
        rx_head[i] = vq_add(rx, &b, 0, 1, 0);
    }
    vq_kick(rx);
    if (virtio_driver_ok(&d)) return -1;
    uint8_t mac[6];
    for (unsigned i = 0; i < 6; i++) mac[i] = virtio_cfg_read8(&d, VIRTIO_NET_CFG_MAC + i);
    print("virtio-net: mac ");
    print_mac(mac);
    print("\n");

    build_arp_request(mac);
    memset(net_tx_hdr, 0, sizeof net_tx_hdr);          /* no offloads */
    struct vq_buf out[2] = { { net_tx_hdr, VIRTIO_NET_HDR_BYTES }, { net_tx_frame, ARP_FRAME_BYTES } };
    int head = vq_add(tx, out, 2, 0, 0);
    vq_kick(tx);
    if (head < 0 || vq_wait(tx, REQUEST_MS, 0) != head) { print("virtio-net: FAILED: transmit not completed in %u ms\n", REQUEST_MS); return -1; }
    print("virtio-net: sent arp who-has %u.%u.%u.%u tell %u.%u.%u.%u\n", peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3],
          guest_ip[0], guest_ip[1], guest_ip[2], guest_ip[3]);

    uint32_t wait_ms = cmdline_uint("net_wait=", 2000);
    uint32_t deadline = irq_deadline(wait_ms);
    unsigned ignored = 0;
    int found = 0;
    while (!found) {
        uint32_t len = 0;
        int h = vq_wait_until(rx, deadline, &len);
        if (h < 0) break;
        unsigned which = NET_RX_BUFFERS;
        for (unsigned i = 0; i < NET_RX_BUFFERS; i++) if (rx_head[i] == h) which = i;
        if (which == NET_RX_BUFFERS || len > NET_RX_BYTES || len < VIRTIO_NET_HDR_BYTES) {
            print("virtio-net: FAILED: bad receive completion (head %u, %u bytes)\n", h, len);
            return -1;
        }
        const uint8_t *fr = net_rx[which] + VIRTIO_NET_HDR_BYTES;
        uint32_t flen = len - VIRTIO_NET_HDR_BYTES;
        uint16_t type = flen >= ETH_HLEN ? (uint16_t)(fr[12] << 8 | fr[13]) : 0;
        const uint8_t *a = fr + ETH_HLEN;
        if (type == ETHERTYPE_ARP && flen >= ETH_HLEN + 28 && a[7] == ARP_OP_REPLY && memcmp_eq(a + 14, peer_ip, 4)
            && memcmp_eq(a + 24, guest_ip, 4) && memcmp_eq(fr, mac, 6)) {
            print("virtio-net: rx ethertype 0x");
            print_hex(type, 4);
            print(" len %u sum 0x", flen);
            print_hex(inet_checksum(fr + ETH_HLEN, flen - ETH_HLEN), 4);
            print("\nvirtio-net: arp reply %u.%u.%u.%u is-at ", a[14], a[15], a[16], a[17]);
            print_mac(a + 8);
            print("\n");
            found = 1;
        } else {
            ignored++;
        }
        struct vq_buf b = { net_rx[which], NET_RX_BYTES };
        rx_head[which] = vq_add(rx, &b, 0, 1, 0);
        vq_kick(rx);
    }
    if (ignored) print("virtio-net: (ignored %u other frames)\n", ignored);
    if (!found) { print("virtio-net: FAILED: no ARP reply within %u ms\n", wait_ms); return -1; }
    if (!check_interrupts("net", q, 2)) return -1;
    virtio_reset(&d);
    return 0;
}

/* ---- rounds=N: more work on the devices as they are (queues, DRIVER_OK, MSI-X unchanged since the tests) ---- */
#define ROUND_FIRST_SECTOR 16                /* round K writes sector 16 + K - 1 (clear of the pattern's 1-8) */
#define DEFAULT_ROUND_DELAY_MS 100

static uint8_t round_out[SECTOR], round_in[SECTOR];
static uint8_t round_rng[2][RNG_BYTES];      /* this round's bytes and the previous round's, alternately */

/* EVENT_IDX: ask for an interrupt on the very next completion before the device can see the request. vq_wait arms
 * used_event too, but only after the kick, and a device faster than us may complete before that: no interrupt. */
static void arm_used_event(struct virtq *q) {
    if (virtio_has(q->dev, VIRTIO_F_RING_EVENT_IDX)) q->avail[2 + q->size] = q->last_used;
}

/* Halts (interrupts on) until `ms` have passed on the 10 ms tick. */
static void halt_ms(uint32_t ms) {
    if (!ms) return;
    uint32_t deadline = irq_deadline(ms);
    while (!irq_expired(deadline)) irq_wait();
}

/* The round's requests all asked for an interrupt: its vector must have fired since `before`. Two completions may
 * share one delivery (the second MSI finds the first still pending in the LAPIC), so at least one is required. */
static int round_interrupted(struct virtq *q, uint32_t before, const char *name, uint32_t k) {
    uint32_t deadline = irq_deadline(REQUEST_MS);
    while (vq_interrupts(q) == before && !irq_expired(deadline)) irq_wait();
    if (vq_interrupts(q) != before) return 0;
    print("virtio-%s: FAILED: round %u completed without an MSI-X interrupt on vector 0x", name, k);
    print_hex(q->vector, 2);
    print("\n");
    return -1;
}

static int blk_round(struct virtq *q, uint32_t k) {
    uint32_t sector = ROUND_FIRST_SECTOR + k - 1;
    for (uint32_t i = 0; i < SECTOR; i++) round_out[i] = pattern_byte(sector, i);
    uint32_t before = vq_interrupts(q);
    arm_used_event(q);
    int st = blk_request(q, VIRTIO_BLK_T_OUT, sector, round_out, SECTOR, 1, 0);   /* indirect, as the test's write */
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: round %u write status %u\n", k, st); return -1; }
    memset(round_in, 0, sizeof round_in);
    arm_used_event(q);
    st = blk_request(q, VIRTIO_BLK_T_IN, sector, round_in, SECTOR, 0, 0);
    if (st != VIRTIO_BLK_S_OK) { if (st >= 0) print("virtio-blk: FAILED: round %u read status %u\n", k, st); return -1; }
    for (uint32_t i = 0; i < SECTOR; i++) {
        if (round_in[i] != round_out[i]) {
            print("virtio-blk: FAILED: round %u read back 0x%x at byte %u of sector %u, wrote 0x%x\n", k, round_in[i], i, sector, round_out[i]);
            return -1;
        }
    }
    return round_interrupted(q, before, "blk", k);
}

static int rng_round(struct virtq *q, uint32_t k) {
    uint8_t *buf = round_rng[k & 1];
    const uint8_t *prev = round_rng[(k & 1) ^ 1];
    uint32_t before = vq_interrupts(q);
    uint32_t got = 0;
    for (unsigned tries = 0; got < RNG_BYTES && tries < 8; tries++) {
        struct vq_buf b = { buf + got, RNG_BYTES - got };
        arm_used_event(q);
        int head = vq_add(q, &b, 0, 1, 0);
        if (head < 0) { print("virtio-rng: FAILED: round %u: queue full\n", k); return -1; }
        vq_kick(q);
        uint32_t len = 0;
        if (vq_wait(q, REQUEST_MS, &len) != head) { print("virtio-rng: FAILED: round %u: no entropy within %u ms\n", k, REQUEST_MS); return -1; }
        if (len > RNG_BYTES - got) { print("virtio-rng: FAILED: round %u: device wrote %u bytes into a %u-byte buffer\n", k, len, RNG_BYTES - got); return -1; }
        got += len;
    }
    if (got < RNG_BYTES) { print("virtio-rng: FAILED: round %u: only %u of %u bytes\n", k, got, RNG_BYTES); return -1; }
    int nonzero = 0, differ = k == 1;        /* round 1 has nothing before it to differ from */
    for (unsigned i = 0; i < RNG_BYTES; i++) { nonzero |= buf[i]; differ |= buf[i] ^ prev[i]; }
    if (!nonzero) { print("virtio-rng: FAILED: round %u: 64 zero bytes\n", k); return -1; }
    if (!differ) { print("virtio-rng: FAILED: round %u returned the same 64 bytes as round %u\n", k, k - 1); return -1; }
    return round_interrupted(q, before, "rng", k);
}

static void run_rounds(void) {
    if (!round_blk_q && !round_rng_q) {
        print("virtio-probe: FAILED: rounds=%u needs a working virtio-blk or virtio-rng\n", rounds);
        failed(EXIT_ROUNDS);
        return;
    }
    if (round_blk_q && round_blk_capacity < ROUND_FIRST_SECTOR + rounds) {
        print("virtio-blk: FAILED: capacity %llu sectors is too small for %u rounds\n", round_blk_capacity, rounds);
        failed(EXIT_BLK);
        return;
    }
    uint32_t delay = cmdline_uint("round_delay_ms=", DEFAULT_ROUND_DELAY_MS);
    uint32_t hold_after = cmdline_uint("hold_after=", 0);
    for (uint32_t k = 1; k <= rounds; k++) {
        if (round_blk_q && blk_round(round_blk_q, k)) { failed(EXIT_BLK); return; }
        if (round_rng_q && rng_round(round_rng_q, k)) { failed(EXIT_RNG); return; }
        print("virtio-probe: round %u ok\n", k);
        if (k == hold_after) {
            print("virtio-probe: holding after round %u\n", k);
            while (!(inb(COM1 + 5) & 1)) halt_ms(10);     /* LSR.DR: a byte arrived */
            (void)inb(COM1);
        }
        halt_ms(delay);
    }
    if (round_blk_q) check_interrupts("blk", round_blk_q, 1);
    if (round_rng_q) check_interrupts("rng", round_rng_q, 1);
    print("virtio-probe: %u rounds ok\n", rounds);
    if (round_blk_dev) virtio_reset(round_blk_dev);
    if (round_rng_dev) virtio_reset(round_rng_dev);
}

/* ---- main ---- */
struct found_device { struct pci_function *f; unsigned type; };

void main(void) {
    print("virtio-probe: start\n");
    uint32_t ecam = cmdline_uint("ecam=", 0);
    rounds = cmdline_uint("rounds=", 0);
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    print("pci: %u functions on bus 0\n", n);
    if (ecam) {
        pci_set_ecam(ecam);
        if (pci_compare_ecam()) {
            print("virtio-probe: FAILED: type-1 and ECAM disagree\n");
            debug_exit(EXIT_PCI);
        }
        print("pci: type-1 and ECAM agree on bus 0\n");
    }

    irq_wait_init();

    /* Find the modern virtio functions; size every non-bridge function's BARs so placements avoid them. */
    struct found_device devs[PCI_MAX_FOUND];
    unsigned ndev = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        if ((f->class_rev >> 24) == 0x06) continue;    /* bridges: not ours to probe */
        pci_size_bars(f);
        if (f->vendor == VIRTIO_PCI_VENDOR && f->device >= VIRTIO_PCI_DEVICE_MODERN && f->device < VIRTIO_PCI_DEVICE_MODERN + 0x40) {
            devs[ndev].f = f;
            devs[ndev].type = f->device - VIRTIO_PCI_DEVICE_MODERN;
            ndev++;
        } else if (f->vendor == VIRTIO_PCI_VENDOR && f->device >= VIRTIO_PCI_DEVICE_TRANSITIONAL && f->device < VIRTIO_PCI_DEVICE_MODERN) {
            print("virtio: ");
            pci_print_bdf(f->bdf);
            print(" is a legacy/transitional device (");
            print_hex(f->device, 4);
            print("), skipped\n");
        }
    }
    pci_reserve_existing(functions, n);
    if (ecam) pci_reserve(ecam, ECAM_SIZE);
    pci_reserve(MMIO_LIMIT, 0x100000000ull - MMIO_LIMIT);
    struct pci_window window = { cmdline_uint("mmio=", DEFAULT_MMIO_BASE), 0 };
    uint32_t size = cmdline_uint("mmio_size=", MMIO_LIMIT - window.base);
    window.limit = (uint64_t)window.base + size > MMIO_LIMIT ? MMIO_LIMIT : window.base + size;
    int reassign = cmdline_uint("reassign=", 0) != 0;

    int done[5] = { 0, 0, 0, 0, 0 };
    for (unsigned i = 0; i < ndev; i++) {
        struct pci_function *f = devs[i].f;
        unsigned type = devs[i].type;
        const char *name = type < 5 ? type_names[type] : "?";
        if (pci_assign_bars(f, &window, reassign)) { print("virtio-probe: FAILED: cannot place the BARs of virtio-%s\n", name); failed(EXIT_PCI); continue; }
        print("virtio: ");
        pci_print_bdf(f->bdf);
        print(" %s", name);
        for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
            static const char *const why[] = { "", ", placed by the guest", ", moved below 4 GiB", ", reassigned" };
            struct pci_bar *bar = &f->bar[b];
            if (bar->size && !bar->io) {
                print(", bar%u 0x%x (%u KiB%s%s)", b, (uint32_t)bar->addr, (uint32_t)(bar->size >> 10), bar->is64 ? ", 64-bit" : "",
                      why[bar->placed & 3]);
            }
        }
        print("\n");
        if (type < 5 && done[type]) { print("virtio-%s: ", name); pci_print_bdf(f->bdf); print(" is a second one, skipped\n"); continue; }
        int rc;
        switch (type) {
        case VIRTIO_ID_BLOCK: rc = test_blk(f); if (rc) failed(EXIT_BLK); break;
        case VIRTIO_ID_RNG: rc = test_rng(f); if (rc) failed(EXIT_RNG); break;
        case VIRTIO_ID_CONSOLE: rc = test_console(f); if (rc) failed(EXIT_CONSOLE); break;
        case VIRTIO_ID_NET: rc = test_net(f); if (rc) failed(EXIT_NET); break;
        default: print("virtio: device type %u not tested\n", type); continue;
        }
        done[type] = 1;
    }

    if (rounds) run_rounds();

    static const struct { const char *name; unsigned type; } wants[] = {
        { "blk", VIRTIO_ID_BLOCK }, { "rng", VIRTIO_ID_RNG }, { "console", VIRTIO_ID_CONSOLE }, { "net", VIRTIO_ID_NET },
    };
    for (unsigned i = 0; i < sizeof wants / sizeof wants[0]; i++) {
        if (wanted(wants[i].name) && !done[wants[i].type]) {
            print("virtio-probe: FAILED: wanted virtio-%s, but there is none\n", wants[i].name);
            failed(EXIT_WANTED_MISSING);
        }
    }
    irq_wait_stop();
    if (first_failure) {
        print("virtio-probe: FAILED (exit 0x");
        print_hex(first_failure, 2);
        print(")\n");
        debug_exit(first_failure);
    }
    print("virtio-probe: all ok\n");
    debug_exit(EXIT_OK);
}
