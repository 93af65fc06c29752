/* edu: drives QEMU's educational PCI device (1234:11e8, QEMU's docs/specs/edu.rst) the way a driver would, so the
 * same image checks an emulated edu (QEMU -device edu) and a passed-through one (QEMU or tsvmm -device vfio-pci,host=…)
 * and prints the same result lines under each. No firmware is assumed: the guest sizes and places BAR0 itself (twice,
 * the second time moving it), turns on memory decoding and bus mastering, then:
 *   - registers: identification (0xRRrr00ed), liveness (0x04 reads back the inverse of what was written), factorials
 *     through 0x08 polled on status bit 0, each compared with the guest's own (u32, wrapping like the device's);
 *   - DMA both ways between guest RAM (below 256 MiB: edu's DMA mask is 28 bits) and the device's 4 KiB buffer at
 *     device address 0x40000, for sizes 1 to 4095 at several offsets, with guard bytes around the RAM destination;
 *     then the buffer is read back whole (its first 4095 bytes: EDU_BUF_REACH) and compared with the guest's model
 *     of it, so partial writes touched nothing else; a CRC-32 of each is printed;
 *   - MSI: the capability programmed with address 0xfee00000 | apic id << 12 and data = vector 0x41; interrupts raised
 *     through 0x60, by DMA with command bit 2 (both directions) and by a factorial with status bit 7; each must
 *     arrive once, 0x24 must say why, 0x64 acknowledges it, and nothing more may come;
 *   - INTx with MSI disabled: the IOAPIC pin INTERRUPT_LINE names (level, active high, vector 0x50), the same three
 *     triggers, the line going low on the acknowledge, and COMMAND.INTX_DISABLE holding an interrupt back.
 * The "handler" is the code right after irq_wait() returns (interrupts still off): the stub has counted the vector
 * and sent the EOI, and we read 0x24 and write 0x64 there, since iret is not available everywhere (README).
 *
 * The device keeps its state between users when passed through (no FLR): a previous run may have left an interrupt
 * status, a DMA or a factorial going, IRQFACT set, or data in the buffer. So everything is waited for and cleared
 * first, and nothing printed depends on what was there before.
 *
 * Output: `pci …` per function (lib/pci.c), `edu: at 00:SS.F, …` and `edu: note …` (what differs between VMMs by
 * design: slot, firmware, INTERRUPT_LINE, redeliveries), and `edu: …` result lines that are the same under every VMM,
 * ending with `edu: all ok`. Exit values: 0 ok, 0x10 no edu, 0x11 PCI (BAR, placement, capabilities), 0x20
 * registers, 0x21 DMA, 0x22 MSI, 0x23 INTx, 0x3f an exception. Command line: `intx=0` skips the INTx part. */
#include "runtime.h"
#include "pci.h"
#include "irq-wait.h"

#define EXIT_OK 0
#define EXIT_NO_EDU 0x10
#define EXIT_PCI 0x11
#define EXIT_REGS 0x20
#define EXIT_DMA 0x21
#define EXIT_MSI 0x22
#define EXIT_INTX 0x23

/* ---- edu (docs/specs/edu.rst): BAR0 is 1 MiB of MMIO; 4-byte accesses below 0x80, 4 or 8 bytes from 0x80 ---- */
#define EDU_VENDOR          0x1234
#define EDU_DEVICE          0x11e8
#define EDU_ID              0x00        /* RO: 0xRRrr00ed, major RR, minor rr */
#define EDU_ID_MAGIC        0xed
#define EDU_LIVENESS        0x04        /* RW: reads the bitwise inverse of the last write */
#define EDU_FACT            0x08        /* RW: write n, read n! (u32, wrapping) once STATUS_COMPUTING is clear */
#define EDU_STATUS          0x20        /* RW: */
#define EDU_STATUS_COMPUTING 0x01       /*   RO: the factorial is being computed */
#define EDU_STATUS_IRQFACT  0x80        /*   raise interrupt 0x1 when a factorial is done */
#define EDU_IRQ_STATUS      0x24        /* RO: the values that raised the interrupt (OR of them) */
#define EDU_IRQ_RAISE       0x60        /* WO: OR the value into the status and interrupt */
#define EDU_IRQ_ACK         0x64        /* WO: clear these bits of the status; INTx goes low at 0 */
#define EDU_DMA_SRC         0x80        /* RW u64: source (device address or bus address of RAM) */
#define EDU_DMA_DST         0x88        /* RW u64: destination */
#define EDU_DMA_COUNT       0x90        /* RW u64: bytes */
#define EDU_DMA_CMD         0x98        /* RW u64: */
#define EDU_DMA_RUN         0x1         /*   start; clear again when the transfer is done */
#define EDU_DMA_TO_RAM      0x2         /*   direction: 0 RAM -> edu, 1 edu -> RAM */
#define EDU_DMA_IRQ         0x4         /*   raise interrupt 0x100 when done */
#define EDU_IRQ_FACT        0x00000001u /* interrupt status bit of a finished factorial */
#define EDU_IRQ_DMA         0x00000100u /* interrupt status bit of a finished DMA */
#define EDU_BUF             0x40000u    /* device address of its DMA buffer */
#define EDU_BUF_SIZE        4096u
/* QEMU up to 8.2 refuses a transfer that ends at the buffer's end (its range check wants end < 0x41000) with a
 * hw_error that aborts QEMU, so the last byte is never transferred: everything stays within the first 4095. */
