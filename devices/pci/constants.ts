// PCI register offsets and bits (PCI Local Bus 3.0 ch. 6, PCI Express Base 4.0 ch. 7, MSI-X ECN), as Linux's
// <uapi/linux/pci_regs.h> names them so a reader can look each one up.

/** Bytes of a conventional function's configuration space (type-1 mechanism). */
export const PCI_CONFIG_SPACE_SIZE = 0x100;
/** Bytes of a PCI Express function's configuration space (ECAM): 0x100..0xfff holds extended capabilities. */
export const PCIE_CONFIG_SPACE_SIZE = 0x1000;

// ---- type 0 header ------------------------------------------------------------------------------------------------
export const PCI_VENDOR_ID = 0x00; // u16, read-only
export const PCI_DEVICE_ID = 0x02; // u16, read-only
export const PCI_COMMAND = 0x04; // u16
export const PCI_STATUS = 0x06; // u16
export const PCI_REVISION_ID = 0x08; // u8
export const PCI_CLASS_PROG = 0x09; // u8 programming interface
export const PCI_CLASS_DEVICE = 0x0a; // u16: sub-class (low byte) and base class (high byte)
export const PCI_CACHE_LINE_SIZE = 0x0c; // u8, read-write scratch for the OS
export const PCI_LATENCY_TIMER = 0x0d; // u8
export const PCI_HEADER_TYPE = 0x0e; // u8: layout (0 = endpoint) and bit 7 = multi-function
export const PCI_BIST = 0x0f; // u8
export const PCI_BASE_ADDRESS_0 = 0x10; // six u32 BARs, 0x10..0x27
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30; // expansion ROM BAR (reads 0 when the function has no ROM)
export const PCI_CAPABILITY_LIST = 0x34; // u8 offset of the first capability
export const PCI_INTERRUPT_LINE = 0x3c; // u8, read-write scratch (the IRQ the OS routed)
export const PCI_INTERRUPT_PIN = 0x3d; // u8: 0 none, 1 INTA# .. 4 INTD#
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;
/** First byte after the standard header: capabilities go from here. */
export const PCI_STD_HEADER_END = 0x40;

export const PCI_HEADER_TYPE_NORMAL = 0x00;
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;
export const PCI_NUM_BARS = 6;

// ---- command register ---------------------------------------------------------------------------------------------
export const PCI_COMMAND_IO = 0x0001; // respond to I/O-space BARs
export const PCI_COMMAND_MEMORY = 0x0002; // respond to memory-space BARs
export const PCI_COMMAND_MASTER = 0x0004; // may master the bus (DMA, MSI writes)
export const PCI_COMMAND_SPECIAL = 0x0008;
export const PCI_COMMAND_INVALIDATE = 0x0010;
export const PCI_COMMAND_VGA_PALETTE = 0x0020;
export const PCI_COMMAND_PARITY = 0x0040; // report parity errors
export const PCI_COMMAND_WAIT = 0x0080;
export const PCI_COMMAND_SERR = 0x0100; // SERR# enable
export const PCI_COMMAND_FAST_BACK = 0x0200;
export const PCI_COMMAND_INTX_DISABLE = 0x0400; // INTx# emulation disabled: the pin is not driven

// ---- status register ----------------------------------------------------------------------------------------------
export const PCI_STATUS_INTERRUPT = 0x0008; // read-only: the function asserts INTx# (even if disabled)
export const PCI_STATUS_CAP_LIST = 0x0010; // read-only: a capability list is present
export const PCI_STATUS_66MHZ = 0x0020;
export const PCI_STATUS_FAST_BACK = 0x0080;
export const PCI_STATUS_PARITY = 0x0100; // W1C: master data parity error
export const PCI_STATUS_DEVSEL_MASK = 0x0600;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800; // W1C
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000; // W1C
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000; // W1C
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000; // W1C
export const PCI_STATUS_DETECTED_PARITY = 0x8000; // W1C
/** The status bits software clears by writing 1. */
export const PCI_STATUS_W1C =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

// ---- base address registers ---------------------------------------------------------------------------------------
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01; // bit 0: I/O space BAR
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04; // bits 2:1 = 10b: 64-bit memory BAR (two registers)
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08; // bit 3: prefetchable memory
export const PCI_BASE_ADDRESS_MEM_MASK = 0xfffffff0; // address bits of a memory BAR's low register
export const PCI_BASE_ADDRESS_IO_MASK = 0xfffffffc; // address bits of an I/O BAR

