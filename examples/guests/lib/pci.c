#include "pci.h"

static inline uint16_t pio_inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t pio_inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static uint32_t ecam_base;

void print_hex(uint32_t v, unsigned digits) {
    for (int shift = (int)digits * 4 - 4; shift >= 0; shift -= 4) putc_serial("0123456789abcdef"[(v >> shift) & 0xf]);
}

void pci_print_bdf(pci_bdf bdf) {
    print("00:");
    print_hex(PCI_DEV(bdf), 2);
    print(".%u", PCI_FN(bdf));
}

/* ---- Type-1 ---- */
static void type1_select(pci_bdf bdf, uint32_t off) { outl(PCI_CONFIG_ADDRESS, PCI_CONFIG_ENABLE | bdf | (off & 0xfc)); }

uint32_t pci_type1_read32(pci_bdf bdf, uint32_t off) {
    type1_select(bdf, off);
    return pio_inl(PCI_CONFIG_DATA);
}

void pci_type1_write32(pci_bdf bdf, uint32_t off, uint32_t v) {
    type1_select(bdf, off);
    outl(PCI_CONFIG_DATA, v);
}

/* ---- ECAM: bus 0 at the base, 4 KiB per function, device 19:15, function 14:12 ---- */
static uintptr_t ecam_addr(pci_bdf bdf, uint32_t off) {
    return ecam_base + ((uintptr_t)PCI_DEV(bdf) << 15) + ((uintptr_t)PCI_FN(bdf) << 12) + (off & 0xfff);
}

uint32_t pci_ecam_read32(pci_bdf bdf, uint32_t off) { return *(volatile uint32_t *)ecam_addr(bdf, off & ~3u); }

void pci_set_ecam(uint32_t base) { ecam_base = base; }
uint32_t pci_get_ecam(void) { return ecam_base; }

/* ---- Either, by size; sub-dword accesses use the matching byte lanes / widths ---- */
uint8_t pci_cfg_read8(pci_bdf bdf, uint32_t off) {
    if (ecam_base) return *(volatile uint8_t *)ecam_addr(bdf, off);
    type1_select(bdf, off);
    return inb(PCI_CONFIG_DATA + (off & 3));
}

uint16_t pci_cfg_read16(pci_bdf bdf, uint32_t off) {
    if (ecam_base) return *(volatile uint16_t *)ecam_addr(bdf, off & ~1u);
    type1_select(bdf, off);
    return pio_inw(PCI_CONFIG_DATA + (off & 2));
}

uint32_t pci_cfg_read32(pci_bdf bdf, uint32_t off) {
    return ecam_base ? pci_ecam_read32(bdf, off) : pci_type1_read32(bdf, off);
}

void pci_cfg_write8(pci_bdf bdf, uint32_t off, uint8_t v) {
    if (ecam_base) { *(volatile uint8_t *)ecam_addr(bdf, off) = v; return; }
    type1_select(bdf, off);
    outb(PCI_CONFIG_DATA + (off & 3), v);
}

void pci_cfg_write16(pci_bdf bdf, uint32_t off, uint16_t v) {
    if (ecam_base) { *(volatile uint16_t *)ecam_addr(bdf, off & ~1u) = v; return; }
    type1_select(bdf, off);
    outw(PCI_CONFIG_DATA + (off & 2), v);
}

void pci_cfg_write32(pci_bdf bdf, uint32_t off, uint32_t v) {
    if (ecam_base) { *(volatile uint32_t *)ecam_addr(bdf, off & ~3u) = v; return; }
    pci_type1_write32(bdf, off, v);
}

/* ---- Enumeration ---- */
unsigned pci_scan_bus0(struct pci_function *out, unsigned max) {
    unsigned found = 0;
    for (unsigned dev = 0; dev < PCI_MAX_DEVICES; dev++) {
        for (unsigned fn = 0; fn < PCI_MAX_FUNCTIONS; fn++) {
            pci_bdf bdf = PCI_BDF(dev, fn);
            uint32_t id = pci_type1_read32(bdf, PCI_VENDOR_ID);
            if ((id & 0xffff) == 0xffff) {
                if (fn == 0) break;          /* no device: its other functions are not probed */
                continue;
            }
            uint32_t class_rev = pci_type1_read32(bdf, PCI_CLASS_REV);
            uint8_t header = (uint8_t)(pci_type1_read32(bdf, PCI_HEADER_TYPE & ~3u) >> 16);
            print("pci ");
            pci_print_bdf(bdf);
            putc_serial(' ');
            print_hex(id & 0xffff, 4);
            putc_serial(':');
            print_hex(id >> 16, 4);
            print(" class ");
            print_hex(class_rev >> 8, 6);
            putc_serial('\n');
            if (found < max) {
                struct pci_function *f = &out[found];
                memset(f, 0, sizeof *f);
                f->bdf = bdf;
                f->vendor = id & 0xffff;
                f->device = id >> 16;
                f->class_rev = class_rev;
                f->header_type = header;
            }
            found++;
            if (fn == 0 && !(header & PCI_HEADER_MULTIFUNCTION)) break;
        }
    }
    return found;
}

