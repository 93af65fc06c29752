// A group that is not viable, for real: in the rig, one function of a multi-function device (ICH9's LPC, SATA and
// SMBus functions share an IOMMU group) is handed to vfio-pci while the LPC function keeps lpc_ich. Opening the
// group must name each sibling and its driver. The test rebinds a device of the machine it runs on, so it runs
// only inside the rig (booted with --vfio, as for every VFIO test), and gives the device back to its driver.
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../test/support/skip.js';
import { withDirLock } from '../test/support/dir-lock.js';
import { vfioMissing, vfioRebindLockDir } from '../test/support/vfio-devices.js';
import { VfioError } from './errors.js';
import { VfioGroup } from './group.js';
import { groupDevices } from './sysfs.js';

const skip =
  vfioMissing('edu') ?? (process.env.TSVMM_IN_RIG === '1' ? null : 'rebinds a device of this machine: only in the rig');

const driverOf = (bdf: string): string | null => {
  try {
    return basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/driver`));
  } catch {
    return null;
  }
};

/** A group of several devices, none of them bound to vfio-pci or virtio (the rig's own transport): ICH9's. */
function sharedGroup(): { group: number; devices: { bdf: string; driver: string | null }[] } | null {
  for (const name of readdirSync('/sys/kernel/iommu_groups')) {
    const devices = groupDevices(Number(name));
    if (devices.length < 2) continue;
    if (devices.some((d) => d.driver === 'vfio-pci' || d.driver?.startsWith('virtio'))) continue;
    return { group: Number(name), devices };
  }
  return null;
}

/** Binds `bdf` to `driver` through driver_override (after unbinding whatever it has). */
function bind(bdf: string, driver: string | null): void {
  const dev = `/sys/bus/pci/devices/${bdf}`;
  const now = driverOf(bdf);
  if (now) writeFileSync(`/sys/bus/pci/drivers/${now}/unbind`, bdf);
  writeFileSync(`${dev}/driver_override`, driver ?? '\n');
  writeFileSync('/sys/bus/pci/drivers_probe', bdf);
}

testIf(test, skip, 'vfio: a group whose other devices keep their drivers is not viable, and the error names them', () =>
  // src/machine/vfio-cli-failures.test.ts rebinds the same functions: one file at a time.
  withDirLock(vfioRebindLockDir(), () => {
    const shared = sharedGroup();
    assert.ok(shared, 'a multi-device IOMMU group (ICH9 on q35)');
    const { group, devices } = shared!;
    // A function without a driver goes to vfio-pci; a sibling keeps its driver (lpc_ich, which the rig loads for
    // this: pci-stub would not do, the kernel counts it as safe for VFIO).
    const holder = devices.find((d) => d.driver !== null);
    assert.ok(holder, `a device of group ${group} bound to a driver: ${JSON.stringify(devices)}`);
    const moved = devices.filter((d) => d !== holder).at(-1)!;
    const changed = [moved];
    try {
      bind(moved.bdf, 'vfio-pci');
      assert.is(driverOf(moved.bdf), 'vfio-pci');
      assert.is(VfioGroup.forDevice(moved.bdf), group);
      const others = groupDevices(group).filter((d) => d.driver !== null && d.driver !== 'vfio-pci');
      assert.ok(others.length > 0, JSON.stringify(groupDevices(group)));
      assert.throws(
        () => VfioGroup.open(group).close(),
        (e: Error) =>
          e instanceof VfioError &&
          e.reason === 'not-viable' &&
          e.message ===
            `vfio: group ${group} is not viable: ${others.map((d) => `device ${d.bdf} is bound to ${d.driver}`).join(', ')}; ` +
              'bind every device of the group to vfio-pci',
      );
    } finally {
      for (const d of changed) bind(d.bdf, null);
    }
    for (const d of changed) assert.is(driverOf(d.bdf), d.driver, `${d.bdf} is back with its driver`);
  }),
);

test.run();
