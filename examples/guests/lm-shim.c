/* lm-shim (a QEMU test helper, not a tsvmm guest): QEMU cannot start a flat binary in long mode, so this multiboot
 * kernel does what tsvmm's loader does for `mode: 'long'` — identity-map the first 4 GiB with 2 MiB pages, enable
 * PAE, EFER.LME and paging, load a 64-bit code segment — and jumps to the first multiboot module (a position-
 * independent flat 64-bit guest such as longmode-hello). */
#include "runtime.h"

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));

#define PTE_P  0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull
#define MBI_FLAG_MODS (1u << 3)

void enter_long_mode(uint32_t cr3, uint32_t entry) __attribute__((noreturn));

void main(void) {
    const uint32_t *mbi = (const uint32_t *)mb_info;
    if (mb_info == 0 || !(mbi[0] & MBI_FLAG_MODS) || mbi[5] == 0) {
        print("lm-shim: no module to start\n");
        debug_exit(EXIT_FAILURE_CODE);
    }
    const uint32_t *mod = (const uint32_t *)mbi[6];
    for (unsigned g = 0; g < 4; g++) {
        pdpt[g] = (uint32_t)pd[g] | PTE_P | PTE_RW;
        for (unsigned i = 0; i < 512; i++) pd[g][i] = ((uint64_t)(g * 512 + i) << 21) | PTE_P | PTE_RW | PTE_PS;
    }
    pml4[0] = (uint32_t)pdpt | PTE_P | PTE_RW;
    enter_long_mode((uint32_t)pml4, mod[0]);
}