int pci_compare_ecam(void) {
    if (!ecam_base) return 0;
    for (unsigned dev = 0; dev < PCI_MAX_DEVICES; dev++) {
        for (unsigned fn = 0; fn < PCI_MAX_FUNCTIONS; fn++) {
            pci_bdf bdf = PCI_BDF(dev, fn);
            uint32_t id = pci_type1_read32(bdf, PCI_VENDOR_ID);
            uint32_t eid = pci_ecam_read32(bdf, PCI_VENDOR_ID);
            if (id != eid) {
                print("pci: ");
                pci_print_bdf(bdf);
                print(" id 0x%x through type-1 but 0x%x through ECAM\n", id, eid);
                return -1;
            }
            if ((id & 0xffff) == 0xffff) { if (fn == 0) break; continue; }
            /* The header: IDs, command (status bits may change between reads: compared masked), class, BARs, … */
            for (uint32_t off = 4; off < 0x40; off += 4) {
                uint32_t mask = off == PCI_COMMAND ? 0x0000ffffu : 0xffffffffu;
                uint32_t a = pci_type1_read32(bdf, off) & mask, b = pci_ecam_read32(bdf, off) & mask;
                if (a != b) {
                    print("pci: ");
                    pci_print_bdf(bdf);
                    print(" register 0x%x: type-1 0x%x, ECAM 0x%x\n", off, a, b);
                    return -1;
                }
            }
            /* A write through each is seen through the other (interrupt line: a scratch byte; restored after). */
            uint32_t saved = pci_type1_read32(bdf, PCI_INTERRUPT_LINE);
            *(volatile uint8_t *)ecam_addr(bdf, PCI_INTERRUPT_LINE) = 0x5a;
            uint32_t via_type1 = pci_type1_read32(bdf, PCI_INTERRUPT_LINE) & 0xff;
            pci_type1_write32(bdf, PCI_INTERRUPT_LINE, (saved & ~0xffu) | 0xa5);
            uint32_t via_ecam = pci_ecam_read32(bdf, PCI_INTERRUPT_LINE) & 0xff;
            pci_type1_write32(bdf, PCI_INTERRUPT_LINE, saved);
            if (via_type1 != 0x5a || via_ecam != 0xa5) {
                print("pci: ");
                pci_print_bdf(bdf);
                print(" interrupt line: ECAM wrote 0x5a, type-1 read 0x%x; type-1 wrote 0xa5, ECAM read 0x%x\n",
                      via_type1, via_ecam);
                return -1;
            }
            if (fn == 0 && !((pci_type1_read32(bdf, PCI_HEADER_TYPE & ~3u) >> 16) & PCI_HEADER_MULTIFUNCTION)) break;
        }
    }
    return 0;
}