// ---- expansion ROM BAR -------------------------------------------------------------------------------------------
export const PCI_ROM_ADDRESS_ENABLE = 0x01; // bit 0: the ROM decodes (with COMMAND.MEMORY)
export const PCI_ROM_ADDRESS_MASK = 0xfffff800; // address bits (a ROM is at least 2 KiB)
/** Where mappedBars() reports the ROM (Linux's PCI_ROM_RESOURCE). */
export const PCI_ROM_SLOT = 6;

// ---- capabilities -------------------------------------------------------------------------------------------------
export const PCI_CAP_LIST_ID = 0; // capability id byte
export const PCI_CAP_LIST_NEXT = 1; // next capability pointer byte
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_VNDR = 0x09; // vendor-specific (virtio's capabilities)
export const PCI_CAP_ID_EXP = 0x10; // PCI Express
export const PCI_CAP_ID_MSIX = 0x11;

// ---- MSI-X capability (offsets inside the capability) and table ---------------------------------------------------
export const PCI_MSIX_FLAGS = 2; // u16 message control
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff; // table size - 1 (read-only)
export const PCI_MSIX_FLAGS_MASKALL = 0x4000; // function mask: every vector masked
export const PCI_MSIX_FLAGS_ENABLE = 0x8000; // MSI-X enabled (INTx off)
export const PCI_MSIX_TABLE = 4; // u32 table offset | BIR
export const PCI_MSIX_PBA = 8; // u32 pending-bit-array offset | BIR
export const PCI_MSIX_BIR_MASK = 0x7; // which BAR holds the table / PBA
export const PCI_CAP_MSIX_SIZEOF = 12;
export const PCI_MSIX_ENTRY_SIZE = 16; // one table entry
export const PCI_MSIX_ENTRY_LOWER_ADDR = 0; // u32 message address low (bits 1:0 zero)
export const PCI_MSIX_ENTRY_UPPER_ADDR = 4; // u32 message address high
export const PCI_MSIX_ENTRY_DATA = 8; // u32 message data
export const PCI_MSIX_ENTRY_VECTOR_CTRL = 12; // u32 vector control
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1; // vector masked
/** The most vectors one MSI-X capability may describe. */
export const PCI_MSIX_MAX_VECTORS = 2048;

// ---- extended capabilities (0x100..0xfff, ECAM only) --------------------------------------------------------------
export const PCI_EXT_CAP_START = 0x100;
/** Header of an extended capability: id (15:0), version (19:16), next offset (31:20). */
export const pciExtCapHeader = (id: number, version: number, next: number): number =>
  (((next & 0xffc) << 20) | ((version & 0xf) << 16) | (id & 0xffff)) >>> 0;

// ---- the type-1 configuration mechanism (I/O ports 0xcf8 / 0xcfc) -------------------------------------------------
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8; // u32 CONFIG_ADDRESS
export const PCI_CONFIG_DATA_PORT = 0xcfc; // 4 bytes CONFIG_DATA, any width at offsets 0..3
export const PCI_CONFIG_ADDRESS_ENABLE = 0x80000000; // bit 31: the next CONFIG_DATA access is a config cycle
/** Port 0xcf9 (inside the address register's window): Intel's reset control register. */
export const PCI_RESET_CONTROL_PORT = 0xcf9;
export const RCR_SYS_RST = 0x02; // with RST_CPU: full reset rather than a CPU-only one
export const RCR_RST_CPU = 0x04; // writing 1 starts the reset

// ---- identifiers ------------------------------------------------------------------------------------------------
export const PCI_VENDOR_ID_REDHAT = 0x1b36; // Red Hat's generic devices (QEMU's gpex host bridge)
export const PCI_DEVICE_ID_REDHAT_PCIE_HOST = 0x0008; // "QEMU PCIe Host bridge"
export const PCI_CLASS_BRIDGE_HOST = 0x060000; // class 06 bridge, subclass 00 host, prog-if 00

/** Slots (devices) on one bus and functions per slot. */
export const PCI_SLOTS = 32;
export const PCI_FUNCTIONS = 8;
