/* mmio-bench: the cost of one MMIO read from a passed-through PCI function, for bench/vfio.ts. The function is QEMU's
 * NVMe controller (1b36:0010) behind -device vfio-pci,host=…, whose BAR0 holds both kinds of page a VMM gives a
 * passed-through BAR: the registers, which tsvmm and QEMU map into the guest (a read never leaves the guest), and the
 * MSI-X table, which both trap and emulate (a read exits to the VMM, which answers from its copy of the table).
 * The guest reads each N times (after an untimed warm-up that faults the mapping in) and times the loop with rdtsc;
 * the TSC rate is measured against the PIT (delay_us), so the host can print nanoseconds.
 *
 * Command line: `reads=N` (default 65536; rounded down to a power of two, at least 256).
 * Output (one line each; bench/vfio.ts parses it):
 *   mmio-bench: nvme at 00:SS.F bar0 0xADDR msix table +0xOFF
 *   mmio-bench: tsc MHZ MHz
 *   mmio-bench: mapped N reads C cycles/read            (NVMe CAP, offset 0)
 *   mmio-bench: trapped N reads C cycles/read           (MSI-X table entry 0, vector control)
 *   mmio-bench: all ok                                  (or mmio-bench: FAILED …)
 * Exit values: 0 ok, 0x10 no NVMe, 0x11 PCI/BAR placement or no MSI-X in BAR0. */
#include "runtime.h"
#include "pci.h"

#define EXIT_OK 0
#define EXIT_NO_NVME 0x10
#define EXIT_PCI 0x11

#define NVME_VENDOR 0x1b36                   /* Red Hat, QEMU's PCI ids */
#define NVME_DEVICE 0x0010
#define NVME_CAP    0x00                     /* controller capabilities, low dword: MQES, CQR, AMS, TO */
#define MMIO_BASE  0xc0000000u               /* window for BARs nobody placed: the PCI hole of pc and of tsvmm */
#define MMIO_LIMIT 0xfec00000u               /* IOAPIC, HPET, LAPIC and the BIOS above */
#define WARMUP 256

static struct pci_function functions[PCI_MAX_FOUND];

static void fail(unsigned code, const char *why) {
    print("mmio-bench: FAILED: %s\n", why);
    debug_exit(code);
}

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Cycles per read of `addr` over 2^shift reads (32-bit code: a shift, not a 64-bit division). */
static uint32_t time_reads(uintptr_t addr, unsigned shift) {
    for (unsigned i = 0; i < WARMUP; i++) (void)mmio_read32(addr);
    uint64_t t0 = rdtsc();
    for (uint32_t i = 0; i < (1u << shift); i++) (void)mmio_read32(addr);
    return (uint32_t)((rdtsc() - t0) >> shift);
}

void main(void) {
    unsigned n = pci_scan_bus0(functions, PCI_MAX_FOUND);
    if (n > PCI_MAX_FOUND) n = PCI_MAX_FOUND;
    struct pci_function *nvme = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pci_function *f = &functions[i];
        if ((f->class_rev >> 24) == 0x06) continue;    /* bridges: not ours */
        pci_size_bars(f);
        if (!nvme && f->vendor == NVME_VENDOR && f->device == NVME_DEVICE) nvme = f;
    }
    if (!nvme) fail(EXIT_NO_NVME, "no QEMU NVMe (1b36:0010) on bus 0");
    pci_reserve_existing(functions, n);
    pci_reserve(MMIO_LIMIT, 0x100000000ull - MMIO_LIMIT);
    struct pci_window window = { MMIO_BASE, MMIO_LIMIT };
    if (pci_assign_bars(nvme, &window, 0)) fail(EXIT_PCI, "cannot place the BARs");

    uint8_t cap = pci_find_cap(nvme->bdf, PCI_CAP_ID_MSIX, 0);
    if (!cap) fail(EXIT_PCI, "no MSI-X capability");
    uint32_t table = pci_cfg_read32(nvme->bdf, cap + PCI_MSIX_TABLE);
    if ((table & PCI_MSIX_BIR_MASK) != 0) fail(EXIT_PCI, "the MSI-X table is not in BAR0");
    uint32_t offset = table & ~PCI_MSIX_BIR_MASK;
    uintptr_t bar0 = (uintptr_t)nvme->bar[0].addr;
    print("mmio-bench: nvme at ");
    pci_print_bdf(nvme->bdf);
    print(" bar0 0x");
    print_hex(bar0, 8);
    print(" msix table +0x");
    print_hex(offset, 5);
    print("\n");

    uint64_t t0 = rdtsc();
    delay_us(50000);                                                               /* its maximum */
    print("mmio-bench: tsc %u MHz\n", (uint32_t)((rdtsc() - t0) >> 4) / 3125u);   /* cycles / 50000 us */

    uint32_t reads = cmdline_uint("reads=", 65536);
    unsigned shift = 8;
    while (shift < 24 && (2u << shift) <= reads) shift++;
    print("mmio-bench: mapped %u reads %u cycles/read\n", 1u << shift, time_reads(bar0 + NVME_CAP, shift));
    print("mmio-bench: trapped %u reads %u cycles/read\n", 1u << shift,
          time_reads(bar0 + offset + MSIX_ENTRY_CTRL, shift));
    print("mmio-bench: all ok\n");
    debug_exit(EXIT_OK);
}
