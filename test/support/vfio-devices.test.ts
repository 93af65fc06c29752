// Finding a device bound to vfio-pci for a VFIO test, on a fake sysfs tree: by vendor:device, with its IOMMU group;
// otherwise a reason the runner reads as "run this file in the rig with vfio".
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rigCanLift, rigNeedsVfio } from './rig-provides.js';
import { testIf } from './skip.js';
import { vfioDevice, vfioMissing } from './vfio-devices.js';

/** A fake /sys and /dev: `devices` are [bdf, vendor:device, driver, group|null]. */
function fakeHost(devices: [string, string, string, number | null][], groupNodes: number[] = []) {
  const root = mkdtempSync(join(tmpdir(), 'vfio-devices-test-'));
  const sys = join(root, 'sys');
  const dev = join(root, 'dev');
  mkdirSync(join(dev, 'vfio'), { recursive: true });
  for (const g of groupNodes) writeFileSync(join(dev, 'vfio', String(g)), '');
  for (const [bdf, id, driver, group] of devices) {
    const d = join(sys, 'bus/pci/devices', bdf);
    mkdirSync(d, { recursive: true });
    const [vendor, device] = id.split(':');
    writeFileSync(join(d, 'vendor'), `0x${vendor}\n`);
    writeFileSync(join(d, 'device'), `0x${device}\n`);
    if (group !== null) {
      mkdirSync(join(sys, 'kernel/iommu_groups', String(group)), { recursive: true });
      symlinkSync(`../../../../kernel/iommu_groups/${group}`, join(d, 'iommu_group'));
    }
    const drv = join(sys, 'bus/pci/drivers', driver);
    mkdirSync(drv, { recursive: true });
    symlinkSync(`../../../../devices/${bdf}`, join(drv, bdf));
  }
  // Entries every driver directory has besides its devices.
  mkdirSync(join(sys, 'bus/pci/drivers/vfio-pci'), { recursive: true });
  writeFileSync(join(sys, 'bus/pci/drivers/vfio-pci/new_id'), '');
  return { roots: { sys, dev }, done: () => rmSync(root, { recursive: true, force: true }) };
}

test('vfio devices: edu bound to vfio-pci is found by 1234:11e8, with its IOMMU group', () => {
  const host = fakeHost(
    [
      ['0000:00:02.0', '1b36:0010', 'vfio-pci', 4],
      ['0000:00:03.0', '1234:11e8', 'vfio-pci', 3],
    ],
    [3, 4],
  );
  try {
    const edu = vfioDevice('edu', host.roots);
    assert.equal(edu, { bdf: '0000:00:03.0', group: 3, sysfs: join(host.roots.sys, 'bus/pci/devices/0000:00:03.0') });
    assert.is(vfioMissing('nvme', host.roots), null);
  } finally {
    host.done();
  }
});

test('vfio devices: none bound says which device is wanted, in a reason the rig lifts with vfio', () => {
  const host = fakeHost([['0000:00:03.0', '1234:11e8', 'edu', 3]], [3]);
  try {
    const why = vfioMissing('edu', host.roots)!;
    assert.is(why, 'no vfio-pci device here: no 1234:11e8 (QEMU edu) bound to vfio-pci');
    assert.ok(rigCanLift(`vfio: a test: ${why}`) && rigNeedsVfio(`vfio: a test: ${why}`));
  } finally {
    host.done();
  }
});

test('vfio devices: no vfio-pci driver at all (module not loaded) is a reason too', () => {
  const root = mkdtempSync(join(tmpdir(), 'vfio-devices-test-'));
  try {
    assert.is(
      vfioMissing('nvme', { sys: root, dev: root }),
      'no vfio-pci device here: no 1b36:0010 (QEMU NVMe) bound to vfio-pci: the vfio-pci driver is not loaded',
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('vfio devices: a bound device without an IOMMU group, or without its /dev/vfio node, is not usable', () => {
  const host = fakeHost([
    ['0000:00:03.0', '1234:11e8', 'vfio-pci', null],
    ['0000:00:04.0', '1b36:0010', 'vfio-pci', 5],
  ]);
  try {
    assert.is(
      vfioMissing('edu', host.roots),
      'no vfio-pci device here: 1234:11e8 (QEMU edu) at 0000:00:03.0 is bound to vfio-pci but has no IOMMU group (no IOMMU?)',
    );
    assert.match(
      vfioMissing('nvme', host.roots)!,
      /^no vfio-pci device here: .* group 5, but .*\/vfio\/5 does not exist$/,
    );
  } finally {
    host.done();
  }
});

test('vfio devices: this host answers one way or the other, never throws', () => {
  const why = vfioMissing('edu');
  assert.ok(why === null || why.startsWith('no vfio-pci device here: '), String(why));
});

// Where edu is bound (the rig with --vfio, which the runner boots for this very skip), the real sysfs agrees.
testIf(
  test,
  vfioMissing('edu'),
  'vfio devices: edu and nvme bound to vfio-pci are found, each with its group node',
  () => {
    const edu = vfioDevice('edu');
    const nvme = vfioDevice('nvme');
    assert.ok(!('reason' in edu) && !('reason' in nvme));
    assert.match(edu.bdf, /^0000:00:[0-9a-f]{2}\.0$/);
    assert.ok(edu.group !== nvme.group, 'each in its own IOMMU group');
    const bound = process.env.TSVMM_RIG_VFIO_DEVICES;
    if (bound !== undefined) assert.ok(bound.split(' ').includes(`${edu.bdf}=1234:11e8`), bound);
  },
);

test.run();
