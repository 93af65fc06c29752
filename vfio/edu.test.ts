// VFIO against a real device: QEMU's edu (1234:11e8) bound to vfio-pci. Natively these skip with "no vfio-pci
// device here", and the test runner runs this file in the rig booted as q35 + intel-iommu with edu bound
// (test/rig/README.md). edu's registers (QEMU's docs/specs/edu.rst): BAR0 0x00 identification 0x010000ed, 0x04
// liveness (reads back ~x), 0x24 interrupt status, 0x60 raise interrupt, 0x64 acknowledge, 0x80/0x88/0x90/0x98
// DMA source, destination, count, command; its 4 KiB DMA buffer at 0x40000; a 28-bit DMA mask.
import { readdirSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno } from '../src/sys/errno.js';
import * as libc from '../src/sys/libc.js';
import { testIf } from '../test/support/skip.js';
import { holdVfioDevice, requireVfioDevice, vfioMissing } from '../test/support/vfio-devices.js';
import * as V from './bindings/ioctls.js';
import { VfioContainer } from './container.js';
import type { VfioDevice, VfioRegion } from './device.js';
import { VfioError } from './errors.js';
import { VfioGroup } from './group.js';
import { iommufdMissing } from './iommufd.js';

const skip = vfioMissing('edu');

// Other rig files (a VMM passing edu through) run beside this one: the device is this file's from start to end.
let letGo: (() => Promise<void>) | undefined;
test.before(async () => {
  if (!skip) letGo = await holdVfioDevice('edu');
});
test.after(async () => {
  await letGo?.();
});

const EDU = {
  ID: 0x00,
  LIVENESS: 0x04,
  IRQ_STATUS: 0x24,
  IRQ_RAISE: 0x60,
  IRQ_ACK: 0x64,
  DMA_SRC: 0x80,
  DMA_DST: 0x88,
  DMA_COUNT: 0x90,
  DMA_CMD: 0x98,
  BUFFER: 0x40000,
} as const;
const DMA_START = 1; // DMA_CMD bit 0: run (clears when done)
const DMA_TO_RAM = 2; // DMA_CMD bit 1: edu → RAM (0: RAM → edu)
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const MIB2 = 2 << 20;

interface Opened {
  container: VfioContainer;
  group: VfioGroup;
  device: VfioDevice;
  bar0: VfioRegion;
  config: VfioRegion;
  bdf: string;
}
let edu: Opened | null = null;
const opened = (): Opened => {
  if (!edu) throw new Error('edu was not opened by the first test');
  return edu;
};

const u32 = (v: number) => new Uint8Array(new Uint32Array([v >>> 0]).buffer);
function read32(region: VfioRegion, offset: number): number {
  const b = new Uint8Array(4);
  opened().device.read(region, offset, b);
  return new DataView(b.buffer).getUint32(0, true);
}
const write32 = (region: VfioRegion, offset: number, v: number) => opened().device.write(region, offset, u32(v));

