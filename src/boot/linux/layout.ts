// Byte layouts of what a Linux loader hands the kernel: `struct boot_params` (the "zero page") with its embedded
// `struct setup_header` (Documentation/arch/x86/boot.rst, zero-page.rst, <asm/bootparam.h>), and the PVH start-of-day
// structures (Xen's include/public/arch-x86/hvm/start_info.h). Every number here is checked by layout.test.ts: the
// boot_params ones against the kernel's own <asm/bootparam.h> compiled at test time, the PVH ones against a C
// definition written from the ABI text (no system header carries them).
//
// Also the fixed guest-physical addresses the Linux loaders use, chosen like Firecracker/kvmtool and clear of what
// src/boot/cpu-modes.ts reserves (GDT/TSS/stack 0x500-0xfff, long-mode page tables 0x9000-0xefff).
import type { GuestRange } from '../cpu-modes.js';

// ---- struct boot_params -------------------------------------------------------------------------------------------

/** sizeof(struct boot_params): one page. */
export const BOOT_PARAMS_SIZE = 0x1000;

/** Offsets in struct boot_params of the fields outside the setup header that the loaders write (or keep zero). */
export const BOOT_PARAMS = Object.freeze({
  /** u64: physical address of the ACPI RSDP (read by kernels since 5.0; "protocol 2.14" in boot.rst's history). */
  acpi_rsdp_addr: 0x070,
  /** u32: bits 63:32 of ramdisk_image (kept 0: we place the initrd below 4 GiB). */
  ext_ramdisk_image: 0x0c0,
  /** u32: bits 63:32 of ramdisk_size. */
  ext_ramdisk_size: 0x0c4,
  /** u32: bits 63:32 of cmd_line_ptr. */
  ext_cmd_line_ptr: 0x0c8,
  /** u8: number of valid entries in e820_table. */
  e820_entries: 0x1e8,
  /** u8: 0 in a clean zero page; a loader that copies too much of the image leaves the kernel's 0xff here. */
  sentinel: 0x1ef,
  /** struct setup_header starts here (same offset as in the bzImage file). */
  hdr: 0x1f1,
  /** struct boot_e820_entry[E820_MAX_ENTRIES_ZEROPAGE]. */
  e820_table: 0x2d0,
});

/** Field sizes (bytes) of BOOT_PARAMS, as in <asm/bootparam.h>. */
export const BOOT_PARAMS_FIELD_SIZE: Readonly<Record<keyof typeof BOOT_PARAMS, number>> = Object.freeze({
  acpi_rsdp_addr: 8,
  ext_ramdisk_image: 4,
  ext_ramdisk_size: 4,
  ext_cmd_line_ptr: 4,
  e820_entries: 1,
  sentinel: 1,
  hdr: 0x26c - 0x1f1,
  e820_table: 20 * 128,
});

/** sizeof(struct boot_e820_entry): addr u64, size u64, type u32, packed. */
export const BOOT_E820_ENTRY_SIZE = 20;
/** Offsets in struct boot_e820_entry. */
export const BOOT_E820_ENTRY = Object.freeze({ addr: 0, size: 8, type: 16 });
/** E820_MAX_ENTRIES_ZEROPAGE: how many e820 entries fit in boot_params. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;

// ---- struct setup_header ------------------------------------------------------------------------------------------

/**
 * Every setup_header field as [offset in boot_params (= offset in the bzImage file), size in bytes]. The names are the
 * C member names, so the header test can generate `offsetof(struct boot_params, hdr.<name>)` from this table.
 */
export const SETUP_HEADER = Object.freeze({
  setup_sects: [0x1f1, 1],
  root_flags: [0x1f2, 2],
  syssize: [0x1f4, 4],
  ram_size: [0x1f8, 2],
  vid_mode: [0x1fa, 2],
  root_dev: [0x1fc, 2],
  boot_flag: [0x1fe, 2],
  jump: [0x200, 2],
  header: [0x202, 4],
  version: [0x206, 2],
  realmode_swtch: [0x208, 4],
  start_sys_seg: [0x20c, 2],
  kernel_version: [0x20e, 2],
  type_of_loader: [0x210, 1],
  loadflags: [0x211, 1],
  setup_move_size: [0x212, 2],
  code32_start: [0x214, 4],
  ramdisk_image: [0x218, 4],
  ramdisk_size: [0x21c, 4],
  bootsect_kludge: [0x220, 4],
  heap_end_ptr: [0x224, 2],
  ext_loader_ver: [0x226, 1],
  ext_loader_type: [0x227, 1],
  cmd_line_ptr: [0x228, 4],
  initrd_addr_max: [0x22c, 4],
  kernel_alignment: [0x230, 4],
  relocatable_kernel: [0x234, 1],
  min_alignment: [0x235, 1],
  xloadflags: [0x236, 2],
  cmdline_size: [0x238, 4],
  hardware_subarch: [0x23c, 4],
  hardware_subarch_data: [0x240, 8],
  payload_offset: [0x248, 4],
  payload_length: [0x24c, 4],
  setup_data: [0x250, 8],
  pref_address: [0x258, 8],
  init_size: [0x260, 4],
  handover_offset: [0x264, 4],
  kernel_info_offset: [0x268, 4],
} as const satisfies Record<string, readonly [number, number]>);

