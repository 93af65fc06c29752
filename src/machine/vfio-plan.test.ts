// Planning passed-through functions over a fake VFIO and a scratch sysfs: the order of things (checks, container,
// IOMMU, DMA map of all RAM, device), where the function lands (slot and BARs after the virtio functions), which
// BAR pieces become memory slots, the MSI vectors and the INTx irqfd — and that the teardown undoes it.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KVM_IRQFD_FLAG_RESAMPLE } from '../../kvm/bindings/constants.js';
import type { Irqfd } from '../../kvm/bindings/types.js';
import { DEFAULT_INTX_ROUTING, intxGsi } from '../../devices/pci/bus.js';
import { nvmeConfig } from '../../devices/vfio-pci/testing/fake-host.js';
import { MsiRouter } from '../runtime/msi-router.js';
import { defaultPciHostConfig } from './pci-plan.js';
import { FIRST_VFIO_MEMSLOT, planVfioDevices, type VfioApi, type VfioPlanDevice } from './vfio-plan.js';

const BDF = '0000:00:04.0';

function sysfs() {
  const root = mkdtempSync(join(tmpdir(), 'tsvmm-vfio-plan-'));
  const dir = join(root, 'sys/bus/pci/devices', BDF);
  mkdirSync(dir, { recursive: true });
  mkdirSync(join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
  symlinkSync(join(root, 'sys/bus/pci/drivers/vfio-pci'), join(dir, 'driver'));
  mkdirSync(join(root, 'sys/kernel/iommu_groups/7/devices'), { recursive: true });
  symlinkSync(join(root, 'sys/kernel/iommu_groups/7'), join(dir, 'iommu_group'));
  mkdirSync(join(root, 'dev/vfio'), { recursive: true });
  writeFileSync(join(root, 'dev/vfio/vfio'), '');
  writeFileSync(join(root, 'dev/vfio/7'), '');
  return { root, done: () => rmSync(root, { recursive: true, force: true }) };
}

function fakeApi(log: string[]): VfioApi {
  const config = nvmeConfig().bytes;
  const device: VfioPlanDevice = {
    fd: 77,
    info: () => ({ numRegions: 9, numIrqs: 5, canReset: true, isPci: true }),
    region: (i) => ({
      size: i === 0 ? 0x4000n : 0n,
      readable: true,
      mmappable: i === 0,
      sparseMmap: null,
    }),
    read: (_region, offset, bytes) => bytes.set(config.subarray(Number(offset), Number(offset) + bytes.length)),
    mmap: (region, offset, size) => {
      log.push(`mmap ${region} 0x${offset.toString(16)}+0x${size.toString(16)}`);
      return { addr: 0x7f0000000000n + offset, size, unmap: () => log.push(`munmap 0x${offset.toString(16)}`) };
    },
    irqInfo: (index) => ({ count: [1, 1, 65][index] ?? 0 }),
    close: () => log.push('close device'),
  };
  return {
    openContainer: () => {
      log.push('open container');
      return {
        setIommu: () => log.push('set iommu'),
        mapDma: (m) =>
          log.push(`map dma 0x${m.iova.toString(16)}+0x${m.size.toString(16)} at 0x${m.vaddr.toString(16)}`),
        unmapDma: (iova, size) => {
          log.push(`unmap dma 0x${iova.toString(16)}+0x${size.toString(16)}`);
          return size;
        },
        close: () => log.push('close container'),
      };
    },
    openGroup: (n) => {
      log.push(`open group ${n}`);
      return {
        setContainer: () => log.push('group into container'),
        openDevice: (bdf) => {
          log.push(`open device ${bdf}`);
          return device;
        },
        close: () => log.push('close group'),
      };
    },
  };
}

test('vfio plan: checks, container, IOMMU and DMA of all RAM, then the device placed after two virtio functions', () => {
  const host = sysfs();
  const log: string[] = [];
  const irqfds: Irqfd[] = [];
  const releases: (() => void)[] = [];
  const msi = MsiRouter.create(-1, { ops: { setGsiRouting: () => {}, irqfd: () => {} } });
  msi.allocate(6); // two virtio functions before
  const pciHost = defaultPciHostConfig(64 * 2 ** 20);
  try {
    const [spec] = planVfioDevices([{ id: 'nvme0', sysfsdev: `/sys/bus/pci/devices/${BDF}` }], {
      api: fakeApi(log),
      msi,
      windows: pciHost.windows,
      intx: DEFAULT_INTX_ROUTING,
      ram: [{ gpa: 0, size: 64 * 2 ** 20, hostAddress: 0x7e0000000000n }],
      virtioCount: 2,
      irqfd: (f) => irqfds.push(f),
      teardown: { add: (r) => releases.push(r) },
      roots: host,
    });
    assert.equal(log, [
      'open container',
      'open group 7',
      'group into container',
      'set iommu',
      'map dma 0x0+0x4000000 at 0x7e0000000000',
      `open device ${BDF}`,
      'mmap 0 0x0+0x2000',
    ]);
    assert.is(spec.slot, 3, 'after the virtio functions in slots 1 and 2');
    assert.is(spec.host, BDF);
    assert.equal(spec.bars, [{ index: 0, kind: 'mmio64', size: 0x4000, prefetchable: false }]);
    // The virtio functions take 0x4000 (BAR 4) + 0x1000 (BAR 1) each, from the window's base.
    assert.equal(spec.barAddresses, [[0, pciHost.windows.mmio32.base + 0x10000]]);
    assert.equal(spec.windows, [
      { bar: 0, offset: 0, size: 0x2000, hostAddress: 0x7f0000000000, memslot: FIRST_VFIO_MEMSLOT },
    ]);
    assert.equal(spec.msi, { first: 6, count: 65 });
    assert.is(spec.romSize, 0, 'no ROM region');
    assert.is(spec.vectorFds.length, 65);
    assert.is(spec.pendingFds.length, 65);
    assert.equal(irqfds, [
      { fd: spec.intx!.trigger, gsi: intxGsi(3, 1), flags: KVM_IRQFD_FLAG_RESAMPLE, resampleFd: spec.intx!.resample },
    ]);
    log.length = 0;
    for (const release of releases.reverse()) release();
    assert.equal(log, ['munmap 0x0', 'close device', 'unmap dma 0x0+0x4000000', 'close group', 'close container']);
  } finally {
    msi.close();
    host.done();
  }
});

test.run();