/** Polls `done` every 5 ms for up to `ms` (TCG in the rig is slow; edu runs DMA from a 100 ms timer). */
async function until(what: string, done: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

/** One edu DMA transfer of `count` bytes; `toRam` picks the direction. */
async function dma(src: bigint | number, dst: bigint | number, count: number, toRam: boolean): Promise<void> {
  const { bar0 } = opened();
  write32(bar0, EDU.DMA_SRC, Number(src));
  write32(bar0, EDU.DMA_DST, Number(dst));
  write32(bar0, EDU.DMA_COUNT, count);
  write32(bar0, EDU.DMA_CMD, DMA_START | (toRam ? DMA_TO_RAM : 0));
  await until('edu DMA', () => (read32(bar0, EDU.DMA_CMD) & DMA_START) === 0);
}

function anonymous(size: number): { addr: bigint; bytes: Uint8Array; unmap(): void } {
  const addr = libc.mmap(null, size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1);
  return { addr, bytes: new Uint8Array(libc.view(addr, size)), unmap: () => libc.munmap(addr, size) };
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

testIf(test, skip, 'vfio: edu opens through container, group and device; info says PCI, 9 regions, 5 irqs', () => {
  const { bdf, group: number } = requireVfioDevice('edu');
  assert.is(VfioGroup.forDevice(bdf), number);
  const container = VfioContainer.open();
  assert.ok(container.checkExtension(V.VFIO_TYPE1v2_IOMMU));
  const group = VfioGroup.open(number);
  assert.ok(group.isViable());
  group.setContainer(container);
  container.setIommu();
  const iommu = container.iommuInfo();
  assert.ok(iommu.pageSizes & 0x1000n, '4 KiB IOMMU pages');
  assert.ok(
    iommu.iovaRanges?.some((r) => r.start === 0n),
    String(iommu.iovaRanges),
  );
  assert.not.ok(
    iommu.iovaRanges?.some((r) => r.start <= 0xfee00000n && r.end >= 0xfee00000n),
    'the MSI window is no IOVA',
  );
  const device = group.openDevice(bdf);
  const info = device.info();
  assert.equal([info.isPci, info.numRegions, info.numIrqs], [true, V.VFIO_PCI_NUM_REGIONS, V.VFIO_PCI_NUM_IRQS]);
  const bar0 = device.region(V.VFIO_PCI_BAR0_REGION_INDEX);
  const config = device.region(V.VFIO_PCI_CONFIG_REGION_INDEX);
  assert.is(bar0.size, 1n << 20n, "edu's BAR0 is 1 MiB");
  assert.ok(bar0.readable && bar0.writable && bar0.mmappable);
  assert.is(bar0.offset, 0n);
  assert.is(config.offset, 7n << 40n, 'vfio-pci puts region i at i << 40');
  assert.is(device.region(V.VFIO_PCI_BAR1_REGION_INDEX).size, 0n, 'an unused BAR is a zero-sized region');
  edu = { container, group, device, bar0, config, bdf };
});

testIf(test, skip, 'vfio: config space through pread says 1234:11e8', () => {
  const { config } = opened();
  assert.is(read32(config, 0).toString(16), '11e81234');
});

testIf(test, skip, "vfio: BAR0 through pread and through mmap gives edu's identification 0x010000ed", () => {
  const { device, bar0 } = opened();
  assert.is(read32(bar0, EDU.ID), 0x010000ed);
  const map = device.mmap(bar0, 0n, 4096n);
  try {
    const regs = new Uint32Array(libc.view(map.addr, 4096));
    assert.is(regs[EDU.ID / 4], 0x010000ed);
    regs[EDU.LIVENESS / 4] = 0x5a5a0001;
    assert.is(regs[EDU.LIVENESS / 4], ~0x5a5a0001 >>> 0, 'liveness through the mapping');
  } finally {
    map.unmap();
  }
});

testIf(test, skip, 'vfio: the liveness register reads back the complement of what was written', () => {
  const { bar0 } = opened();
  for (const x of [0, 0x12345678, 0xffffffff]) {
    write32(bar0, EDU.LIVENESS, x);
    assert.is(read32(bar0, EDU.LIVENESS), ~x >>> 0);
  }
});

testIf(
  test,
  skip,
  'vfio: reads past a region or mmaps of a part that is not whole pages are refused in one line',
  () => {
    const { device, bar0 } = opened();
    assert.throws(
      () => device.read(bar0, (1 << 20) - 2, new Uint8Array(4)),
      /region 0 at 0xffffe\+4: the region is 0x100000 bytes/,
    );
    assert.throws(() => device.mmap(bar0, 0x10n, 4096n), /whole 4 KiB pages/);
  },
);

testIf(
  test,
  skip,
  'vfio: edu DMA runs through the IOMMU: RAM → device → RAM at another offset, bytes equal',
  async () => {
    const { container, device, config } = opened();
    const command = new Uint8Array(2);
    device.read(config, PCI_COMMAND, command);
    command[0] |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    device.write(config, PCI_COMMAND, command);

    const ram = anonymous(MIB2);
    const iova = 0x100000n; // below edu's 28-bit DMA mask
    try {
      container.mapDma({ iova, size: BigInt(MIB2), vaddr: ram.addr });
      const data = pattern(1024, 7);
      ram.bytes.set(data, 0);
      await dma(iova, EDU.BUFFER, data.length, false);
      await dma(EDU.BUFFER, iova + 0x10000n, data.length, true);
      assert.equal(ram.bytes.subarray(0x10000, 0x10000 + data.length), data);
      assert.is(container.unmapDma(iova, BigInt(MIB2)), BigInt(MIB2));
    } finally {
      ram.unmap();
    }
  },
);

testIf(
  test,
  skip,
  'vfio: after invalidateVaddr and updateVaddr to a new mapping of the same memfd, DMA still works',
  async () => {
    const { container } = opened();
    assert.ok(container.checkExtension(V.VFIO_UPDATE_VADDR), 'VFIO_UPDATE_VADDR');
    const memfd = libc.memfdCreate('vfio-test', libc.MFD_CLOEXEC);
    libc.ftruncate(memfd, MIB2);
    const map = () => libc.mmap(null, MIB2, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, memfd);
    const iova = 0x400000n;
    let first: bigint | null = map();
    let second: bigint | null = null;
    try {
      container.mapDma({ iova, size: BigInt(MIB2), vaddr: first });
      const data = pattern(2048, 3);
      new Uint8Array(libc.view(first, MIB2)).set(data, 0x2000);
      // As before an exec: the process's address goes away, the IOMMU mapping stays.
      container.invalidateVaddr(iova, BigInt(MIB2));
      libc.munmap(first, MIB2);
      first = null;
      second = map();
      container.updateVaddr(iova, BigInt(MIB2), second);
      await dma(iova + 0x2000n, EDU.BUFFER, data.length, false);
      await dma(EDU.BUFFER, iova + 0x8000n, data.length, true);
      assert.equal(new Uint8Array(libc.view(second, MIB2)).subarray(0x8000, 0x8000 + data.length), data);
      assert.is(container.unmapDma(iova, BigInt(MIB2)), BigInt(MIB2));
    } finally {
      if (first !== null) libc.munmap(first, MIB2);
      if (second !== null) libc.munmap(second, MIB2);
      libc.close(memfd);
    }
  },
);

/** Raises edu's interrupt and waits for `efd` to count it. */
async function raised(efd: number, what: string): Promise<void> {
  const { bar0 } = opened();
  write32(bar0, EDU.IRQ_RAISE, 0x1);
  const count = new BigUint64Array(1);
  await until(`the ${what} eventfd`, () => libc.read(efd, count) === 8);
  assert.is(count[0], 1n);
  assert.is(read32(bar0, EDU.IRQ_STATUS), 0x1);
}

/** Acknowledges edu's interrupt (its line goes low). */
function acknowledge(): void {
  const { bar0 } = opened();
  write32(bar0, EDU.IRQ_ACK, 0x1);
  assert.is(read32(bar0, EDU.IRQ_STATUS), 0);
}

async function withEventfd(index: number, body: (efd: number) => Promise<void>): Promise<void> {
  const { device } = opened();
  const efd = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  try {
    device.setIrqEventfds(index, 0, [efd]);
    await body(efd);
  } finally {
    device.disableIrqs(index);
    libc.close(efd);
  }
}

testIf(test, skip, "vfio: edu's MSI signals the eventfd set with VFIO_DEVICE_SET_IRQS after a raise", async () => {
  const msi = opened().device.irqInfo(V.VFIO_PCI_MSI_IRQ_INDEX);
  assert.equal([msi.count, msi.eventfd, msi.noresize], [1, true, true]);
  await withEventfd(V.VFIO_PCI_MSI_IRQ_INDEX, async (efd) => {
    await raised(efd, 'MSI');
    acknowledge();
    await raised(efd, 'MSI'); // an edge each time: no unmask needed
    acknowledge();
  });
});

testIf(test, skip, 'vfio: INTx is automasked: it signals once, and again only after unmasking', async () => {
  const { device } = opened();
  const intx = device.irqInfo(V.VFIO_PCI_INTX_IRQ_INDEX);
  assert.equal([intx.count, intx.eventfd, intx.maskable, intx.automasked], [1, true, true, true]);
  await withEventfd(V.VFIO_PCI_INTX_IRQ_INDEX, async (efd) => {
    await raised(efd, 'INTx');
    acknowledge();
    // Masked since it fired: a second raise stays quiet until the unmask.
    write32(opened().bar0, EDU.IRQ_RAISE, 0x1);
    await sleep(300);
    assert.is(libc.read(efd, new BigUint64Array(1)), -Errno.EAGAIN, 'no signal while masked');
    device.unmaskIrq(V.VFIO_PCI_INTX_IRQ_INDEX);
    const count = new BigUint64Array(1);
    await until('the INTx eventfd after the unmask', () => libc.read(efd, count) === 8);
    acknowledge();
  });
});

testIf(test, skip, 'vfio: reset leaves edu answering; a second open of the group is busy', () => {
  const { device, bar0, group } = opened();
  if (device.info().canReset) device.reset();
  else assert.throws(() => device.reset(), /VFIO_DEVICE_RESET/);
  assert.is(read32(bar0, EDU.ID), 0x010000ed);
  assert.throws(
    () => VfioGroup.open(group.number),
    (e: Error) => e instanceof VfioError && e.reason === 'busy',
  );
});

testIf(test, skip, 'vfio: a device not in the group, or bound to another driver, is one clear line', () => {
  const { group } = opened();
  assert.throws(
    () => group.openDevice('0000:00:1f.7'),
    (e: Error) => e.message === `vfio: device 0000:00:1f.7 is not in IOMMU group ${group.number}`,
  );
  // A device of the rig's machine bound to virtio-pci (its transport: no other test rebinds it).
  const other = readdirSync('/sys/bus/pci/devices').find((bdf) => {
    try {
      return basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/driver`)) === 'virtio-pci';
    } catch {
      return false;
    }
  });
  assert.ok(other, 'a device bound to another driver');
  const driver = basename(readlinkSync(`/sys/bus/pci/devices/${other}/driver`));
  assert.throws(
    () => VfioGroup.forDevice(other!),
    (e: Error) =>
      e instanceof VfioError && e.message.startsWith(`vfio: ${other} is bound to ${driver}, not vfio-pci; `),
  );
});

testIf(test, skip, 'vfio: closing device, group and container releases the group for the next user', () => {
  const { device, group, container } = opened();
  device.close();
  group.unsetContainer();
  group.close();
  container.close();
  VfioGroup.open(group.number).close();
  edu = null;
});

testIf(test, iommufdMissing(), 'vfio: iommufd is there: /dev/iommu opens', () => {
  libc.close(libc.open('/dev/iommu', libc.O_RDWR | libc.O_CLOEXEC));
});

test.run();
