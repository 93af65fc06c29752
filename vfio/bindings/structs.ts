// The VFIO structures tsvmm passes to the kernel, declared member by member as in <linux/vfio.h>. `LAYOUTS` is the
// computed table (struct → size, field → offset/size) that vfio/bindings/codec.ts and caps.ts read;
// vfio/bindings/abi.test.ts compiles a C program from this same table and compares every number with the header.
import {
  struct,
  flex,
  each,
  layoutOf,
  type AggregateType,
  type Layout,
  type FieldInfo,
} from '../../src/sys/c-layout.js';

const u8 = 'u8',
  u16 = 'u16',
  u32 = 'u32',
  u64 = 'u64';

/** The header of every capability in an info chain; `next` is an offset from the start of the info buffer (0: end). */
const vfio_info_cap_header = struct('vfio_info_cap_header', [
  ['id', u16],
  ['version', u16],
  ['next', u32],
]);

const vfio_group_status = struct('vfio_group_status', [...each(u32, 'argsz', 'flags')]);

const vfio_device_info = struct('vfio_device_info', [
  ...each(u32, 'argsz', 'flags', 'num_regions', 'num_irqs', 'cap_offset'),
]);

const vfio_region_info = struct('vfio_region_info', [
  ...each(u32, 'argsz', 'flags', 'index', 'cap_offset'),
  ...each(u64, 'size', 'offset'),
]);

const vfio_region_sparse_mmap_area = struct('vfio_region_sparse_mmap_area', [...each(u64, 'offset', 'size')]);
const vfio_region_info_cap_sparse_mmap = struct('vfio_region_info_cap_sparse_mmap', [
  ['header', vfio_info_cap_header],
  ...each(u32, 'nr_areas', 'reserved'),
  ['areas', flex(vfio_region_sparse_mmap_area)],
]);
const vfio_region_info_cap_type = struct('vfio_region_info_cap_type', [
  ['header', vfio_info_cap_header],
  ...each(u32, 'type', 'subtype'),
]);

const vfio_irq_info = struct('vfio_irq_info', [...each(u32, 'argsz', 'flags', 'index', 'count')]);
const vfio_irq_set = struct('vfio_irq_set', [
  ...each(u32, 'argsz', 'flags', 'index', 'start', 'count'),
  ['data', flex(u8)],
]);

const vfio_iommu_type1_info = struct('vfio_iommu_type1_info', [
  ...each(u32, 'argsz', 'flags'),
  ['iova_pgsizes', u64],
  ['cap_offset', u32],
]);
const vfio_iova_range = struct('vfio_iova_range', [...each(u64, 'start', 'end')]);
const vfio_iommu_type1_info_cap_iova_range = struct('vfio_iommu_type1_info_cap_iova_range', [
  ['header', vfio_info_cap_header],
  ...each(u32, 'nr_iovas', 'reserved'),
  ['iova_ranges', flex(vfio_iova_range)],
]);
const vfio_iommu_type1_dma_map = struct('vfio_iommu_type1_dma_map', [
  ...each(u32, 'argsz', 'flags'),
  ...each(u64, 'vaddr', 'iova', 'size'),
]);
const vfio_iommu_type1_dma_unmap = struct('vfio_iommu_type1_dma_unmap', [
  ...each(u32, 'argsz', 'flags'),
  ...each(u64, 'iova', 'size'),
  ['data', flex(u8)],
]);

const declarations: AggregateType[] = [
  vfio_info_cap_header,
  vfio_group_status,
  vfio_device_info,
  vfio_region_info,
  vfio_region_sparse_mmap_area,
  vfio_region_info_cap_sparse_mmap,
  vfio_region_info_cap_type,
  vfio_irq_info,
  vfio_irq_set,
  vfio_iommu_type1_info,
  vfio_iova_range,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
];

export type StructName =
  | 'vfio_info_cap_header'
  | 'vfio_group_status'
  | 'vfio_device_info'
  | 'vfio_region_info'
  | 'vfio_region_sparse_mmap_area'
  | 'vfio_region_info_cap_sparse_mmap'
  | 'vfio_region_info_cap_type'
  | 'vfio_irq_info'
  | 'vfio_irq_set'
  | 'vfio_iommu_type1_info'
  | 'vfio_iova_range'
  | 'vfio_iommu_type1_info_cap_iova_range'
  | 'vfio_iommu_type1_dma_map'
  | 'vfio_iommu_type1_dma_unmap';

/** The layout table: struct → { size, align, fields: designator → { offset, size, elementSize?, length? } }. */
export const LAYOUTS: Readonly<Record<StructName, Layout>> = Object.freeze(
  Object.fromEntries(
    declarations.map((d) => {
      const l = layoutOf(d);
      return [l.name, l];
    }),
  ) as Record<StructName, Layout>,
);

export function sizeOf(name: StructName): number {
  return LAYOUTS[name].size;
}

/** A field's entry; throws at once (at module load, where codecs resolve their offsets) for a misspelt path. */
export function fieldOf(name: StructName, path: string): FieldInfo {
  const f = LAYOUTS[name].fields[path];
  if (!f) throw new Error(`vfio structs: ${name} has no field ${path}`);
  return f;
}

export function offsetOf(name: StructName, path: string): number {
  return fieldOf(name, path).offset;
}
