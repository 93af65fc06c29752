// The VFIO objects the plan opens (vfio/: container, group, device), behind the plan's VfioApi.
import type { VfioApi } from './vfio-plan.js';
import { DeviceSetupError } from './virtio-plan.js';

export function hostVfioApi(): VfioApi {
  const missing = (): never => {
    throw new DeviceSetupError('vfio-pci: this tsvmm has no VFIO ioctl layer yet (vfio/ lands with issue 11)');
  };
  return { openContainer: missing, openGroup: missing };
}
