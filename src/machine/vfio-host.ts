// Before opening anything of VFIO: is the host function there, behind an IOMMU, bound to vfio-pci, and alone in its
// IOMMU group (or with companions VFIO accepts)? Each answer that is no is one line saying what to do, as sysfs
// shows it — the kernel's own refusal (ENOENT, EPERM, "group not viable") names none of it.
import { existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { VfioDeviceConfig } from './config.js';
import { DeviceSetupError } from './virtio-plan.js';

/** Drivers a group's other devices may have without making it unviable (vfio_dev_driver_allowed, drivers/vfio/group.c). */
const DRIVERS_VFIO_ACCEPTS = new Set(['vfio-pci', 'pci-stub', 'pcieport']);

export interface VfioHostFunction {
  /** 0000:00:03.0 */
  readonly bdf: string;
  readonly sysfsdev: string;
  /** Its IOMMU group: /dev/vfio/N. */
  readonly group: number;
}

/** Where sysfs and /dev are (a test gives a scratch tree). */
export interface HostRoots {
  readonly root: string;
}

const driverOf = (dir: string): string | null => {
  try {
    return basename(readlinkSync(join(dir, 'driver')));
  } catch {
    return null;
  }
};

/** How to hand a function to vfio-pci (README says the same). */
export const bindHint = (bdf: string) =>
  `echo vfio-pci > /sys/bus/pci/devices/${bdf}/driver_override; echo ${bdf} > /sys/bus/pci/drivers_probe`;

export function checkVfioHost(c: VfioDeviceConfig, { root }: HostRoots = { root: '/' }): VfioHostFunction {
  const at = (path: string) => join(root, path);
  const dir = at(c.sysfsdev);
  if (!existsSync(dir)) throw new DeviceSetupError(`${c.id}: no PCI device at ${c.sysfsdev}`);
  const bdf = basename(realpathSync(dir));
  let group: number;
  try {
    group = Number(basename(readlinkSync(join(dir, 'iommu_group'))));
  } catch {
    throw new DeviceSetupError(
      `${c.id}: ${bdf} has no IOMMU group: the host's IOMMU is off (boot with intel_iommu=on or amd_iommu=on)`,
    );
  }
  const driver = driverOf(dir);
  if (driver === null)
    throw new DeviceSetupError(`${c.id}: ${bdf} is bound to no driver; bind it to vfio-pci: ${bindHint(bdf)}`);
  if (driver !== 'vfio-pci')
    throw new DeviceSetupError(
      `${c.id}: ${bdf} is bound to ${driver}, not vfio-pci; bind it to vfio-pci: echo ${bdf} > /sys/bus/pci/devices/${bdf}/driver/unbind; ${bindHint(bdf)}`,
    );
  if (!existsSync(at('/dev/vfio/vfio')))
    throw new DeviceSetupError(`${c.id}: /dev/vfio/vfio is missing: load VFIO (modprobe vfio-pci)`);
  if (!existsSync(at(`/dev/vfio/${group}`)))
    throw new DeviceSetupError(`${c.id}: /dev/vfio/${group} (${bdf}'s IOMMU group) is missing`);
  const groupDir = at(`/sys/kernel/iommu_groups/${group}/devices`);
  const others: string[] = [];
  for (const name of existsSync(groupDir) ? readdirSync(groupDir).sort() : []) {
    if (name === bdf) continue;
    const d = driverOf(join(groupDir, name));
    if (d !== null && !DRIVERS_VFIO_ACCEPTS.has(d)) others.push(`${name} (bound to ${d})`);
  }
  if (others.length)
    throw new DeviceSetupError(
      `${c.id}: IOMMU group ${group} is not viable: ${bdf} shares it with ${others.join(', ')}; bind every device of the group to vfio-pci`,
    );
  return { bdf, sysfsdev: c.sysfsdev, group };
}
