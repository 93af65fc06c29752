// The capability chains VFIO appends to its info structs (VFIO_DEVICE_GET_REGION_INFO, VFIO_IOMMU_GET_INFO): each
// capability starts with vfio_info_cap_header { id, version, next }, `next` being an offset from the start of the
// info buffer, 0 at the end. The kernel builds the chain; we still walk it defensively — every offset inside the
// bytes the kernel filled (argsz), none inside the fixed struct, none visited twice — so a bad chain is one clear
// error and never an endless or out-of-bounds walk.
import { SetupError } from '../../src/util/setup-error.js';
import { getU32, getU64 } from './codec.js';
import {
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_CAP_TYPE,
} from './constants.js';
import { offsetOf, sizeOf } from './structs.js';
import type { IovaRange, RegionCapHeader, RegionCaps, SparseMmapArea } from './types.js';

/** A capability chain that does not hold together: says which info and what is wrong, in one line. */
export class VfioCapabilityError extends SetupError {
  constructor(message: string) {
    super(message);
    this.name = 'VfioCapabilityError';
  }
}

/**
 * The capability headers of a chain starting at `first` in `info` (the bytes the kernel filled, argsz long), whose
 * fixed struct is `fixedSize` bytes. `what` names the info in errors ("region 0 of 0000:00:03.0").
 */
export function walkCapChain(info: Uint8Array, first: number, fixedSize: number, what: string): RegionCapHeader[] {
  const headerSize = sizeOf('vfio_info_cap_header');
  const out: RegionCapHeader[] = [];
  const seen = new Set<number>();
  const bad = (why: string) => new VfioCapabilityError(`vfio: ${what}: capability chain: ${why}`);
  // Each step visits a new offset below info.length, so the walk ends after at most info.length steps.
  for (let at = first; at !== 0; ) {
    if (seen.has(at)) throw bad(`capability at offset ${at} is reached twice (a loop)`);
    if (at < fixedSize) throw bad(`capability at offset ${at} lies inside the ${fixedSize}-byte info struct`);
    if (at + headerSize > info.length)
      throw bad(`capability at offset ${at} runs past the ${info.length} bytes of the info (argsz)`);
    seen.add(at);
    out.push({
      id: getU32(info, 'vfio_info_cap_header', 'id', at),
      version: getU32(info, 'vfio_info_cap_header', 'version', at),
      offset: at,
    });
    at = getU32(info, 'vfio_info_cap_header', 'next', at);
  }
  return out;
}

const SPARSE = 'vfio_region_info_cap_sparse_mmap';
const AREA = 'vfio_region_sparse_mmap_area';

/** The sparse-mmap areas of the capability at `at`; every area must lie inside the info. */
function sparseAreas(info: Uint8Array, at: number, bad: (why: string) => Error): SparseMmapArea[] {
  if (at + sizeOf(SPARSE) > info.length) throw bad(`sparse-mmap capability at offset ${at} is cut off`);
  const count = getU32(info, SPARSE, 'nr_areas', at);
  const first = at + offsetOf(SPARSE, 'areas');
  const end = first + count * sizeOf(AREA);
  if (end > info.length)
    throw bad(`sparse-mmap capability at offset ${at} has ${count} areas, which run past the ${info.length} bytes`);
  const areas: SparseMmapArea[] = [];
  for (let i = 0; i < count; i++) {
    const base = first + i * sizeOf(AREA);
    areas.push({ offset: getU64(info, AREA, 'offset', base), size: getU64(info, AREA, 'size', base) });
  }
  return areas;
}

/** A region's capabilities, parsed from the info buffer (vfio_region_info with its chain) the kernel filled. */
export function parseRegionCaps(info: Uint8Array, capOffset: number, what: string): RegionCaps {
  const bad = (why: string) => new VfioCapabilityError(`vfio: ${what}: capability chain: ${why}`);
  const all = walkCapChain(info, capOffset, sizeOf('vfio_region_info'), what);
  const caps: RegionCaps = { sparseMmap: null, msixMappable: false, type: null, all };
  for (const cap of all) {
    switch (cap.id) {
      case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
        caps.sparseMmap = sparseAreas(info, cap.offset, bad);
        break;
      case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
        caps.msixMappable = true;
        break;
      case VFIO_REGION_INFO_CAP_TYPE:
        if (cap.offset + sizeOf('vfio_region_info_cap_type') > info.length)
          throw bad(`type capability at offset ${cap.offset} is cut off`);
        caps.type = {
          type: getU32(info, 'vfio_region_info_cap_type', 'type', cap.offset),
          subtype: getU32(info, 'vfio_region_info_cap_type', 'subtype', cap.offset),
        };
        break;
      default: // capabilities tsvmm does not use (NVLink2, …): listed in `all`, otherwise ignored
    }
  }
  return caps;
}

const IOVA_CAP = 'vfio_iommu_type1_info_cap_iova_range';
const IOVA = 'vfio_iova_range';

/**
 * The IOVA ranges a type1 container accepts mappings in (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE), from the
 * vfio_iommu_type1_info the kernel filled; null when it has no such capability (every address then goes).
 */
export function parseIovaRanges(info: Uint8Array, capOffset: number, what: string): IovaRange[] | null {
  const bad = (why: string) => new VfioCapabilityError(`vfio: ${what}: capability chain: ${why}`);
  const cap = walkCapChain(info, capOffset, sizeOf('vfio_iommu_type1_info'), what).find(
    (c) => c.id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  );
  if (!cap) return null;
  if (cap.offset + sizeOf(IOVA_CAP) > info.length)
    throw bad(`IOVA-range capability at offset ${cap.offset} is cut off`);
  const count = getU32(info, IOVA_CAP, 'nr_iovas', cap.offset);
  const first = cap.offset + offsetOf(IOVA_CAP, 'iova_ranges');
  if (first + count * sizeOf(IOVA) > info.length)
    throw bad(
      `IOVA-range capability at offset ${cap.offset} has ${count} ranges, which run past the ${info.length} bytes`,
    );
  const ranges: IovaRange[] = [];
  for (let i = 0; i < count; i++) {
    const base = first + i * sizeOf(IOVA);
    ranges.push({ start: getU64(info, IOVA, 'start', base), end: getU64(info, IOVA, 'end', base) });
  }
  return ranges;
}
