// The x86 architecture's control-register and EFER bits, written once for every layer that reads or sets them:
// the boot code (src/boot/cpu-modes.ts), the page walk of failure reports (src/runtime/page-walk.ts) and KVM's
// special-register rules (kvm/sregs-rules.ts). Intel SDM vol. 3, 2.5 and 2.2.1.

/** CR0.PE: protection enable. */
export const CR0_PE = 1n << 0n;
/** CR0.ET: extension type (hard-wired to 1 on every CPU since the 486). */
export const CR0_ET = 1n << 4n;
/** CR0.NE: report x87 errors as #MF (the modern setting; VMX requires it in the hardware CR0 anyway). */
export const CR0_NE = 1n << 5n;
/** CR0.NW: not write-through (meaningful only with CD). */
export const CR0_NW = 1n << 29n;
/** CR0.CD: cache disable. */
export const CR0_CD = 1n << 30n;
/** CR0.PG: paging. */
export const CR0_PG = 1n << 31n;
/** CR4.PSE: 4 MiB pages in 32-bit paging. */
export const CR4_PSE = 1n << 4n;
/** CR4.PAE: physical address extension (required for long mode). */
export const CR4_PAE = 1n << 5n;
/** CR4.LA57: 5-level paging. */
export const CR4_LA57 = 1n << 12n;
/** EFER.LME: long mode enable. */
export const EFER_LME = 1n << 8n;
/** EFER.LMA: long mode active (set by the CPU when paging is turned on with LME; KVM wants it given). */
export const EFER_LMA = 1n << 10n;
