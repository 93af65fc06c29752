/* A small virtio 1.x driver core for the test guests: the virtio-pci modern transport (vendor capabilities for the
 * common, notify, ISR and device configuration structures; virtio 1.2 section 4.1.4), feature negotiation, MSI-X
 * (one vector per queue, aimed at this CPU's LAPIC) and split virtqueues (section 2.7) with indirect descriptors and
 * EVENT_IDX. Completions are waited for with irq_wait (lib/irq-wait.h): every wake-up is a real MSI-X message. */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_TRANSITIONAL 0x1000   /* 0x1000-0x103f: transitional (legacy-capable) devices */
#define VIRTIO_PCI_DEVICE_MODERN 0x1040     /* + device type (virtio 1.x, 4.1.2.1); up to 0x107f */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

/* Vendor capability (struct virtio_pci_cap): cfg_type at +3, bar +4, offset +8, length +12; notify adds +16. */
#define VIRTIO_PCI_CAP_TYPE   3
#define VIRTIO_PCI_CAP_BAR    4
#define VIRTIO_PCI_CAP_OFFSET 8
#define VIRTIO_PCI_CAP_LENGTH 12
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 16
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4

/* Common configuration structure (struct virtio_pci_common_cfg). */
#define VIRTIO_COMMON_DFSELECT     0x00   /* u32 device_feature_select */
#define VIRTIO_COMMON_DF           0x04   /* u32 device_feature (the selected 32 bits) */
#define VIRTIO_COMMON_GFSELECT     0x08   /* u32 driver_feature_select */
#define VIRTIO_COMMON_GF           0x0c   /* u32 driver_feature */
#define VIRTIO_COMMON_MSIX         0x10   /* u16 config_msix_vector */
#define VIRTIO_COMMON_NUMQ         0x12   /* u16 num_queues */
#define VIRTIO_COMMON_STATUS       0x14   /* u8 device_status */
#define VIRTIO_COMMON_CFGGENERATION 0x15  /* u8 config_generation */
#define VIRTIO_COMMON_Q_SELECT     0x16   /* u16 queue_select */
#define VIRTIO_COMMON_Q_SIZE       0x18   /* u16 queue_size (max on read; 0 = no such queue) */
#define VIRTIO_COMMON_Q_MSIX       0x1a   /* u16 queue_msix_vector (reads NO_VECTOR if refused) */
#define VIRTIO_COMMON_Q_ENABLE     0x1c   /* u16 queue_enable */
#define VIRTIO_COMMON_Q_NOFF       0x1e   /* u16 queue_notify_off */
#define VIRTIO_COMMON_Q_DESCLO     0x20   /* u64 queue_desc */
#define VIRTIO_COMMON_Q_DESCHI     0x24
#define VIRTIO_COMMON_Q_AVAILLO    0x28   /* u64 queue_driver (available ring) */
#define VIRTIO_COMMON_Q_AVAILHI    0x2c
#define VIRTIO_COMMON_Q_USEDLO     0x30   /* u64 queue_device (used ring) */
#define VIRTIO_COMMON_Q_USEDHI     0x34
#define VIRTIO_COMMON_SIZE         0x38
#define VIRTIO_MSI_NO_VECTOR       0xffff

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER      0x02
#define VIRTIO_STATUS_DRIVER_OK   0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

/* Transport feature bits (6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_FEATURE(bit) (1ull << (bit))

/* Split virtqueue (2.7). */
#define VIRTQ_DESC_F_NEXT     1       /* the chain continues at `next` */
#define VIRTQ_DESC_F_WRITE    2       /* device-writable */
#define VIRTQ_DESC_F_INDIRECT 4       /* the buffer is a table of descriptors */
#define VIRTQ_USED_F_NO_NOTIFY 1      /* device: no need to notify (without EVENT_IDX) */

#define VQ_SIZE_MAX 16                /* we never use bigger rings: a few requests in flight at most */
#define VQ_INDIRECT_MAX 4             /* descriptors per indirect table */

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
} __attribute__((packed));

