// The iommufd path (Linux 6.2+: /dev/iommu, with each device as /dev/vfio/devices/vfioN) is detected, not used:
// tsvmm drives VFIO through the container (/dev/vfio/vfio), which every kernel with VFIO has. Debian 12's 6.1, the
// rig's kernel, has no iommufd.
import { existsSync } from 'node:fs';

export const IOMMUFD_PATH = '/dev/iommu';
export const VFIO_CDEV_DIR = '/dev/vfio/devices';

/** Null when this kernel offers iommufd with VFIO device cdevs; otherwise the one-line reason it does not. */
export function iommufdMissing(dev = '/dev'): string | null {
  if (!existsSync(`${dev}/iommu`)) return `no ${dev}/iommu: this kernel has no iommufd (Linux 6.2+, CONFIG_IOMMUFD)`;
  if (!existsSync(`${dev}/vfio/devices`))
    return `no ${dev}/vfio/devices: iommufd is there but VFIO device cdevs are not (CONFIG_VFIO_DEVICE_CDEV, Linux 6.6+)`;
  return null;
}
