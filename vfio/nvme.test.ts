// VFIO against QEMU's NVMe controller (1b36:0010) bound to vfio-pci, in the rig: what edu lacks — a BAR holding
// the MSI-X table, so a capability chain the kernel really builds (argsz re-queried), and MSI-X with many vectors,
// each its own eventfd. Natively these skip with "no vfio-pci device here" and run in the rig.
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno } from '../src/sys/errno.js';
import * as libc from '../src/sys/libc.js';
import { testIf } from '../test/support/skip.js';
import { holdVfioDevice, requireVfioDevice, vfioMissing } from '../test/support/vfio-devices.js';
import { encode } from './bindings/codec.js';
import * as V from './bindings/ioctls.js';
import { VfioContainer } from './container.js';
import { ioctlBuffer } from './fd-ioctl.js';
import { VfioGroup } from './group.js';

const skip = vfioMissing('nvme');

// Other rig files (a VMM passing nvme through) run beside this one: the device is this file's from start to end.
let letGo: (() => Promise<void>) | undefined;
test.before(async () => {
  if (!skip) letGo = await holdVfioDevice('nvme');
});
test.after(async () => {
  await letGo?.();
});
const PCI_CAP_ID_MSIX = 0x11;

testIf(
  test,
  skip,
  'vfio: nvme: BAR0 holds the MSI-X table and says it is mappable anyway; MSI-X vectors each signal their own eventfd',
  async () => {
    const { bdf, group: number } = requireVfioDevice('nvme');
    const container = VfioContainer.open();
    const group = VfioGroup.open(number);
    group.setContainer(container);
    container.setIommu();
    const device = group.openDevice(bdf);
    try {
      const config = device.region(V.VFIO_PCI_CONFIG_REGION_INDEX);
      const id = new Uint8Array(4);
      device.read(config, 0, id);
      assert.is(new DataView(id.buffer).getUint32(0, true).toString(16), '101b36');

      // Walk the PCI capability list to the MSI-X capability: its table's BAR (BIR) is the region to look at.
      const cfg = new Uint8Array(256);
      device.read(config, 0, cfg);
      let at = cfg[0x34] & 0xfc;
      for (let hops = 0; at !== 0 && cfg[at] !== PCI_CAP_ID_MSIX && hops < 48; hops++) at = cfg[at + 1] & 0xfc;
      assert.is(cfg[at], PCI_CAP_ID_MSIX, 'an MSI-X capability');
      const tableBar = new DataView(cfg.buffer).getUint32(at + 4, true) & 0x7;

      const bar = device.region(tableBar);
      assert.ok(bar.mmappable && bar.flags & V.VFIO_REGION_INFO_FLAG_CAPS, `region ${tableBar} flags ${bar.flags}`);
      // Linux 4.16+ with interrupt remapping: the whole BAR may be mapped, the table page included.
      assert.ok(bar.msixMappable || bar.sparseMmap !== null, JSON.stringify(bar.all));
      const whole = device.mmap(bar, 0n, bar.size);
      whole.unmap();

      const msix = device.irqInfo(V.VFIO_PCI_MSIX_IRQ_INDEX);
      assert.ok(msix.count >= 2 && msix.eventfd && msix.noresize, JSON.stringify(msix));
      const fds = [0, 1, 2].map(() => libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC));
      try {
        device.setIrqEventfds(V.VFIO_PCI_MSIX_IRQ_INDEX, 0, fds);
        // The kernel's loopback (DATA_NONE | ACTION_TRIGGER) fires vector 1 as the device would.
        const fire = encode('vfio_irq_set', {
          flags: V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER,
          index: V.VFIO_PCI_MSIX_IRQ_INDEX,
          start: 1,
          count: 1,
        });
        ioctlBuffer(device.fd, V.VFIO_DEVICE_SET_IRQS, fire);
        const count = new BigUint64Array(1);
        for (let i = 0; i < 2000 && libc.read(fds[1], count) !== 8; i++) await sleep(5);
        assert.is(count[0], 1n, 'vector 1 signalled its eventfd');
        assert.equal(
          [fds[0], fds[2]].map((fd) => libc.read(fd, new BigUint64Array(1))),
          [-Errno.EAGAIN, -Errno.EAGAIN],
          'the other vectors stayed quiet (EAGAIN)',
        );
        // -1 unassigns one vector; the rest stay.
        device.setIrqEventfds(V.VFIO_PCI_MSIX_IRQ_INDEX, 2, [-1]);
      } finally {
        device.disableIrqs(V.VFIO_PCI_MSIX_IRQ_INDEX);
        for (const fd of fds) libc.close(fd);
      }
    } finally {
      device.close();
      group.close();
      container.close();
    }
  },
);

test.run();
