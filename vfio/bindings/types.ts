// Plain-data shapes of what VFIO reports: device, region and IRQ info, with the region's capability chain parsed.
// Sizes and offsets within the device fd are bigints (a region's offset is its index shifted to bit 40).

export interface VfioDeviceInfo {
  /** VFIO_DEVICE_FLAGS_*. */
  flags: number;
  numRegions: number;
  numIrqs: number;
  /** VFIO_DEVICE_RESET works (VFIO_DEVICE_FLAGS_RESET). */
  canReset: boolean;
  /** A vfio-pci device: the VFIO_PCI_* region and IRQ indexes apply. */
  isPci: boolean;
}

/** One mmappable area of a region (VFIO_REGION_INFO_CAP_SPARSE_MMAP), relative to the region's start. */
export interface SparseMmapArea {
  offset: bigint;
  size: bigint;
}

/** A capability of a region's info chain, as found (id, version, its offset in the info buffer). */
export interface RegionCapHeader {
  id: number;
  version: number;
  offset: number;
}

/** What a region's capability chain says, parsed. */
export interface RegionCaps {
  /** Only these areas may be mmapped (e.g. a BAR around its MSI-X table); null: no such capability. */
  sparseMmap: SparseMmapArea[] | null;
  /** The MSI-X table's page may be mmapped with the rest of the BAR (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE). */
  msixMappable: boolean;
  /** A device-specific region's type and subtype (VFIO_REGION_INFO_CAP_TYPE); null: none. */
  type: { type: number; subtype: number } | null;
  /** Every capability in chain order, known or not. */
  all: RegionCapHeader[];
}

export interface VfioRegion extends RegionCaps {
  index: number;
  /** VFIO_REGION_INFO_FLAG_*. */
  flags: number;
  /** Bytes; 0 for a region the device does not implement (an unused BAR). */
  size: bigint;
  /** Where the region starts in the device fd (for pread/pwrite/mmap). */
  offset: bigint;
  readable: boolean;
  writable: boolean;
  mmappable: boolean;
}

export interface VfioIrqInfo {
  index: number;
  /** Vectors in this index; 0 when the device does not implement it. */
  count: number;
  /** VFIO_IRQ_INFO_*. */
  flags: number;
  eventfd: boolean;
  maskable: boolean;
  /** Masked after each signal until unmasked (level-triggered INTx). */
  automasked: boolean;
  /** Vectors are enabled as a set (MSI, MSI-X): disable the index to change how many. */
  noresize: boolean;
}

/** An inclusive range of IO virtual addresses the IOMMU can map ([start, end], as the kernel reports it). */
export interface IovaRange {
  start: bigint;
  end: bigint;
}

export interface VfioIommuInfo {
  /** Bitmap of the IOMMU page sizes (bit n: 2^n bytes); 4 KiB is bit 12. */
  pageSizes: bigint;
  /** Where mappings may go; null when the kernel does not say (older kernels). */
  iovaRanges: IovaRange[] | null;
}