struct virtio_dev;

struct virtq {
    struct virtio_dev *dev;
    uint16_t index;
    uint16_t size;
    uint8_t vector;                          /* IDT vector its MSI-X entry sends */
    uint16_t msix_entry;
    volatile struct virtq_desc *desc;
    volatile uint16_t *avail;                /* flags, idx, ring[size], used_event */
    volatile uint32_t *used;                 /* flags|idx, {id, len}[size], avail_event (as u16) */
    uintptr_t notify;                        /* where a 16-bit write of `index` kicks the device */
    uint16_t free_head, num_free;
    uint16_t avail_idx;                      /* next avail index we will publish */
    uint16_t kicked_idx;                     /* avail index at the last notification decision */
    uint16_t last_used;                      /* next used entry to consume */
    uint16_t next[VQ_SIZE_MAX];              /* our copy of the free list / chain links */
    uint8_t chain_len[VQ_SIZE_MAX];          /* descriptors held by an in-flight head (0: not in flight) */
    uint32_t completions;
    struct virtq_desc indirect[VQ_SIZE_MAX][VQ_INDIRECT_MAX] __attribute__((aligned(16)));
};

struct virtio_dev {
    struct pci_function *pci;
    const char *name;
    uintptr_t common, notify_base, isr, device_cfg;
    uint32_t notify_mult, notify_len, device_cfg_len;
    uint64_t offered, features;              /* device's offer; what both agreed on */
    uint16_t num_queues;
    uint16_t msix_next_entry;
    struct pci_msix msix;
};

/* A buffer for vq_add: driver-to-device ones first, then device-writable ones. */
struct vq_buf { const void *addr; uint32_t len; };

/* Finds the capabilities, resets the device, negotiates VERSION_1 + (INDIRECT_DESC, EVENT_IDX when offered) +
 * whatever of `wanted` the device offers, checks FEATURES_OK and enables MSI-X. 0, or -1 after printing why. */
int virtio_init(struct virtio_dev *d, struct pci_function *f, const char *name, uint64_t wanted);
/* Sets up queue `index` with its own MSI-X entry and the next free IDT vector. 0 or -1 (printed). */
int virtio_setup_queue(struct virtio_dev *d, struct virtq *q, uint16_t index);
/* Unmasks MSI-X and sets DRIVER_OK. 0, or -1 if the device refused (NEEDS_RESET/FAILED). */
int virtio_driver_ok(struct virtio_dev *d);
void virtio_reset(struct virtio_dev *d);
static inline int virtio_has(const struct virtio_dev *d, unsigned bit) { return (d->features >> bit) & 1; }

/* Device-specific configuration, read consistently (config_generation unchanged across the read). */
uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off);
uint16_t virtio_cfg_read16(struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off);
uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off);

/* Queues a chain (as one indirect descriptor when `indirect` and INDIRECT_DESC was negotiated). Returns the head,
 * or -1 if the ring is full or the chain too long. Visible to the device after vq_kick. */
int vq_add(struct virtq *q, const struct vq_buf *bufs, unsigned n_out, unsigned n_in, int indirect);
/* Publishes what vq_add queued and notifies the device if it wants (EVENT_IDX avail_event / NO_NOTIFY). */
void vq_kick(struct virtq *q);
/* The next completion: its head (and `*len` bytes written), or -1 if none yet. */
int vq_get_used(struct virtq *q, uint32_t *len);
/* Waits (up to `ms`) for the next completion, halting for interrupts between checks. -1 on timeout. */
int vq_wait(struct virtq *q, uint32_t ms, uint32_t *len);
/* The same, up to a deadline from irq_deadline(). */
int vq_wait_until(struct virtq *q, uint32_t deadline, uint32_t *len);
/* Interrupts its MSI-X vector delivered so far. */
uint32_t vq_interrupts(const struct virtq *q);

#endif