#define EDU_BUF_REACH       4095u
#define EDU_DMA_LIMIT       0x10000000u /* the device's default DMA mask is 28 bits */
#define EDU_BAR_SIZE        0x100000u

/* ---- PCI bits lib/pci.h does not name ---- */
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_INTERRUPT_PIN   0x3d
#define PCI_STATUS_INTERRUPT 0x0008     /* the function asserts INTx# (even while INTX_DISABLE) */
#define PCI_CAP_ID_MSI      0x05
#define PCI_MSI_CTRL        0x02        /* u16 message control: */
#define PCI_MSI_CTRL_ENABLE 0x0001
#define PCI_MSI_CTRL_MMC_SHIFT 1        /*   3:1 log2 of the vectors the function can ask for */
#define PCI_MSI_CTRL_MME_MASK 0x0070    /*   6:4 log2 of the vectors enabled (0: one) */
#define PCI_MSI_CTRL_64BIT  0x0080
#define PCI_MSI_CTRL_MASKBIT 0x0100     /*   per-vector masking */
#define PCI_MSI_ADDR_LO     0x04
#define PCI_MSI_ADDR_HI     0x08        /* 64-bit capable only */
#define PCI_MSI_DATA_32     0x08
#define PCI_MSI_DATA_64     0x0c

/* ---- IOAPIC (82093AA) ---- */
#define IOAPIC_BASE         0xfec00000u
#define IOAPIC_IOREGSEL     0x00
#define IOAPIC_IOWIN        0x10
#define IOAPIC_REG_VER      0x01        /* maximum redirection entry in 23:16 */
#define IOAPIC_REDTBL_LO(pin) (0x10 + 2 * (pin))
#define IOAPIC_REDTBL_HI(pin) (0x11 + 2 * (pin))   /* destination APIC id in 31:24 */
#define IOAPIC_RTE_REMOTE_IRR 0x00004000u          /* RO: level interrupt accepted, no EOI yet */
#define IOAPIC_RTE_LEVEL    0x00008000u            /* level-triggered (fixed delivery, physical, active high: 0s) */
#define IOAPIC_RTE_MASKED   0x00010000u
#define LAPIC_IRR           0x200                  /* 8 x 32 bits, one per 16 bytes */

#define MSI_VECTOR          0x41
#define INTX_VECTOR         0x50
#define WAIT_MS             20000       /* hang guard for one operation: far above a DMA's 100 ms */
#define QUIET_MS            200         /* how long "nothing more comes" is watched */
#define MMIO_BASE           0xc0000000u /* where the guest places BAR0: the PCI hole of pc (< 3 GiB RAM) and tsvmm */
#define MMIO_LIMIT          0xfec00000u /* IOAPIC, HPET, LAPIC and the BIOS above */
#define ECAM_BASE           0xe0000000u /* q35's and tsvmm's ECAM: 256 buses x 1 MiB, kept clear */
#define ECAM_SIZE           0x10000000u
#define GUARD               64          /* guard bytes on each side of the DMA destination */

