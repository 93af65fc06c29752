// Named constants of the VFIO ABI (<linux/vfio.h>) that tsvmm uses. Every export whose name starts with `VFIO_` is
// compared with the header by vfio/bindings/abi.test.ts, so only names the header defines belong here.

/** The only VFIO API version there has been (VFIO_GET_API_VERSION). */
export const VFIO_API_VERSION = 0;

// ---- IOMMU models and extensions (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU) -----------------------------------------
export const VFIO_TYPE1_IOMMU = 1; // the first x86 IOMMU model
export const VFIO_TYPE1v2_IOMMU = 3; // type1 with strict unmap semantics: what tsvmm (and QEMU) ask for
export const VFIO_DMA_CC_IOMMU = 4; // DMA is cache coherent
export const VFIO_NOIOMMU_IOMMU = 8; // no IOMMU at all (unsafe mode): tsvmm refuses it
export const VFIO_UNMAP_ALL = 9; // VFIO_DMA_UNMAP_FLAG_ALL is supported
export const VFIO_UPDATE_VADDR = 10; // the VADDR flags of MAP/UNMAP_DMA (CPR: DMA keeps going across a hand-over)

// ---- ioctl encoding ---------------------------------------------------------------------------------------------
export const VFIO_TYPE = 0x3b; // ';'
export const VFIO_BASE = 100;

// ---- group status (VFIO_GROUP_GET_STATUS) -----------------------------------------------------------------------
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0; // every device of the group is bound to a VFIO driver (or none)
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

// ---- device info (VFIO_DEVICE_GET_INFO) -------------------------------------------------------------------------
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0; // VFIO_DEVICE_RESET works
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1; // a vfio-pci device: the PCI region and IRQ indexes below apply
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7; // the info has a capability chain

// ---- region info (VFIO_DEVICE_GET_REGION_INFO) ------------------------------------------------------------------
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0; // pread works
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1; // pwrite works
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2; // mmap of the device fd at the region's offset works
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3; // a capability chain follows; argsz says how much room it needs

// Region capability ids (vfio_info_cap_header.id), each with its own version numbering.
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1; // only these areas of the region may be mmapped
export const VFIO_REGION_INFO_CAP_TYPE = 2; // a device-specific region: type/subtype
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3; // the MSI-X table's page may be mmapped too

// ---- irq info and set (VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS) ------------------------------------------
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0; // can signal an eventfd
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1; // MASK/UNMASK actions work
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2; // masked after each signal (level-triggered INTx): unmask to re-arm
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3; // vectors are set up as a set (MSI, MSI-X)

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0; // no data: act on [start, start+count)
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1; // data is one u8 per vector
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2; // data is one s32 fd per vector (-1: unassign)
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4; // with DATA_EVENTFD: a resample fd that unmasks INTx
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5; // the kernel signals the fd when the device interrupts

// ---- DMA map/unmap (VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA) ----------------------------------------------------
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0; // readable from the device
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1; // writable from the device
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2; // re-point an invalidated mapping at a new process address
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1; // unmap everything (iova and size 0)
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2; // keep the IOMMU mapping, forget the process address

// ---- IOMMU info (VFIO_IOMMU_GET_INFO) ---------------------------------------------------------------------------
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;

// ---- vfio-pci's fixed region and IRQ indexes (C enums: the abi test checks them without #ifdef) -----------------
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6; // the expansion ROM
export const VFIO_PCI_CONFIG_REGION_INDEX = 7; // config space (256 bytes, or 4 KiB for PCIe)
export const VFIO_PCI_VGA_REGION_INDEX = 8; // legacy VGA ranges, for class 03:00 devices
export const VFIO_PCI_NUM_REGIONS = 9; // indexes from here on are device-specific (VFIO_REGION_INFO_CAP_TYPE)

export const VFIO_PCI_INTX_IRQ_INDEX = 0; // the legacy pin (level, automasked)
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3; // AER error reporting
export const VFIO_PCI_REQ_IRQ_INDEX = 4; // the host asks for the device back
export const VFIO_PCI_NUM_IRQS = 5;

/** The C enumerators above (no #define to test with #ifdef). */
export const VFIO_ENUMERATORS: readonly string[] = [
  'VFIO_PCI_BAR0_REGION_INDEX',
  'VFIO_PCI_BAR1_REGION_INDEX',
  'VFIO_PCI_BAR2_REGION_INDEX',
  'VFIO_PCI_BAR3_REGION_INDEX',
  'VFIO_PCI_BAR4_REGION_INDEX',
  'VFIO_PCI_BAR5_REGION_INDEX',
  'VFIO_PCI_ROM_REGION_INDEX',
  'VFIO_PCI_CONFIG_REGION_INDEX',
  'VFIO_PCI_VGA_REGION_INDEX',
  'VFIO_PCI_NUM_REGIONS',
  'VFIO_PCI_INTX_IRQ_INDEX',
  'VFIO_PCI_MSI_IRQ_INDEX',
  'VFIO_PCI_MSIX_IRQ_INDEX',
  'VFIO_PCI_ERR_IRQ_INDEX',
  'VFIO_PCI_REQ_IRQ_INDEX',
  'VFIO_PCI_NUM_IRQS',
];