/* ---- BARs ---- */
void pci_size_bars(struct pci_function *f) {
    if ((f->header_type & 0x7f) != 0) { f->bars_sized = 1; return; }   /* bridges: not ours to touch */
    uint16_t cmd = pci_cfg_read16(f->bdf, PCI_COMMAND);
    pci_cfg_write16(f->bdf, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        uint32_t off = PCI_BAR0 + 4 * i;
        uint32_t orig = pci_cfg_read32(f->bdf, off);
        pci_cfg_write32(f->bdf, off, 0xffffffffu);
        uint32_t probe = pci_cfg_read32(f->bdf, off);
        pci_cfg_write32(f->bdf, off, orig);
        struct pci_bar *b = &f->bar[i];
        memset(b, 0, sizeof *b);
        if (probe == 0) continue;
        if (orig & PCI_BAR_IO) {
            b->io = 1;
            b->addr = orig & PCI_BAR_IO_MASK;
            b->size = (uint16_t)(~(probe & PCI_BAR_IO_MASK) + 1);
            continue;
        }
        if ((orig & PCI_BAR_MEM_TYPE_MASK) == PCI_BAR_MEM_TYPE_64 && i + 1 < PCI_NUM_BARS) {
            uint32_t orig_hi = pci_cfg_read32(f->bdf, off + 4);
            pci_cfg_write32(f->bdf, off + 4, 0xffffffffu);
            uint32_t probe_hi = pci_cfg_read32(f->bdf, off + 4);
            pci_cfg_write32(f->bdf, off + 4, orig_hi);
            uint64_t mask = ((uint64_t)probe_hi << 32) | (probe & PCI_BAR_MEM_MASK);
            b->is64 = 1;
            b->addr = ((uint64_t)orig_hi << 32) | (orig & PCI_BAR_MEM_MASK);
            b->size = ~mask + 1;
            f->bar[i + 1].size = 0;
            i++;                                  /* the upper half is not a BAR of its own */
            memset(&f->bar[i], 0, sizeof f->bar[i]);
            continue;
        }
        b->addr = orig & PCI_BAR_MEM_MASK;
        b->size = (uint32_t)(~(probe & PCI_BAR_MEM_MASK) + 1);
    }
    pci_cfg_write16(f->bdf, PCI_COMMAND, cmd);
    f->bars_sized = 1;
}

#define MAX_RESERVED 64
static struct { uint64_t base, size; } reserved[MAX_RESERVED];
static unsigned n_reserved;

void pci_reserve(uint64_t base, uint64_t size) {
    if (size == 0) return;
    if (n_reserved < MAX_RESERVED) {
        reserved[n_reserved].base = base;
        reserved[n_reserved].size = size;
        n_reserved++;
    }
}

void pci_reserve_existing(struct pci_function *fs, unsigned n) {
    for (unsigned k = 0; k < n; k++) {
        struct pci_function *f = &fs[k];
        if (!f->bars_sized) pci_size_bars(f);
        for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
            struct pci_bar *b = &f->bar[i];
            if (b->size && !b->io && b->addr != 0 && b->addr + b->size <= 0x100000000ull) pci_reserve(b->addr, b->size);
        }
    }
}

static int overlaps_reserved(uint64_t base, uint64_t size, uint64_t *next) {
    for (unsigned i = 0; i < n_reserved; i++) {
        if (base < reserved[i].base + reserved[i].size && reserved[i].base < base + size) {
            *next = reserved[i].base + reserved[i].size;
            return 1;
        }
    }
    return 0;
}

/* Lowest naturally aligned `size` bytes inside `w` clear of every reserved range; 0 if none. */
static uint64_t allocate(const struct pci_window *w, uint64_t size) {
    uint64_t at = ((uint64_t)w->base + size - 1) & ~(size - 1);
    for (unsigned guard = 0; guard < 4 * MAX_RESERVED + 4; guard++) {
        if (at + size > w->limit) return 0;
        uint64_t next;
        if (!overlaps_reserved(at, size, &next)) return at;
        at = (next + size - 1) & ~(size - 1);
    }
    return 0;
}