static struct pci_function functions[PCI_MAX_FOUND];
static struct pci_function *edu;
static uintptr_t bar;                                   /* where BAR0 decodes now */
static uint8_t ram_src[EDU_BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t ram_dst[EDU_BUF_SIZE + 2 * GUARD] __attribute__((aligned(4096)));
static uint8_t model[EDU_BUF_SIZE];                     /* what the device buffer must hold */
static uint32_t crc_table[256];
static uint32_t gsi, redelivered;

__attribute__((noreturn)) static void fail(unsigned code, const char *why) {
    irq_wait_stop();
    print("edu: FAILED: %s\n", why);
    debug_exit(code);
}

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static uint32_t rd(uint32_t off) { return mmio_read32(bar + off); }
static void wr(uint32_t off, uint32_t v) { mmio_write32(bar + off, v); }

static void print_hex8(uint32_t v) { print("0x"); print_hex(v, 8); }

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* CRC-32 (IEEE 802.3, as zlib's crc32). */
static uint32_t crc32(const uint8_t *p, uint32_t n) {
    uint32_t c = 0xffffffffu;
    for (uint32_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* ---- Waiting: halt on the 10 ms tick (or any interrupt) until a register bit clears ---- */
static int wait_clear(uint32_t off, uint32_t bits, uint32_t ms) {
    for (int spin = 0; spin < 64; spin++) if (!(rd(off) & bits)) return 0;
    uint32_t deadline = irq_deadline(ms);
    while (rd(off) & bits) {
        if (irq_expired(deadline)) return -1;
        irq_wait();
    }
    barrier();
    return 0;
}

/* Halts until `vector` has come beyond `before` arrivals, or the deadline; returns how many came. */
static uint32_t wait_vector(uint8_t vector, uint32_t before, uint32_t ms) {
    uint32_t deadline = irq_deadline(ms);
    while (irq_counts[vector] == before && !irq_expired(deadline)) irq_wait();
    return irq_counts[vector] - before;
}

/* Halts for `ms`; returns how many times `vector` came meanwhile. */
static uint32_t watch_vector(uint8_t vector, uint32_t ms) {
    uint32_t before = irq_counts[vector], deadline = irq_deadline(ms);
    while (!irq_expired(deadline)) irq_wait();
    return irq_counts[vector] - before;
}

/* ---- Reset what a previous user of the device may have left going ---- */
static void quiesce(void) {
    if (wait_clear(EDU_DMA_CMD, EDU_DMA_RUN, WAIT_MS)) fail(EXIT_DMA, "a DMA left running does not finish");
    if (wait_clear(EDU_STATUS, EDU_STATUS_COMPUTING, WAIT_MS)) fail(EXIT_REGS, "a factorial left running does not finish");
    wr(EDU_STATUS, 0);                                  /* no interrupt on factorials */
    uint32_t left = rd(EDU_IRQ_STATUS);
    wr(EDU_IRQ_ACK, 0xffffffffu);
    print("edu: note interrupt status left by a previous user: ");
    print_hex8(left);
    print("\n");
    if (rd(EDU_IRQ_STATUS) != 0) fail(EXIT_REGS, "acknowledging every bit leaves the interrupt status non-zero");
}

/* ---- PCI: identity, BAR0, placement ---- */
static void identify(void) {
    pci_bdf b = edu->bdf;
    uint32_t class_rev = pci_cfg_read32(b, PCI_CLASS_REV);
    uint8_t pin = pci_cfg_read8(b, PCI_INTERRUPT_PIN);
    print("edu: id ");
    print_hex(edu->vendor, 4);
    print(":");
    print_hex(edu->device, 4);
    print(" class ");
    print_hex(class_rev >> 8, 6);
    print(" revision 0x");
    print_hex(class_rev & 0xff, 2);
    print(" header 0x");
    print_hex(pci_cfg_read8(b, PCI_HEADER_TYPE), 2);
    print(" subsystem ");
    print_hex(pci_cfg_read16(b, PCI_SUBSYSTEM_VENDOR_ID), 4);
    print(":");
    print_hex(pci_cfg_read16(b, PCI_SUBSYSTEM_ID), 4);
    print(" pin %s\n", pin == 0 ? "none" : pin == 1 ? "INTA" : pin == 2 ? "INTB" : pin == 3 ? "INTC" : pin == 4 ? "INTD" : "?");
    print("edu: capabilities");
    unsigned caps = 0;
    if (pci_cfg_read16(b, PCI_STATUS) & PCI_STATUS_CAP_LIST) {
        uint8_t at = pci_cfg_read8(b, PCI_CAP_PTR);
        for (unsigned guard = 0; guard < 48 && at >= 0x40; guard++, caps++) {
            at &= 0xfc;
            print(" 0x");
            print_hex(pci_cfg_read8(b, at), 2);
            at = pci_cfg_read8(b, at + 1);
        }
    }
    print(caps ? "\n" : " none\n");
}

/* Sizes BAR0 by hand (decoding off, all-ones written, read back, the original restored) and checks the others are
 * unimplemented. */
static void size_bar0(void) {
    pci_bdf b = edu->bdf;
    uint16_t cmd = pci_cfg_read16(b, PCI_COMMAND);
    pci_cfg_write16(b, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    uint32_t orig = pci_cfg_read32(b, PCI_BAR0);
    pci_cfg_write32(b, PCI_BAR0, 0xffffffffu);
    uint32_t probe = pci_cfg_read32(b, PCI_BAR0);
    pci_cfg_write32(b, PCI_BAR0, orig);
    uint32_t restored = pci_cfg_read32(b, PCI_BAR0);
    unsigned others = 0;
    for (unsigned i = 1; i < PCI_NUM_BARS; i++) {
        uint32_t off = PCI_BAR0 + 4 * i, o = pci_cfg_read32(b, off);
        pci_cfg_write32(b, off, 0xffffffffu);
        if (pci_cfg_read32(b, off)) others++;
        pci_cfg_write32(b, off, o);
    }
    pci_cfg_write16(b, PCI_COMMAND, cmd);
    uint32_t size = ~(probe & PCI_BAR_MEM_MASK) + 1;
    print("edu: at ");
    pci_print_bdf(b);
    print(", firmware left bar0 at ");
    print_hex8(orig & PCI_BAR_MEM_MASK);
    print(" and interrupt line %u\n", pci_cfg_read8(b, PCI_INTERRUPT_LINE));
    print("edu: bar0 reads ");
    print_hex8(probe);
    print(" after all-ones: %s, %s, %s, %u KiB; bars 1-5 %s\n", probe & PCI_BAR_IO ? "i/o" : "memory",
          (probe & PCI_BAR_MEM_TYPE_MASK) == PCI_BAR_MEM_TYPE_64 ? "64-bit" : "32-bit",
          probe & PCI_BAR_MEM_PREFETCH ? "prefetchable" : "non-prefetchable", size >> 10,
          others ? "partly implemented" : "unimplemented");
    if (restored != orig) fail(EXIT_PCI, "bar0 does not hold its original value after sizing");
    if ((probe & (PCI_BAR_IO | PCI_BAR_MEM_TYPE_MASK)) != 0 || size != EDU_BAR_SIZE) fail(EXIT_PCI, "bar0 is not 1 MiB of 32-bit memory");
    if (others) fail(EXIT_PCI, "edu implements a BAR other than bar0");
}

/* Lowest 1 MiB-aligned address in [MMIO_BASE, MMIO_LIMIT) clear of every other function's BARs, ECAM and `not`. */
static uint32_t free_slot(uint32_t not) {
    for (uint32_t at = MMIO_BASE; at < MMIO_LIMIT; at += EDU_BAR_SIZE) {
        if (at == not || (at >= ECAM_BASE && at < ECAM_BASE + ECAM_SIZE)) continue;
        int clear = 1;
        for (unsigned k = 0; k < PCI_MAX_FOUND && functions[k].bars_sized; k++) {
            struct pci_function *f = &functions[k];
            if (f == edu) continue;
            for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
                struct pci_bar *b = &f->bar[i];
                if (!b->size || b->io || b->addr >= 0x100000000ull) continue;
                if (at < b->addr + b->size && b->addr < (uint64_t)at + EDU_BAR_SIZE) clear = 0;
            }
        }
        if (clear) return at;
    }
    fail(EXIT_PCI, "no free 1 MiB in the MMIO window for bar0");
}

/* Decoding off, BAR0 written, read back, decoding and bus mastering on. */
static void place_bar0(uint32_t at) {
    pci_bdf b = edu->bdf;
    uint16_t cmd = pci_cfg_read16(b, PCI_COMMAND);
    pci_cfg_write16(b, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    pci_cfg_write32(b, PCI_BAR0, at);
    uint32_t got = pci_cfg_read32(b, PCI_BAR0) & PCI_BAR_MEM_MASK;
    pci_cfg_write16(b, PCI_COMMAND, (cmd & ~PCI_COMMAND_IO) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    uint16_t now = pci_cfg_read16(b, PCI_COMMAND);
    if (got != at) fail(EXIT_PCI, "bar0 does not read back the address written");
    if ((now & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) != (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
        fail(EXIT_PCI, "the command register does not keep memory decoding and bus mastering on");
    bar = at;
}

/* ---- Registers ---- */
static void check_identification(const char *when) {
    uint32_t id = rd(EDU_ID);
    print("edu: %s: identification ", when);
    print_hex8(id);
    print(", version %u.%u\n", id >> 24, (id >> 16) & 0xff);
    if ((id & 0xffff) != EDU_ID_MAGIC) fail(EXIT_REGS, "the identification register does not end in 0x00ed");
}

static void check_liveness(void) {
    static const uint32_t values[] = { 0x00000000u, 0xffffffffu, 0x12345678u, 0xa5a5a5a5u, 0x80000001u };
    for (unsigned i = 0; i < sizeof values / sizeof values[0]; i++) {
        wr(EDU_LIVENESS, values[i]);
        uint32_t got = rd(EDU_LIVENESS);
        print("edu: liveness ");
        print_hex8(values[i]);
        print(" reads ");
        print_hex8(got);
        print("\n");
        if (got != ~values[i]) fail(EXIT_REGS, "liveness does not read back the inverse");
    }
}

static uint32_t factorial(uint32_t n) {
    uint32_t r = 1;
    while (n > 0) r *= n--;                             /* u32, wrapping, as the device computes it */
    return r;
}

static void check_factorials(void) {
    static const uint32_t ns[] = { 0, 1, 2, 5, 10, 12, 13, 20 };
    for (unsigned i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        wr(EDU_FACT, ns[i]);
        if (wait_clear(EDU_STATUS, EDU_STATUS_COMPUTING, WAIT_MS)) fail(EXIT_REGS, "the factorial does not finish");
        uint32_t got = rd(EDU_FACT), want = factorial(ns[i]);
        print("edu: factorial %u = %u (guest: %u)\n", ns[i], got, want);
        if (got != want) fail(EXIT_REGS, "the device's factorial differs from the guest's");
    }
}

/* ---- DMA ---- */
static uint8_t pattern(uint32_t seed, uint32_t k) { return (uint8_t)(k * 131 + seed * 29 + (k >> 8) * 7 + 0x3c); }

/* Starts a transfer; `to_ram`: device buffer -> RAM. With `irq` the caller waits for the interrupt, else it is
 * polled to completion here. */
static void dma_start(int to_ram, uint32_t src, uint32_t dst, uint32_t count, int irq) {
    if (wait_clear(EDU_DMA_CMD, EDU_DMA_RUN, WAIT_MS)) fail(EXIT_DMA, "the previous DMA does not finish");
    barrier();
    wr(EDU_DMA_SRC, src);                               /* a 4-byte write sets the whole 64-bit register */
    wr(EDU_DMA_DST, dst);
    wr(EDU_DMA_COUNT, count);
    wr(EDU_DMA_CMD, EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0) | (irq ? EDU_DMA_IRQ : 0));
    if (!irq && wait_clear(EDU_DMA_CMD, EDU_DMA_RUN, WAIT_MS)) fail(EXIT_DMA, "the DMA does not finish");
}

static void dma_to_device(uint32_t offset, uint32_t size, int irq) {
    dma_start(0, (uint32_t)(uintptr_t)ram_src, EDU_BUF + offset, size, irq);
    memcpy(model + offset, ram_src, size);
}

static void dma_to_ram(uint32_t offset, uint32_t size, int irq) {
    dma_start(1, EDU_BUF + offset, (uint32_t)(uintptr_t)(ram_dst + GUARD), size, irq);
}

static void fill(uint32_t seed, uint32_t size) {
    for (uint32_t k = 0; k < size; k++) ram_src[k] = pattern(seed, k);
    memset(ram_dst, 0xa5, sizeof ram_dst);
}

/* After a transfer into RAM of `size` bytes: they equal `want`, the guards are untouched. */
static void check_ram(const uint8_t *want, uint32_t size, const char *what) {
    barrier();
    for (uint32_t k = 0; k < GUARD; k++) {
        if (ram_dst[k] != 0xa5 || ram_dst[GUARD + size + k] != 0xa5) {
            print("edu: %s: guard byte overwritten\n", what);
            fail(EXIT_DMA, "the DMA wrote outside its destination");
        }
    }
    for (uint32_t k = 0; k < size; k++) {
        if (ram_dst[GUARD + k] != want[k]) {
            print("edu: %s: byte %u is 0x", what, k);
            print_hex(ram_dst[GUARD + k], 2);
            print(", want 0x");
            print_hex(want[k], 2);
            print("\n");
            fail(EXIT_DMA, "the data came back different");
        }
    }
}

static void check_dma(void) {
    static const struct { uint32_t offset, size; } cases[] = {
        { 0, EDU_BUF_REACH }, { 0, 1 }, { 0x100, 100 }, { 0x800, 1000 }, { 0xfc0, 63 }, { 0x400, 2048 }, { 0xffe, 1 },
    };
    if ((uintptr_t)ram_dst + sizeof ram_dst > EDU_DMA_LIMIT || (uintptr_t)ram_src + sizeof ram_src > EDU_DMA_LIMIT)
        fail(EXIT_DMA, "the DMA buffers are not below 256 MiB");
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t off = cases[c].offset, size = cases[c].size;
        if (off + size > EDU_BUF_REACH) fail(EXIT_DMA, "a transfer reaches the device buffer's last byte");
        fill(c + 1, size);
        dma_to_device(off, size, 0);
        dma_to_ram(off, size, 0);
        check_ram(ram_src, size, "dma");
        print("edu: dma %u bytes ram -> device ", size);
        print_hex8(EDU_BUF + off);
        print(" -> ram: equal, guards intact, crc32 ");
        print_hex8(crc32(ram_src, size));
        print("\n");
    }
}

/* The device buffer (as far as it is reachable) back into RAM: what the guest's model says every write left there. */
static void check_device_buffer(const char *when) {
    memset(ram_dst, 0xa5, sizeof ram_dst);
    dma_to_ram(0, EDU_BUF_REACH, 0);
    check_ram(model, EDU_BUF_REACH, "device buffer");
    print("edu: device buffer %s: %u bytes as the guest wrote them, crc32 ", when, EDU_BUF_REACH);
    print_hex8(crc32(model, EDU_BUF_REACH));
    print("\n");
}

/* ---- Interrupts ---- */
/* One interrupt, after `before` arrivals of `vector`: it came (once), the status says `cause`, the acknowledge
 * clears it. For INTx, the line must then be low: a redelivery the stub's early EOI caused is taken (at most one),
 * and after one more tick nothing is pending and the IOAPIC entry's Remote IRR is clear. */
static void take_interrupt(int intx, uint32_t before, uint32_t cause, const char *what, int show_cause) {
    uint8_t vector = intx ? INTX_VECTOR : MSI_VECTOR;
    unsigned code = intx ? EXIT_INTX : EXIT_MSI;
    if (!wait_vector(vector, before, WAIT_MS)) {
        print("edu: %s %s: no interrupt\n", intx ? "intx" : "msi", what);
        fail(code, "no interrupt within the time limit");
    }
    uint32_t status = rd(EDU_IRQ_STATUS);               /* the handler's part */
    wr(EDU_IRQ_ACK, status);
    uint32_t after = rd(EDU_IRQ_STATUS);
    uint32_t extra = 0;
    if (intx) {
        uint32_t deadline = irq_deadline(WAIT_MS);
        while ((mmio_read32(LAPIC_BASE + LAPIC_IRR + 0x10 * (INTX_VECTOR >> 5)) >> (INTX_VECTOR & 31)) & 1
               && !irq_expired(deadline))
            irq_wait();
        uint32_t settle = irq_deadline(0);
        while (!irq_expired(settle)) irq_wait();
        extra = irq_counts[vector] - before - 1;
        redelivered += extra;
    }
    uint32_t count = irq_counts[vector] - before - extra;
    print("edu: %s %s", intx ? "intx" : "msi", what);
    if (show_cause) { print(" "); print_hex8(cause); }
    print(": %u interrupt, status ", count);
    print_hex8(status);
    print(", ");
    print_hex8(after);
    print(" after the acknowledge\n");
    if (count != 1) fail(code, "more than one interrupt for one cause");
    if (status != cause) fail(code, "the interrupt status does not name the cause");
    if (after != 0) fail(code, "the acknowledge did not clear the interrupt status");
    if (intx) {
        if (extra > 1) {
            print("edu: note intx %s: %u deliveries after the first, at most 1 allowed\n", what, extra);
            fail(code, "the vector kept coming after the acknowledge lowered the line");
        }
        uint32_t rte;
        mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REDTBL_LO(gsi));
        rte = mmio_read32(IOAPIC_BASE + IOAPIC_IOWIN);
        if (rte & IOAPIC_RTE_REMOTE_IRR) fail(code, "the IOAPIC entry's Remote IRR is still set after the EOIs");
    }
}

/* The three ways edu interrupts: the raise register, a DMA with command bit 2 (each direction), a factorial with
 * status bit 7. Returns how many interrupts were asked for. */
static unsigned trigger_all(int intx) {
    uint8_t vector = intx ? INTX_VECTOR : MSI_VECTOR;
    static const uint32_t raises[] = { 0x00010000u, 0x80000000u, 0x00000042u };
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof raises / sizeof raises[0]; i++, n++) {
        uint32_t before = irq_counts[vector];
        wr(EDU_IRQ_RAISE, raises[i]);
        take_interrupt(intx, before, raises[i], "raise", 1);
    }
    fill(0x40 + intx, 256);
    uint32_t before = irq_counts[vector];
    dma_to_device(0x200, 256, 1);
    take_interrupt(intx, before, EDU_IRQ_DMA, "dma ram -> device", 0);
    n++;
    if (rd(EDU_DMA_CMD) & EDU_DMA_RUN) fail(intx ? EXIT_INTX : EXIT_MSI, "the DMA interrupt came before the DMA finished");
    before = irq_counts[vector];
    dma_to_ram(0x200, 256, 1);
    take_interrupt(intx, before, EDU_IRQ_DMA, "dma device -> ram", 0);
    n++;
    check_ram(ram_src, 256, "dma with interrupt");
    before = irq_counts[vector];
    wr(EDU_STATUS, EDU_STATUS_IRQFACT);
    wr(EDU_FACT, 9);
    take_interrupt(intx, before, EDU_IRQ_FACT, "factorial 9", 0);
    n++;
    uint32_t got = rd(EDU_FACT);
    wr(EDU_STATUS, 0);
    print("edu: %s factorial 9 = %u\n", intx ? "intx" : "msi", got);
    if (got != factorial(9)) fail(intx ? EXIT_INTX : EXIT_MSI, "the factorial with an interrupt is wrong");
    return n;
}

static void check_msi(void) {
    pci_bdf b = edu->bdf;
    uint8_t cap = pci_find_cap(b, PCI_CAP_ID_MSI, 0);
    if (!cap) fail(EXIT_MSI, "no MSI capability");
    uint16_t ctrl = pci_cfg_read16(b, cap + PCI_MSI_CTRL);
    int is64 = !!(ctrl & PCI_MSI_CTRL_64BIT);
    print("edu: msi capability: %s address, %u vector(s), %s\n", is64 ? "64-bit" : "32-bit",
          1u << ((ctrl >> PCI_MSI_CTRL_MMC_SHIFT) & 7), ctrl & PCI_MSI_CTRL_MASKBIT ? "per-vector masking" : "no per-vector masking");
    uint32_t address = MSI_ADDRESS_BASE | ((apic_id() & 0xff) << 12);
    uint32_t data_off = is64 ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32;
    pci_cfg_write32(b, cap + PCI_MSI_ADDR_LO, address);
    if (is64) pci_cfg_write32(b, cap + PCI_MSI_ADDR_HI, 0);
    pci_cfg_write16(b, cap + data_off, MSI_VECTOR);     /* fixed delivery, edge */
    pci_cfg_write16(b, cap + PCI_MSI_CTRL, (ctrl & ~PCI_MSI_CTRL_MME_MASK) | PCI_MSI_CTRL_ENABLE);
    uint32_t got_address = pci_cfg_read32(b, cap + PCI_MSI_ADDR_LO);
    uint16_t got_data = pci_cfg_read16(b, cap + data_off), got_ctrl = pci_cfg_read16(b, cap + PCI_MSI_CTRL);
    print("edu: msi enabled: address ");
    print_hex8(got_address);
    print(" data 0x");
    print_hex(got_data, 4);
    print(" (apic %u, vector 0x", apic_id());
    print_hex(MSI_VECTOR, 2);
    print(")\n");
    if (got_address != address || got_data != MSI_VECTOR || !(got_ctrl & PCI_MSI_CTRL_ENABLE))
        fail(EXIT_MSI, "the MSI capability does not read back what was written");
    unsigned asked = trigger_all(0);
    uint32_t late = watch_vector(MSI_VECTOR, QUIET_MS);
    print("edu: msi: %u interrupts for %u causes, %u more in %u ms\n", irq_counts[MSI_VECTOR] - late, asked, late, QUIET_MS);
    if (late || irq_counts[MSI_VECTOR] != asked) fail(EXIT_MSI, "interrupts without a cause");
    pci_cfg_write16(b, cap + PCI_MSI_CTRL, pci_cfg_read16(b, cap + PCI_MSI_CTRL) & ~PCI_MSI_CTRL_ENABLE);
}

static void check_intx(void) {
    pci_bdf b = edu->bdf;
    uint8_t pin = pci_cfg_read8(b, PCI_INTERRUPT_PIN);
    gsi = pci_cfg_read8(b, PCI_INTERRUPT_LINE);
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REG_VER);
    uint32_t max_entry = (mmio_read32(IOAPIC_BASE + IOAPIC_IOWIN) >> 16) & 0xff;
    print("edu: note intx on gsi %u (interrupt line), ioapic pins 0-%u\n", gsi, max_entry);
    if (pin < 1 || pin > 4) fail(EXIT_INTX, "edu declares no INTx pin");
    if (gsi > max_entry) fail(EXIT_INTX, "INTERRUPT_LINE is not an IOAPIC pin");
    uint32_t rte = INTX_VECTOR | IOAPIC_RTE_LEVEL;
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REDTBL_LO(gsi));
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, rte | IOAPIC_RTE_MASKED);
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REDTBL_HI(gsi));
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, apic_id() << 24);
    uint16_t cmd = pci_cfg_read16(b, PCI_COMMAND) & ~PCI_COMMAND_INTX_DISABLE;
    pci_cfg_write16(b, PCI_COMMAND, cmd);
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REDTBL_LO(gsi));
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, rte);
    print("edu: intx: msi off, INTx# level-triggered to vector 0x");
    print_hex(INTX_VECTOR, 2);
    print("\n");
    unsigned asked = trigger_all(1);

    /* INTX_DISABLE: the device raises its status, the function asserts INTx# (STATUS.INTERRUPT), the pin stays quiet;
     * clearing INTX_DISABLE delivers it. */
    pci_cfg_write16(b, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE);
    uint32_t before = irq_counts[INTX_VECTOR];
    wr(EDU_IRQ_RAISE, 0x00000008u);
    uint32_t early = watch_vector(INTX_VECTOR, QUIET_MS);
    int asserted = !!(pci_cfg_read16(b, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    print("edu: intx disabled: raise 0x00000008, status.interrupt %u, %u interrupts in %u ms\n", asserted, early, QUIET_MS);
    if (early) fail(EXIT_INTX, "an interrupt came through INTX_DISABLE");
    if (!asserted) fail(EXIT_INTX, "STATUS.INTERRUPT is clear while the device has an interrupt pending");
    pci_cfg_write16(b, PCI_COMMAND, cmd);
    take_interrupt(1, before, 0x00000008u, "enabled again", 0);
    asked++;
    if (pci_cfg_read16(b, PCI_STATUS) & PCI_STATUS_INTERRUPT) fail(EXIT_INTX, "STATUS.INTERRUPT stays set after the acknowledge");
    uint32_t late = watch_vector(INTX_VECTOR, QUIET_MS);
    print("edu: intx: %u interrupts for %u causes, %u more in %u ms\n", irq_counts[INTX_VECTOR] - redelivered - late, asked, late, QUIET_MS);
    print("edu: note intx redelivered %u after early EOIs\n", redelivered);
    if (late || irq_counts[INTX_VECTOR] - redelivered != asked) fail(EXIT_INTX, "interrupts without a cause");
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, IOAPIC_REDTBL_LO(gsi));
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, rte | IOAPIC_RTE_MASKED);
}

