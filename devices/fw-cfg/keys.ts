// fw_cfg selector keys, ID bits and DMA control bits, as in QEMU's docs/specs/fw_cfg.rst and
// include/standard-headers/linux/qemu_fw_cfg.h. Multi-byte numeric items are little-endian unless noted.

/** Well-known items (selector values). */
export const FW_CFG = {
  SIGNATURE: 0x00, // "QEMU"
  ID: 0x01, // le32 feature bits (FW_CFG_ID_*)
  UUID: 0x02, // 16 bytes, the VM's UUID
  RAM_SIZE: 0x03, // le64 bytes of RAM
  NOGRAPHIC: 0x04, // le16, 1 with -nographic
  NB_CPUS: 0x05, // le16 CPUs at boot
  MACHINE_ID: 0x06, // le32
  KERNEL_ADDR: 0x07, // le32 where the kernel (protected-mode part) goes
  KERNEL_SIZE: 0x08, // le32
  KERNEL_CMDLINE: 0x09, // NUL-terminated string (legacy)
  INITRD_ADDR: 0x0a, // le32
  INITRD_SIZE: 0x0b, // le32
  BOOT_DEVICE: 0x0c, // le16
  NUMA: 0x0d, // le64 count, then per-node data
  BOOT_MENU: 0x0e, // le16
  MAX_CPUS: 0x0f, // le16 possible CPUs
  KERNEL_ENTRY: 0x10, // le32
  KERNEL_DATA: 0x11, // the kernel image bytes
  INITRD_DATA: 0x12, // the initrd bytes
  CMDLINE_ADDR: 0x13, // le32
  CMDLINE_SIZE: 0x14, // le32, including the NUL
  CMDLINE_DATA: 0x15, // the command line, NUL-terminated
  SETUP_ADDR: 0x16, // le32 where the Linux setup (real-mode) part goes
  SETUP_SIZE: 0x17, // le32
  SETUP_DATA: 0x18, // the setup bytes
  FILE_DIR: 0x19, // the directory of named files (big-endian, see FW_CFG_FILE_*)
  FILE_FIRST: 0x20, // named files get keys from here on, in name order
} as const;

/** x86 items in the architecture-local range (bit 15 set). */
export const FW_CFG_X86 = {
  ACPI_TABLES: 0x8000,
  SMBIOS_ENTRIES: 0x8001,
  IRQ0_OVERRIDE: 0x8002,
  E820_TABLE: 0x8003,
  HPET: 0x8004,
} as const;

/** Selector bit 14: "write channel"; writes are not supported, so it only selects the same item. */
export const FW_CFG_WRITE_CHANNEL = 0x4000;
/** Selector bit 15: architecture-local item. */
export const FW_CFG_ARCH_LOCAL = 0x8000;
/** The item index within its (generic or arch-local) table. */
export const FW_CFG_ENTRY_MASK = 0x3fff;
/** The "nothing selected" selector value. */
export const FW_CFG_INVALID = 0xffff;

/** FW_CFG_ID bits. */
export const FW_CFG_ID_TRADITIONAL = 0x01; // selector/data port interface
export const FW_CFG_ID_DMA = 0x02; // DMA interface at 0x514

/** FWCfgDmaAccess.control bits (the field is big-endian in guest memory). */
export const FW_CFG_DMA_CTL_ERROR = 0x01;
export const FW_CFG_DMA_CTL_READ = 0x02;
export const FW_CFG_DMA_CTL_SKIP = 0x04;
export const FW_CFG_DMA_CTL_SELECT = 0x08; // the selector is in the high 16 bits of control
export const FW_CFG_DMA_CTL_WRITE = 0x10;
/** FWCfgDmaAccess: be32 control, be32 length, be64 address. */
export const FW_CFG_DMA_ACCESS_SIZE = 16;
/** What reads of the DMA address register return: "QEMU CFG", big-endian. */
export const FW_CFG_DMA_SIGNATURE = 'QEMU CFG';

/** FILE_DIR: be32 count, then entries of be32 size, be16 select, be16 reserved, name[56]. */
export const FW_CFG_FILE_ENTRY_SIZE = 64;
export const FW_CFG_MAX_FILE_PATH = 56; // including the terminating NUL
