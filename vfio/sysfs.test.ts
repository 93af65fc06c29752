// Finding a device's IOMMU group and saying, in one line, why it cannot be passed through: on a fake sysfs tree.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VfioError } from './errors.js';
import { VfioGroup } from './group.js';
import { notViableMessage, parseBdf } from './sysfs.js';

/** A fake /sys: devices as [bdf, driver | null, group | null], the group's devices listed under kernel/iommu_groups. */
function fakeSys(devices: [string, string | null, number | null][]) {
  const sys = mkdtempSync(join(tmpdir(), 'vfio-sysfs-test-'));
  for (const [bdf, driver, group] of devices) {
    const real = join(sys, 'devices/pci0000:00', bdf);
    mkdirSync(real, { recursive: true });
    mkdirSync(join(sys, 'bus/pci/devices'), { recursive: true });
    symlinkSync(`../../../devices/pci0000:00/${bdf}`, join(sys, 'bus/pci/devices', bdf));
    if (driver) {
      mkdirSync(join(sys, 'bus/pci/drivers', driver), { recursive: true });
      symlinkSync(`../../../bus/pci/drivers/${driver}`, join(real, 'driver'));
    }
    if (group !== null) {
      const g = join(sys, 'kernel/iommu_groups', String(group), 'devices');
      mkdirSync(g, { recursive: true });
      symlinkSync(`../../../../devices/pci0000:00/${bdf}`, join(g, bdf));
      symlinkSync(`../../../kernel/iommu_groups/${group}`, join(real, 'iommu_group'));
    }
  }
  writeFileSync(join(sys, 'marker'), '');
  return { sys, done: () => rmSync(sys, { recursive: true, force: true }) };
}

const vfioError = (f: () => unknown): VfioError => {
  try {
    f();
  } catch (e) {
    assert.instance(e, VfioError);
    assert.not.match((e as Error).message, /\n/);
    return e as VfioError;
  }
  throw new Error('no error');
};

test('sysfs: a PCI address is taken in full, short, or as the sysfs path that ends in it', () => {
  assert.is(parseBdf('0000:00:03.0'), '0000:00:03.0');
  assert.is(parseBdf('00:03.0'), '0000:00:03.0');
  assert.is(parseBdf('/sys/bus/pci/devices/0000:00:1F.3/'), '0000:00:1f.3');
  assert.is(parseBdf('0000:00:03.8'), null);
  assert.is(parseBdf('edu'), null);
});

test('sysfs: a device bound to vfio-pci gives its IOMMU group, by address or by sysfs path', () => {
  const f = fakeSys([['0000:00:03.0', 'vfio-pci', 7]]);
  try {
    assert.is(VfioGroup.forDevice('0000:00:03.0', f.sys), 7);
    assert.is(VfioGroup.forDevice('00:03.0', f.sys), 7);
    assert.is(VfioGroup.forDevice(join(f.sys, 'devices/pci0000:00/0000:00:03.0'), f.sys), 7);
  } finally {
    f.done();
  }
});

test('sysfs: a device bound to another driver says which, and how to bind it to vfio-pci', () => {
  const f = fakeSys([
    ['0000:00:04.0', 'nvme', 4],
    ['0000:00:05.0', null, 5],
  ]);
  try {
    const e = vfioError(() => VfioGroup.forDevice('0000:00:04.0', f.sys));
    assert.is(e.reason, 'not-bound');
    assert.match(e.message, /^vfio: 0000:00:04\.0 is bound to nvme, not vfio-pci; bind it: echo vfio-pci > /);
    assert.match(e.message, /echo 0000:00:04\.0 > \/sys\/bus\/pci\/devices\/0000:00:04\.0\/driver\/unbind; /);
    const none = vfioError(() => VfioGroup.forDevice('0000:00:05.0', f.sys));
    assert.match(none.message, /^vfio: 0000:00:05\.0 is bound to no driver, not vfio-pci; /);
  } finally {
    f.done();
  }
});

test('sysfs: no such device, no IOMMU group, or a malformed address are one line each', () => {
  const f = fakeSys([['0000:00:03.0', 'vfio-pci', null]]);
  try {
    const missing = vfioError(() => VfioGroup.forDevice('0000:00:09.0', f.sys));
    assert.is(missing.reason, 'no-device');
    assert.match(missing.message, /^vfio: no PCI device 0000:00:09\.0 \(.*0000:00:09\.0 does not exist\)$/);
    const noGroup = vfioError(() => VfioGroup.forDevice('0000:00:03.0', f.sys));
    assert.is(noGroup.reason, 'no-iommu-group');
    assert.match(noGroup.message, /^vfio: 0000:00:03\.0 has no IOMMU group — is the IOMMU enabled/);
    assert.match(vfioError(() => VfioGroup.forDevice('edu', f.sys)).message, /^vfio: edu: not a PCI address/);
  } finally {
    f.done();
  }
});

test('sysfs: a group that is not viable names each device bound to another driver', () => {
  // ICH9's functions share a group: passing one through needs the others bound to vfio-pci (or to nothing).
  const f = fakeSys([
    ['0000:00:1f.0', 'lpc_ich', 2],
    ['0000:00:1f.2', null, 2],
    ['0000:00:1f.3', 'vfio-pci', 2],
    ['0000:00:1f.4', 'ahci', 2],
  ]);
  try {
    assert.is(
      notViableMessage(2, f.sys),
      'group 2 is not viable: device 0000:00:1f.0 is bound to lpc_ich, device 0000:00:1f.4 is bound to ahci; ' +
        'bind every device of the group to vfio-pci',
    );
  } finally {
    f.done();
  }
});

test.run();
