// The start-up checks of a passed-through function, over a scratch sysfs and /dev: each way a host can be unready
// is one line saying what to do.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkVfioHost } from './vfio-host.js';

const BDF = '0000:00:03.0';

/** A host tree: the function in group 3 bound to `driver`, with `companions` (bdf → driver) in its group. */
function host(opts: {
  driver?: string | null;
  group?: number | null;
  dev?: boolean;
  companions?: Record<string, string>;
}) {
  const root = mkdtempSync(join(tmpdir(), 'tsvmm-vfio-host-'));
  const mk = (p: string) => mkdirSync(join(root, p), { recursive: true });
  const link = (target: string, p: string) => {
    mk(dirname(p));
    symlinkSync(join(root, target), join(root, p));
  };
  const device = (bdf: string, driver: string | null, group: number | null) => {
    mk(`sys/devices/pci0000:00/${bdf}`);
    link(`sys/devices/pci0000:00/${bdf}`, `sys/bus/pci/devices/${bdf}`);
    if (driver) {
      mk(`sys/bus/pci/drivers/${driver}`);
      link(`sys/bus/pci/drivers/${driver}`, `sys/devices/pci0000:00/${bdf}/driver`);
    }
    if (group !== null) {
      mk(`sys/kernel/iommu_groups/${group}/devices`);
      link(`sys/kernel/iommu_groups/${group}`, `sys/devices/pci0000:00/${bdf}/iommu_group`);
      link(`sys/devices/pci0000:00/${bdf}`, `sys/kernel/iommu_groups/${group}/devices/${bdf}`);
    }
  };
  const group = opts.group === undefined ? 3 : opts.group;
  device(BDF, opts.driver === undefined ? 'vfio-pci' : opts.driver, group);
  for (const [bdf, driver] of Object.entries(opts.companions ?? {})) device(bdf, driver, group);
  if (opts.dev !== false) {
    mk('dev/vfio');
    writeFileSync(join(root, 'dev/vfio/vfio'), '');
    if (group !== null) writeFileSync(join(root, `dev/vfio/${group}`), '');
  }
  return { root, done: () => rmSync(root, { recursive: true, force: true }) };
}

const config = { id: 'hostdev0', sysfsdev: `/sys/bus/pci/devices/${BDF}` };

const refused = (opts: Parameters<typeof host>[0], pattern: RegExp, c = config) => {
  const h = host(opts);
  try {
    assert.throws(
      () => checkVfioHost(c, h),
      (e: Error) => e.name === 'DeviceSetupError' && pattern.test(e.message),
    );
  } finally {
    h.done();
  }
};

test('vfio host: a function bound to vfio-pci, alone in its group, gives its address and group', () => {
  const h = host({ companions: { '0000:00:03.1': 'vfio-pci', '0000:00:1c.0': 'pcieport' } });
  try {
    assert.equal(checkVfioHost(config, h), { bdf: BDF, sysfsdev: config.sysfsdev, group: 3 });
  } finally {
    h.done();
  }
});

test('vfio host: each unready host is one line that says what to do', () => {
  refused({}, /hostdev0: no PCI device at \/sys\/bus\/pci\/devices\/0000:00:09.0/, {
    ...config,
    sysfsdev: '/sys/bus/pci/devices/0000:00:09.0',
  });
  refused({ group: null }, /0000:00:03.0 has no IOMMU group: the host's IOMMU is off \(boot with intel_iommu=on/);
  refused(
    { driver: null },
    /0000:00:03.0 is bound to no driver; bind it to vfio-pci: echo vfio-pci > \/sys\/bus\/pci\/devices\/0000:00:03.0\/driver_override; echo 0000:00:03.0 > \/sys\/bus\/pci\/drivers_probe/,
  );
  refused(
    { driver: 'nvme' },
    /0000:00:03.0 is bound to nvme, not vfio-pci; bind it to vfio-pci: echo 0000:00:03.0 > .*unbind/,
  );
  refused({ dev: false }, /\/dev\/vfio\/vfio is missing: load VFIO \(modprobe vfio-pci\)/);
  refused(
    { companions: { '0000:00:04.0': 'e1000e', '0000:00:05.0': 'vfio-pci' } },
    /IOMMU group 3 is not viable: 0000:00:03.0 shares it with 0000:00:04.0 \(bound to e1000e\); bind every device of the group to vfio-pci/,
  );
});

test.run();
