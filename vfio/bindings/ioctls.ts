// VFIO ioctl request numbers. Unlike KVM's, every VFIO request is declared with _IO(VFIO_TYPE, VFIO_BASE + n): no
// direction, no size (each struct carries its own argsz instead). `IOCTLS` lists every request tsvmm issues;
// vfio/bindings/abi.test.ts compares each with the value the C compiler gives for <linux/vfio.h>. The named
// constants live in vfio/bindings/constants.ts and are re-exported here, so `import * as V from './ioctls.js'`
// gives both.
import { ioc, IOC_NONE } from '../../src/sys/ioc.js';
import { VFIO_BASE, VFIO_TYPE } from './constants.js';

export * from './constants.js';

export interface IoctlDef {
  readonly name: string;
  readonly number: number;
  /** The request's index: the number is _IO(VFIO_TYPE, VFIO_BASE + nr). */
  readonly nr: number;
  /** Which fd it is issued on. */
  readonly on: 'container' | 'group' | 'device';
}

const table: IoctlDef[] = [];
function def(name: string, on: IoctlDef['on'], nr: number): number {
  const number = ioc(IOC_NONE, VFIO_TYPE, VFIO_BASE + nr, 0);
  table.push({ name, number, nr, on });
  return number;
}

// ---- container (/dev/vfio/vfio) ---------------------------------------------------------------------------------
export const VFIO_GET_API_VERSION = def('VFIO_GET_API_VERSION', 'container', 0);
export const VFIO_CHECK_EXTENSION = def('VFIO_CHECK_EXTENSION', 'container', 1);
export const VFIO_SET_IOMMU = def('VFIO_SET_IOMMU', 'container', 2);
export const VFIO_IOMMU_GET_INFO = def('VFIO_IOMMU_GET_INFO', 'container', 12);
export const VFIO_IOMMU_MAP_DMA = def('VFIO_IOMMU_MAP_DMA', 'container', 13);
export const VFIO_IOMMU_UNMAP_DMA = def('VFIO_IOMMU_UNMAP_DMA', 'container', 14);

// ---- group (/dev/vfio/N) ----------------------------------------------------------------------------------------
export const VFIO_GROUP_GET_STATUS = def('VFIO_GROUP_GET_STATUS', 'group', 3);
export const VFIO_GROUP_SET_CONTAINER = def('VFIO_GROUP_SET_CONTAINER', 'group', 4);
export const VFIO_GROUP_UNSET_CONTAINER = def('VFIO_GROUP_UNSET_CONTAINER', 'group', 5);
export const VFIO_GROUP_GET_DEVICE_FD = def('VFIO_GROUP_GET_DEVICE_FD', 'group', 6);

// ---- device (from VFIO_GROUP_GET_DEVICE_FD) ---------------------------------------------------------------------
export const VFIO_DEVICE_GET_INFO = def('VFIO_DEVICE_GET_INFO', 'device', 7);
export const VFIO_DEVICE_GET_REGION_INFO = def('VFIO_DEVICE_GET_REGION_INFO', 'device', 8);
export const VFIO_DEVICE_GET_IRQ_INFO = def('VFIO_DEVICE_GET_IRQ_INFO', 'device', 9);
export const VFIO_DEVICE_SET_IRQS = def('VFIO_DEVICE_SET_IRQS', 'device', 10);
export const VFIO_DEVICE_RESET = def('VFIO_DEVICE_RESET', 'device', 11);

/** Every request above, in declaration order. */
export const IOCTLS: readonly IoctlDef[] = Object.freeze(table);

/** The request's name for error messages (`ioctl(7, VFIO_IOMMU_MAP_DMA) failed: EINVAL`). VFIO reuses numbers
 * across fd kinds only where the kernel does (none of those above), so a number names one request. */
export function ioctlName(number: number): string {
  return table.find((d) => d.number === number)?.name ?? `0x${number.toString(16)}`;
}
