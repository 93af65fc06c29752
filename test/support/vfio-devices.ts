// Which emulated PCI device a VFIO test can use here: one bound to vfio-pci, found by vendor:device in sysfs
// (/sys/bus/pci/drivers/vfio-pci/*), so it works in the rig (`--vfio edu,nvme`, test/rig/) and on a real host alike.
// When there is none, the reason starts with VFIO_MISSING_PREFIX, which the test runner reads as "run this file in
// the rig, booted as q35 with intel-iommu and the devices bound to vfio-pci".
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { withDirLockAsync } from './dir-lock.js';
import { VFIO_MISSING_PREFIX } from './rig-provides.js';

/** Emulated PCI devices the rig can hand to vfio-pci inside (QEMU's names), with the ids /init binds. */
export const VFIO_DEVICES = {
  edu: { id: '1234:11e8', what: "QEMU's educational device (DMA, MSI, a factorial unit)" },
  nvme: { id: '1b36:0010', what: "QEMU's NVMe controller with a 64 MiB scratch namespace" },
  e1000e: { id: '8086:10d3', what: "QEMU's Intel 82574L NIC (user networking, restricted)" },
} as const;
export type VfioDeviceName = keyof typeof VFIO_DEVICES;

/** A device bound to vfio-pci: its PCI address, its IOMMU group (/dev/vfio/N) and its sysfs directory. */
export interface VfioTestDevice {
  bdf: string;
  group: number;
  sysfs: string;
}

const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const SHORT_NAMES: Record<VfioDeviceName, string> = { edu: 'QEMU edu', nvme: 'QEMU NVMe', e1000e: 'QEMU e1000e' };

const readId = (path: string): string => readFileSync(path, 'utf8').trim().replace(/^0x/, '');

/**
 * The first device (lowest address) with `name`'s vendor:device bound to vfio-pci under `sysRoot` (a parameter so
 * tests can feed a fake tree), with its group node present under `devRoot`; otherwise a one-line reason starting
 * with VFIO_MISSING_PREFIX.
 */
export function vfioDevice(
  name: VfioDeviceName,
  roots: { sys?: string; dev?: string } = {},
): VfioTestDevice | { reason: string } {
  const sys = roots.sys ?? '/sys';
  const dev = roots.dev ?? '/dev';
  const { id } = VFIO_DEVICES[name];
  const wanted = `${id} (${SHORT_NAMES[name]})`;
  const missing = (why: string) => ({ reason: `${VFIO_MISSING_PREFIX}: ${why}` });
  const driverDir = join(sys, 'bus/pci/drivers/vfio-pci');
  if (!existsSync(driverDir)) return missing(`no ${wanted} bound to vfio-pci: the vfio-pci driver is not loaded`);
  for (const bdf of readdirSync(driverDir)
    .filter((n) => BDF.test(n))
    .sort()) {
    const sysfs = join(sys, 'bus/pci/devices', bdf);
    let found: string;
    try {
      found = `${readId(join(sysfs, 'vendor'))}:${readId(join(sysfs, 'device'))}`;
    } catch {
      continue;
    }
    if (found !== id) continue;
    let group: number;
    try {
      group = Number(basename(readlinkSync(join(sysfs, 'iommu_group'))));
    } catch {
      return missing(`${wanted} at ${bdf} is bound to vfio-pci but has no IOMMU group (no IOMMU?)`);
    }
    if (!existsSync(join(dev, 'vfio', String(group))))
      return missing(`${wanted} at ${bdf} is in IOMMU group ${group}, but ${dev}/vfio/${group} does not exist`);
    return { bdf, group, sysfs };
  }
  return missing(`no ${wanted} bound to vfio-pci`);
}

/** Null when `name` can be used through VFIO here, otherwise the one-line reason for testIf. */
export function vfioMissing(name: VfioDeviceName, roots: { sys?: string; dev?: string } = {}): string | null {
  const d = vfioDevice(name, roots);
  return 'reason' in d ? d.reason : null;
}

/** The device for a test that did not skip (vfioMissing was null): throws the reason otherwise. */
export function requireVfioDevice(name: VfioDeviceName): VfioTestDevice {
  const d = vfioDevice(name);
  if ('reason' in d) throw new Error(d.reason);
  return d;
}

/** The lock directory of the device at `bdf`: held by whoever has it open (a group has one container at a time). */
export function vfioDeviceLockDir(bdf: string): string {
  return join(tmpdir(), `tsvmm-vfio-${bdf}.lock`);
}

/** The lock of tests that rebind the rig's own functions (ICH9's shared IOMMU group) to make a group unviable. */
export function vfioRebindLockDir(): string {
  return join(tmpdir(), 'tsvmm-vfio-rebind.lock');
}

/**
 * Runs `fn` with `name`'s device (as requireVfioDevice) while holding its lock, so tests running side by side (the
 * rig runs two files at a time) never pass the same device to two VMMs at once. Waits up to `waitMs` for the lock.
 */
export function withVfioDevice<T>(
  name: VfioDeviceName,
  fn: (device: VfioTestDevice) => Promise<T>,
  waitMs = 600_000,
): Promise<T> {
  const device = requireVfioDevice(name);
  return withDirLockAsync(vfioDeviceLockDir(device.bdf), () => fn(device), waitMs);
}

/**
 * Takes the device's lock for a whole test file (from test.before to test.after), for files whose tests share one
 * open device: resolves once it is held, to the function that lets it go.
 */
export async function holdVfioDevice(name: VfioDeviceName, waitMs = 600_000): Promise<() => Promise<void>> {
  let release!: () => void;
  let acquired!: () => void;
  const held = new Promise<void>((r) => {
    acquired = r;
  });
  const done = withVfioDevice(
    name,
    () =>
      new Promise<void>((r) => {
        release = r;
        acquired();
      }),
    waitMs,
  );
  await Promise.race([held, done]);
  return async () => {
    release?.();
    await done;
  };
}
