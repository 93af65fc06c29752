// Which pieces of a passed-through function's BARs go straight into the guest (KVM memory slots over tsvmm's mmap of
// the VFIO region: guest accesses never exit) and which stay trapped (each access exits and is forwarded with
// pread/pwrite on the device fd, or emulated).
//
// A piece is mapped when VFIO says the region may be mmapped (all of it, or only its sparse areas), it is whole host
// pages, and it holds neither the MSI-X table nor the PBA: those pages are always trapped, because the guest's table
// is emulated (its messages become KVM routes) and the PBA is ours. BARs smaller than a page stay trapped.
import type { MsixInfo } from './config.js';

/** A VFIO region as the plan reads it (VFIO_DEVICE_GET_REGION_INFO with its sparse-mmap capability). */
export interface VfioRegionLayout {
  readonly index: number;
  readonly size: number;
  readonly mmappable: boolean;
  /** The areas that may be mmapped, when VFIO lists them (null: the whole region). */
  readonly sparse: readonly { readonly offset: number; readonly size: number }[] | null;
}

export const HOST_PAGE_SIZE = 4096;

/** The mappable windows of one BAR: [offset, offset + size) pieces, page-aligned, sorted. */
export function barWindows(
  region: VfioRegionLayout,
  msix: MsixInfo | null,
  page = HOST_PAGE_SIZE,
): { offset: number; size: number }[] {
  if (!region.mmappable || region.size < page) return [];
  const areas = region.sparse ?? [{ offset: 0, size: region.size }];
  // Trapped: the pages holding the MSI-X table and the PBA of this BAR.
  const holes: [number, number][] = [];
  if (msix) {
    const hole = (offset: number, bytes: number) =>
      holes.push([Math.floor(offset / page) * page, Math.ceil((offset + bytes) / page) * page]);
    if (msix.tableBar === region.index) hole(msix.tableOffset, msix.vectors * 16);
    if (msix.pbaBar === region.index) hole(msix.pbaOffset, Math.ceil(msix.vectors / 64) * 8);
  }
  const out: { offset: number; size: number }[] = [];
  for (const area of areas) {
    // Inside the region, whole pages only.
    let start = Math.ceil(Math.max(0, area.offset) / page) * page;
    const end = Math.floor(Math.min(region.size, area.offset + area.size) / page) * page;
    const cuts = holes.filter(([a, b]) => a < end && b > start).sort((x, y) => x[0] - y[0]);
    for (const [a, b] of cuts) {
      if (a > start) out.push({ offset: start, size: a - start });
      start = Math.max(start, b);
    }
    if (end > start) out.push({ offset: start, size: end - start });
  }
  return out.sort((a, b) => a.offset - b.offset);
}