int pci_assign_bars(struct pci_function *f, const struct pci_window *w, int force) {
    if (!f->bars_sized) pci_size_bars(f);
    uint16_t cmd = pci_cfg_read16(f->bdf, PCI_COMMAND);
    pci_cfg_write16(f->bdf, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    int rc = 0;
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        struct pci_bar *b = &f->bar[i];
        if (!b->size || b->io) continue;
        int high = b->addr + b->size > 0x100000000ull;
        if (b->addr != 0 && !high && !force) continue;
        if (b->size > 0x40000000ull) { print("pci: BAR%u of %u bytes is too big to place below 4 GiB\n", i, (uint32_t)(b->size >> 20)); rc = -1; continue; }
        uint64_t at = allocate(w, b->size);
        if (!at) {
            print("pci: no room for BAR%u (0x%x bytes) in window 0x%x-0x%x\n", i, (uint32_t)b->size, w->base, w->limit);
            rc = -1;
            continue;
        }
        uint32_t off = PCI_BAR0 + 4 * i;
        uint32_t flags = pci_cfg_read32(f->bdf, off) & ~PCI_BAR_MEM_MASK;
        pci_cfg_write32(f->bdf, off, (uint32_t)at | flags);
        if (b->is64) pci_cfg_write32(f->bdf, off + 4, 0);
        b->placed = b->addr == 0 ? PCI_BAR_PLACED_UNASSIGNED : high ? PCI_BAR_PLACED_ABOVE_4G : PCI_BAR_PLACED_FORCED;
        b->addr = at;
        pci_reserve(at, b->size);
    }
    pci_cfg_write16(f->bdf, PCI_COMMAND, (cmd & ~PCI_COMMAND_IO) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    return rc;
}

/* ---- Capabilities ---- */
uint8_t pci_find_cap(pci_bdf bdf, uint8_t id, uint8_t start) {
    if (!(pci_cfg_read16(bdf, PCI_STATUS) & PCI_STATUS_CAP_LIST)) return 0;
    uint8_t at = start ? pci_cfg_read8(bdf, start + 1) : pci_cfg_read8(bdf, PCI_CAP_PTR);
    /* Bounded walk: a malformed list (a loop) cannot hang us. Pointers are dword aligned and past the header. */
    for (unsigned guard = 0; guard < 48 && at >= 0x40; guard++) {
        at &= 0xfc;
        if (pci_cfg_read8(bdf, at) == id) return at;
        at = pci_cfg_read8(bdf, at + 1);
    }
    return 0;
}

/* ---- MSI-X ---- */
int pci_msix_enable(struct pci_function *f, struct pci_msix *m) {
    memset(m, 0, sizeof *m);
    uint8_t cap = pci_find_cap(f->bdf, PCI_CAP_ID_MSIX, 0);
    if (!cap) {
        print("pci: ");
        pci_print_bdf(f->bdf);
        print(" has no MSI-X capability\n");
        return -1;
    }
    uint16_t ctrl = pci_cfg_read16(f->bdf, cap + PCI_MSIX_CTRL);
    uint32_t table = pci_cfg_read32(f->bdf, cap + PCI_MSIX_TABLE);
    unsigned bir = table & PCI_MSIX_BIR_MASK;
    uint32_t offset = table & ~PCI_MSIX_BIR_MASK;
    unsigned entries = (ctrl & PCI_MSIX_CTRL_SIZE_MASK) + 1;
    if (bir >= PCI_NUM_BARS || !f->bar[bir].size || f->bar[bir].io
        || (uint64_t)offset + (uint64_t)entries * MSIX_ENTRY_SIZE > f->bar[bir].size) {
        print("pci: MSI-X table (BIR %u, offset 0x%x, %u entries) is not inside a memory BAR\n", bir, offset, entries);
        return -1;
    }
    m->cap = cap;
    m->entries = entries;
    m->table = (uintptr_t)f->bar[bir].addr + offset;
    /* Enabled with the function masked: no message goes out until every entry we use is programmed. */
    pci_cfg_write16(f->bdf, cap + PCI_MSIX_CTRL, ctrl | PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL);
    for (unsigned i = 0; i < entries; i++) {
        mmio_write32(m->table + i * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL, MSIX_ENTRY_CTRL_MASKED);
    }
    uint16_t cmd = pci_cfg_read16(f->bdf, PCI_COMMAND);
    pci_cfg_write16(f->bdf, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE);
    return 0;
}

void pci_msix_route(const struct pci_msix *m, unsigned i, uint32_t apic, uint8_t vector) {
    if (i >= m->entries) return;
    uintptr_t e = m->table + i * MSIX_ENTRY_SIZE;
    mmio_write32(e + MSIX_ENTRY_ADDR_LO, MSI_ADDRESS_BASE | ((apic & 0xff) << 12));
    mmio_write32(e + MSIX_ENTRY_ADDR_HI, 0);
    mmio_write32(e + MSIX_ENTRY_DATA, vector);             /* fixed delivery, edge, this vector */
    mmio_write32(e + MSIX_ENTRY_CTRL, 0);
}

void pci_msix_unmask_function(struct pci_function *f, const struct pci_msix *m) {
    uint16_t ctrl = pci_cfg_read16(f->bdf, m->cap + PCI_MSIX_CTRL);
    pci_cfg_write16(f->bdf, m->cap + PCI_MSIX_CTRL, (ctrl | PCI_MSIX_CTRL_ENABLE) & ~PCI_MSIX_CTRL_MASKALL);
}

void pci_msix_disable(struct pci_function *f, const struct pci_msix *m) {
    if (!m->cap) return;
    uint16_t ctrl = pci_cfg_read16(f->bdf, m->cap + PCI_MSIX_CTRL);
    pci_cfg_write16(f->bdf, m->cap + PCI_MSIX_CTRL, ctrl & ~(PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL));
}