export type SetupHeaderField = keyof typeof SETUP_HEADER;

/** sizeof(struct setup_header) in the newest protocol (2.15): up to and including kernel_info_offset. */
export const SETUP_HEADER_SIZE = 0x26c - 0x1f1;
/** The setup header may grow up to here: the hole in boot_params ends at 0x290 (edd_mbr_sig_buffer). */
export const SETUP_HEADER_MAX_END = 0x290;

/** Offset of a setup_header field in boot_params / in the image file. */
export function hdrOffset(field: SetupHeaderField): number {
  return SETUP_HEADER[field][0];
}

// ---- Constants of the boot protocol ------------------------------------------------------------------------------

/** setup_header.header: "HdrS". */
export const HDRS_MAGIC = 0x53726448;
/** setup_header.boot_flag. */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** setup_header.jump's first byte: a short jmp (its operand gives the header's length). */
export const JUMP_SHORT_OPCODE = 0xeb;
/** A sector in the boot protocol is 512 bytes whatever the medium. */
export const SECTOR_SIZE = 512;
/** setup_sects == 0 means 4 (very old kernels). */
export const SETUP_SECTS_DEFAULT = 4;

/** loadflags bit 0: the protected-mode code is loaded at 0x100000 (a bzImage). */
export const LOADED_HIGH = 1 << 0;
/** loadflags bit 1: kernel-internal KASLR status. */
export const KASLR_FLAG = 1 << 1;
/** loadflags bit 5: suppress early messages. */
export const QUIET_FLAG = 1 << 5;
/** loadflags bit 6: obsolete (2.07+): don't reload segment registers in the 32-bit entry. */
export const KEEP_SEGMENTS = 1 << 6;
/** loadflags bit 7: heap_end_ptr is valid. */
export const CAN_USE_HEAP = 1 << 7;

/** xloadflags bit 0: the kernel has the 64-bit entry point at load address + 0x200. */
export const XLF_KERNEL_64 = 1 << 0;
/** xloadflags bit 1: kernel, boot_params, cmdline and ramdisk may be above 4 GiB. */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;

