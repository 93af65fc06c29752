/* PCI for the test guests: configuration space through the type-1 mechanism (ports 0xCF8/0xCFC) or ECAM (MMIO),
 * bus-0 enumeration, BAR sizing and assignment inside a window, capability walking and MSI-X. Bus 0 only: the
 * machines we run on (QEMU's pc/q35, tsvmm) put every device on the root bus. No paging: every address the guest
 * touches must be below 4 GiB, so 64-bit BARs the firmware or VMM placed above 4 GiB are moved below. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include "runtime.h"

/* ---- Type-1 configuration mechanism ---- */
#define PCI_CONFIG_ADDRESS 0xcf8    /* bit 31 enable, bus 23:16, device 15:11, function 10:8, register 7:2 */
#define PCI_CONFIG_DATA    0xcfc    /* the addressed dword; byte lanes at 0xcfc-0xcff */
#define PCI_CONFIG_ENABLE  0x80000000u

/* ---- Configuration space header (type 0) ---- */
#define PCI_VENDOR_ID     0x00      /* u16; 0xffff = no function */
#define PCI_DEVICE_ID     0x02      /* u16 */
#define PCI_COMMAND       0x04      /* u16 */
#define PCI_STATUS        0x06      /* u16 */
#define PCI_CLASS_REV     0x08      /* u32: class 31:8, revision 7:0 */
#define PCI_HEADER_TYPE   0x0e      /* u8: bit 7 multi-function, 6:0 layout */
#define PCI_BAR0          0x10      /* six u32 base address registers */
#define PCI_SUBSYSTEM_ID  0x2e      /* u16 (virtio: the device type for transitional devices) */
#define PCI_CAP_PTR       0x34      /* u8: first capability (when STATUS_CAP_LIST) */
#define PCI_INTERRUPT_LINE 0x3c     /* u8: scratch register for firmware; no effect on the device */

#define PCI_COMMAND_IO            0x0001   /* decode I/O BARs */
#define PCI_COMMAND_MEMORY        0x0002   /* decode memory BARs */
#define PCI_COMMAND_MASTER        0x0004   /* bus master: the device may DMA (and send MSI writes) */
#define PCI_COMMAND_INTX_DISABLE  0x0400   /* no legacy INTx assertions */
#define PCI_STATUS_CAP_LIST       0x0010   /* the capability list at PCI_CAP_PTR is valid */
#define PCI_HEADER_MULTIFUNCTION  0x80

#define PCI_BAR_IO            0x1          /* bit 0: I/O space BAR */
#define PCI_BAR_MEM_TYPE_MASK 0x6          /* bits 2:1: 00 32-bit, 10 64-bit */
#define PCI_BAR_MEM_TYPE_64   0x4
#define PCI_BAR_MEM_PREFETCH  0x8
#define PCI_BAR_MEM_MASK      0xfffffff0u
#define PCI_BAR_IO_MASK       0xfffffffcu

/* ---- Capabilities ---- */
#define PCI_CAP_ID_VENDOR 0x09      /* vendor-specific (virtio's transport structures) */
#define PCI_CAP_ID_MSIX   0x11
#define PCI_MSIX_CTRL     0x02      /* u16 message control: table size-1 in 10:0 */
#define PCI_MSIX_TABLE    0x04      /* u32: BIR 2:0, offset 31:3 */
#define PCI_MSIX_PBA      0x08      /* u32: BIR 2:0, offset 31:3 */
#define PCI_MSIX_CTRL_ENABLE    0x8000
#define PCI_MSIX_CTRL_MASKALL   0x4000
#define PCI_MSIX_CTRL_SIZE_MASK 0x07ff
#define PCI_MSIX_BIR_MASK       0x7
#define MSIX_ENTRY_SIZE        16   /* address lo, address hi, data, vector control */
#define MSIX_ENTRY_ADDR_LO     0x0
#define MSIX_ENTRY_ADDR_HI     0x4
#define MSIX_ENTRY_DATA        0x8
#define MSIX_ENTRY_CTRL        0xc
#define MSIX_ENTRY_CTRL_MASKED 0x1
#define MSI_ADDRESS_BASE 0xfee00000u  /* x86 MSI: 0xFEE, destination APIC id in 19:12, physical, no redirection */

#define PCI_MAX_DEVICES 32
#define PCI_MAX_FUNCTIONS 8
#define PCI_MAX_FOUND 32            /* functions remembered from one bus-0 scan */
#define PCI_NUM_BARS 6

/* A function's bus/device/function as the type-1 address wants it: device 15:11, function 10:8 (bus 0). */
typedef uint32_t pci_bdf;
#define PCI_BDF(dev, fn) ((pci_bdf)(((dev) << 11) | ((fn) << 8)))
#define PCI_DEV(bdf) (((bdf) >> 11) & 0x1f)
#define PCI_FN(bdf) (((bdf) >> 8) & 0x7)