void main(void) {
    print("edu: start\n");
    crc_init();
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    irq_wait_init();
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        pci_size_bars(f);                                /* bridges: marked sized, left alone */
        if (!edu && f->vendor == EDU_VENDOR && f->device == EDU_DEVICE) edu = f;
    }
    if (!edu) fail(EXIT_NO_EDU, "no edu (1234:11e8) on bus 0");
    identify();
    size_bar0();

    uint32_t first = free_slot(0);
    place_bar0(first);
    print("edu: bar0 placed at ");
    print_hex8(first);
    print(" by the guest, memory decoding and bus mastering on\n");
    check_identification("at the first address");
    quiesce();
    check_liveness();
    uint32_t second = free_slot(first);
    place_bar0(second);
    print("edu: bar0 moved to ");
    print_hex8(second);
    print("\n");
    check_identification("at the second address");
    wr(EDU_LIVENESS, 0x0badf00du);
    if (rd(EDU_LIVENESS) != ~0x0badf00du) fail(EXIT_REGS, "liveness after the move does not read back the inverse");
    print("edu: liveness after the move ok\n");

    check_factorials();
    check_dma();
    check_device_buffer("after the transfers");
    check_msi();
    if (cmdline_uint("intx=", 1)) check_intx();
    check_device_buffer("at the end");

    irq_wait_stop();
    print("edu: all ok\n");
    debug_exit(EXIT_OK);
}
