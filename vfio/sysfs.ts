// What sysfs says about a PCI device and its IOMMU group: the group number (/dev/vfio/N), the driver each device of
// the group is bound to. `sys` is a parameter so tests can use a fake tree.
import { existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VfioError } from './errors.js';

const FULL_BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const SHORT_BDF = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** `0000:00:03.0` from `0000:00:03.0`, `00:03.0` or a sysfs path ending in the address; null when neither. */
export function parseBdf(bdfOrPath: string): string | null {
  const last = basename(bdfOrPath.trim().toLowerCase().replace(/\/+$/, ''));
  if (FULL_BDF.test(last)) return last;
  if (SHORT_BDF.test(last) && !bdfOrPath.includes('/')) return `0000:${last}`;
  return null;
}

/** The driver bound to the device (the basename of its driver link), or null when none is. */
export function boundDriver(bdf: string, sys = '/sys'): string | null {
  try {
    return basename(readlinkSync(join(sys, 'bus/pci/devices', bdf, 'driver')));
  } catch {
    return null;
  }
}

/** The device's sysfs directory for an address or path: its own path when one was given and exists. */
function deviceDir(bdfOrPath: string, bdf: string, sys: string): string {
  return bdfOrPath.includes('/') && existsSync(bdfOrPath) ? bdfOrPath : join(sys, 'bus/pci/devices', bdf);
}

/**
 * The IOMMU group of a device bound to vfio-pci. Throws VfioError when the address is malformed, there is no such
 * device, it has no IOMMU group (no IOMMU enabled), or it is bound to another driver or none.
 */
export function groupOfDevice(bdfOrPath: string, sys = '/sys'): number {
  const bdf = parseBdf(bdfOrPath);
  if (bdf === null)
    throw new VfioError(
      'no-device',
      `${bdfOrPath}: not a PCI address (want e.g. 0000:00:03.0) or a device's sysfs path`,
    );
  const dir = deviceDir(bdfOrPath, bdf, sys);
  if (!existsSync(dir)) throw new VfioError('no-device', `no PCI device ${bdf} (${dir} does not exist)`);
  let group: number;
  try {
    group = Number(basename(readlinkSync(join(dir, 'iommu_group'))));
  } catch {
    throw new VfioError(
      'no-iommu-group',
      `${bdf} has no IOMMU group — is the IOMMU enabled (intel_iommu=on or amd_iommu=on on the host's command line)?`,
    );
  }
  let driver: string | null = null;
  try {
    driver = basename(readlinkSync(join(dir, 'driver')));
  } catch {
    /* no driver */
  }
  if (driver !== 'vfio-pci') {
    throw new VfioError(
      'not-bound',
      `${bdf} is bound to ${driver ?? 'no driver'}, not vfio-pci; bind it: ` +
        `echo vfio-pci > /sys/bus/pci/devices/${bdf}/driver_override; ` +
        `${driver ? `echo ${bdf} > /sys/bus/pci/devices/${bdf}/driver/unbind; ` : ''}` +
        `echo ${bdf} > /sys/bus/pci/drivers_probe`,
    );
  }
  return group;
}

/** The devices of an IOMMU group with their drivers (null: none), in address order. */
export function groupDevices(group: number, sys = '/sys'): { bdf: string; driver: string | null }[] {
  const dir = join(sys, 'kernel/iommu_groups', String(group), 'devices');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => FULL_BDF.test(n))
    .sort()
    .map((bdf) => ({ bdf, driver: driverOf(join(dir, bdf)) }));
}

function driverOf(deviceLink: string): string | null {
  try {
    return basename(readlinkSync(join(realpathSync(deviceLink), 'driver')));
  } catch {
    return null;
  }
}

/**
 * The one line for a group the kernel calls not viable: every device of a group must be bound to vfio-pci (or to
 * no driver) before any of it can be passed through.
 */
export function notViableMessage(group: number, sys = '/sys'): string {
  const offenders = groupDevices(group, sys).filter((d) => d.driver !== null && d.driver !== 'vfio-pci');
  const which = offenders.length
    ? offenders.map((d) => `device ${d.bdf} is bound to ${d.driver}`).join(', ')
    : 'a device of it is bound to a driver other than vfio-pci';
  return `group ${group} is not viable: ${which}; bind every device of the group to vfio-pci`;
}