struct pci_bar {
    uint64_t addr;              /* after assignment: where it decodes (below 4 GiB) */
    uint64_t size;              /* 0 = not implemented */
    uint8_t io;                 /* I/O space */
    uint8_t is64;               /* memory, 64-bit (occupies this slot and the next) */
    uint8_t placed;             /* PCI_BAR_PLACED_*: why pci_assign_bars gave it its address (0: it did not) */
};
#define PCI_BAR_PLACED_UNASSIGNED 1 /* it was 0 */
#define PCI_BAR_PLACED_ABOVE_4G   2 /* it was above 4 GiB, out of reach without paging */
#define PCI_BAR_PLACED_FORCED     3 /* reassign requested */

struct pci_function {
    pci_bdf bdf;
    uint16_t vendor, device;
    uint32_t class_rev;
    uint8_t header_type;
    struct pci_bar bar[PCI_NUM_BARS];
    uint8_t bars_sized;
};

struct pci_window { uint32_t base, limit; };   /* [base, limit) */

/* Type-1 (always) and ECAM (when pci_set_ecam was given a base) access. pci_cfg_* use ECAM when it is set. */
uint32_t pci_type1_read32(pci_bdf bdf, uint32_t off);
void pci_type1_write32(pci_bdf bdf, uint32_t off, uint32_t v);
uint32_t pci_ecam_read32(pci_bdf bdf, uint32_t off);
void pci_set_ecam(uint32_t base);        /* 0: type-1 only */
uint32_t pci_get_ecam(void);
uint8_t pci_cfg_read8(pci_bdf bdf, uint32_t off);
uint16_t pci_cfg_read16(pci_bdf bdf, uint32_t off);
uint32_t pci_cfg_read32(pci_bdf bdf, uint32_t off);
void pci_cfg_write8(pci_bdf bdf, uint32_t off, uint8_t v);
void pci_cfg_write16(pci_bdf bdf, uint32_t off, uint16_t v);
void pci_cfg_write32(pci_bdf bdf, uint32_t off, uint32_t v);

/* Scans bus 0 through type-1 config cycles, printing `pci 00:SS.F VVVV:DDDD class CCCCCC` per function. Returns
 * how many functions were found (at most PCI_MAX_FOUND kept in `out`). */
unsigned pci_scan_bus0(struct pci_function *out, unsigned max);
/* Compares what type-1 and ECAM see on bus 0 (the first 64 bytes of every function, absent ones included) and that a
 * write through one is read back through the other. Prints the first difference; returns 0 if they agree. */
int pci_compare_ecam(void);

/* Sizes every BAR of `f` (decoding off while probing, restored after). */
void pci_size_bars(struct pci_function *f);
/* Records every memory BAR below 4 GiB of the given functions as in use, so assignments avoid them; plus `extra`. */
void pci_reserve_existing(struct pci_function *fs, unsigned n);
void pci_reserve(uint64_t base, uint64_t size);
/* Gives every memory BAR of `f` that is 0, or above 4 GiB, (or every one if `force`) an address inside `w`,
 * naturally aligned and clear of every reserved range. I/O BARs are left alone. Turns memory decoding and bus
 * mastering on. Returns 0, or -1 (printed) if the window is too small. */
int pci_assign_bars(struct pci_function *f, const struct pci_window *w, int force);

/* Offset of the first capability with `id` at or after `start` (0: from the header's pointer); 0 if none. */
uint8_t pci_find_cap(pci_bdf bdf, uint8_t id, uint8_t start);

/* MSI-X: table in the BAR the capability names. */
struct pci_msix {
    uint8_t cap;                /* config offset of the capability; 0 = none */
    uint16_t entries;           /* table size */
    uintptr_t table;            /* MMIO address of entry 0 */
};
/* Finds MSI-X, checks the table lies inside its BAR, enables it with every entry masked (function mask set).
 * Returns 0 or -1 (printed). */
int pci_msix_enable(struct pci_function *f, struct pci_msix *m);
/* Points entry `i` at the LAPIC with id `apic` (fixed delivery, edge) with `vector`, and unmasks it. */
void pci_msix_route(const struct pci_msix *m, unsigned i, uint32_t apic, uint8_t vector);
/* Clears the function mask: entries that are unmasked may now fire. */
void pci_msix_unmask_function(struct pci_function *f, const struct pci_msix *m);
void pci_msix_disable(struct pci_function *f, const struct pci_msix *m);

/* Printing fixed-width lowercase hex (print's %x is always 8 digits). */
void print_hex(uint32_t v, unsigned digits);
void pci_print_bdf(pci_bdf bdf);                 /* "00:SS.F", hex slot */

#endif