/** type_of_loader for a loader without an assigned id. */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** vid_mode "normal": no mode switch (what `vga=normal` and QEMU's default give). */
export const VID_MODE_NORMAL = 0xffff;
/** hardware_subarch: the default x86/PC environment. */
export const X86_SUBARCH_PC = 0;

/** Oldest boot protocol the bzImage loader accepts: 2.06 added cmdline_size. */
export const MIN_BOOT_PROTOCOL = 0x0206;
/** 2.10 added pref_address, init_size and min_alignment. */
export const PROTOCOL_PREF_ADDRESS = 0x020a;
/** 2.12 added xloadflags. */
export const PROTOCOL_XLOADFLAGS = 0x020c;
/** 2.05 added relocatable_kernel and kernel_alignment. */
export const PROTOCOL_RELOCATABLE = 0x0205;
/** 2.04 made syssize 32 bits wide. */
export const PROTOCOL_SYSSIZE32 = 0x0204;

/** Offset of the 64-bit entry point (startup_64) from the protected-mode kernel's load address. */
export const STARTUP_64_OFFSET = 0x200;
/** Where a bzImage's protected-mode code goes when nothing else is said (LOADED_HIGH). */
export const BZIMAGE_DEFAULT_LOAD = 0x100000;
/**
 * The highest initrd byte when the kernel does not tell (an ELF vmlinux has no setup header): the value every x86
 * kernel's own header.S puts in initrd_addr_max.
 */
export const DEFAULT_INITRD_ADDR_MAX = 0x7fffffff;
/** COMMAND_LINE_SIZE on x86 (incl. the NUL): the longest command line a kernel without a setup header takes. */
export const DEFAULT_CMDLINE_MAX = 2047;
/** heap_end_ptr value for a loaded-high kernel: heap end 0xe000 in the real-mode segment, minus 0x200 (boot.rst). */
export const HEAP_END_PTR = 0xe000 - 0x200;
/**
 * kernel_alignment written into the minimal header of an ELF vmlinux started at startup_64 (Firecracker writes
 * 16 MiB, "must be non-zero"); a bzImage keeps its own value.
 */
export const ELF_KERNEL_ALIGNMENT = 0x1000000;
/**
 * setup_header.version claimed in the minimal header of an ELF vmlinux: 2.12, the level of the fields written (the
 * kernel's own PVH entry code fills its boot_params with the same version for the same situation).
 */
export const ELF_HEADER_VERSION = 0x020c;

// ---- PVH: struct hvm_start_info and friends ---------------------------------------------------------------------

/** hvm_start_info.magic: "xEn3" with the 0x80 bit of the "E" set. */
export const XEN_HVM_START_MAGIC_VALUE = 0x336ec578;
/** Version 1 added memmap_paddr/memmap_entries. */
export const HVM_START_INFO_VERSION = 1;
/** ELF note type carrying the 32-bit physical PVH entry point (name "Xen"). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** Memory-map entry types (the ACPI address range types, like e820). */
export const XEN_HVM_MEMMAP_TYPE_RAM = 1;

/** struct hvm_start_info (version 1): field offsets; all sizes are in HVM_START_INFO_FIELD_SIZE. */
export const HVM_START_INFO = Object.freeze({
  magic: 0,
  version: 4,
  flags: 8,
  nr_modules: 12,
  modlist_paddr: 16,
  cmdline_paddr: 24,
  rsdp_paddr: 32,
  memmap_paddr: 40,
  memmap_entries: 48,
  reserved: 52,
});
export const HVM_START_INFO_FIELD_SIZE: Readonly<Record<keyof typeof HVM_START_INFO, number>> = Object.freeze({
  magic: 4,
  version: 4,
  flags: 4,
  nr_modules: 4,
  modlist_paddr: 8,
  cmdline_paddr: 8,
  rsdp_paddr: 8,
  memmap_paddr: 8,
  memmap_entries: 4,
  reserved: 4,
});
export const HVM_START_INFO_SIZE = 56;

/** struct hvm_modlist_entry. */
export const HVM_MODLIST_ENTRY = Object.freeze({ paddr: 0, size: 8, cmdline_paddr: 16, reserved: 24 });
export const HVM_MODLIST_ENTRY_SIZE = 32;

/** struct hvm_memmap_table_entry. */
export const HVM_MEMMAP_TABLE_ENTRY = Object.freeze({ addr: 0, size: 8, type: 16, reserved: 20 });
export const HVM_MEMMAP_TABLE_ENTRY_SIZE = 24;

// ---- Fixed guest-physical addresses -----------------------------------------------------------------------------

/** PVH: hvm_start_info (Firecracker's PVH_INFO_START). */
export const PVH_START_INFO_ADDR = 0x6000;
/** PVH: the module list, right after hvm_start_info (Firecracker's MODLIST_START). One entry: the initrd. */
export const PVH_MODLIST_ADDR = 0x6040;
/** PVH: the memory map (Firecracker's MEMMAP_START); up to E820_MAX_ENTRIES_ZEROPAGE entries (0xc00 bytes). */
export const PVH_MEMMAP_ADDR = 0x7000;
/** 64-bit boot protocol: the zero page (Firecracker's ZERO_PAGE_START). */
export const ZERO_PAGE_ADDR = 0x7000;
/** The kernel command line (Firecracker's and kvmtool's CMDLINE_START region). */
export const CMDLINE_ADDR = 0x20000;
/** The command line must end below the EBDA (nothing of ours goes above 0x9fc00 in low memory). */
export const CMDLINE_LIMIT = 0x9fc00;

/** Low-memory range the 64-bit boot protocol writes (zero page); the command line is extra. */
export const LINUX64_BOOT_DATA: Readonly<GuestRange> = Object.freeze({
  start: ZERO_PAGE_ADDR,
  end: ZERO_PAGE_ADDR + BOOT_PARAMS_SIZE,
});
/** Low-memory range PVH writes (start info, module list, memory map); the command line is extra. */
export const PVH_BOOT_DATA: Readonly<GuestRange> = Object.freeze({
  start: PVH_START_INFO_ADDR,
  end: PVH_MEMMAP_ADDR + E820_MAX_ENTRIES_ZEROPAGE * HVM_MEMMAP_TABLE_ENTRY_SIZE,
});
