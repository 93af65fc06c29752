// The vfio-pci model as a specification: what the guest sees of a passed-through function's config space, what the
// host device and KVM are told when the guest sizes and moves BARs, toggles decoding and bus mastering, and
// programs MSI or MSI-X — over a fake host (the bytes VFIO's config region would give) and a log of the calls.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, recordBytes } from '../../cpr/vmstate/vmstate.js';
import { PciBus, type PciWindows } from '../pci/bus.js';
import * as R from '../pci/constants.js';
import { FakeIrqLines, FakeMsi } from '../pci/testing/fakes.js';
import { barInfos, findCapabilities } from './config.js';
import { PASSED_COMMAND_BITS, VfioPciFunction } from './device.js';
import {
  VFIO_PCI_CONFIG_REGION_INDEX as CONFIG,
  VFIO_PCI_INTX_IRQ_INDEX as INTX,
  VFIO_PCI_MSI_IRQ_INDEX as MSI,
  VFIO_PCI_MSIX_IRQ_INDEX as MSIX,
  type VfioPciSpec,
  vfioAdoption,
} from './host.js';
import { vfioPciState } from './state.js';
import { queryPci } from '../../src/qmp/pci-query.js';
import { FakeVfio, eduConfig, nvmeConfig, type FakeIrqKernel, type HostConfig } from './testing/fake-host.js';
import { barWindows } from './windows.js';

const WINDOWS: PciWindows = {
  mmio32: { base: 0xc000_0000, size: 0x2000_0000 },
  mmio64: { base: 0x1_0000_0000, size: 0x1_0000_0000 },
  io: { base: 0xc000, size: 0x4000 },
};
const SLOT = 3;

function specFor(host: HostConfig, regionSizes: number[], extra: Partial<VfioPciSpec> = {}): VfioPciSpec {
  const bars = barInfos(host.bytes, regionSizes);
  const caps = findCapabilities(host.bytes);
  const vectors = Math.max(caps.msix?.vectors ?? 0, caps.msi?.vectors ?? 0);
  const windows = bars.flatMap((b) =>
    barWindows({ index: b.index, size: b.size, mmappable: b.kind !== 'io', sparse: null }, caps.msix).map((w, i) => ({
      bar: b.index,
      ...w,
      hostAddress: 0x7f00_0000_0000 + b.index * 0x1000_0000 + w.offset,
      memslot: 32 + i,
    })),
  );
  return {
    kind: 'vfio-pci',
    id: 'hostdev0',
    host: '0000:00:03.0',
    slot: SLOT,
    deviceFd: 40,
    config: [...host.bytes],
    bars,
    barAddresses: bars.map((b, i) => [b.index, 0xc000_0000 + i * 0x10_0000] as const),
    windows,
    msi: vectors ? { first: 0, count: vectors } : null,
    vectorFds: Array.from({ length: vectors }, (_, v) => 100 + v),
    pendingFds: Array.from({ length: vectors }, (_, v) => 300 + v),
    intx: { trigger: 50, resample: 51 },
    romSize: 0,
    canReset: true,
    ...extra,
  };
}

function machine(
  host: HostConfig,
  regionSizes: number[],
  extra: Partial<VfioPciSpec> = {},
  kernel: FakeIrqKernel | null = null,
) {
  const spec = specFor(host, regionSizes, extra);
  const record = newRecord(vfioPciState);
  const busRecord = { mappingGeneration: 0, intxLevels: 0 };
  const bus = new PciBus(busRecord, WINDOWS, new FakeIrqLines().line);
  const vfio = new FakeVfio(kernel);
  const msi = new FakeMsi(spec.msi?.count ?? 0);
  const log: string[] = [];
  const fn = new VfioPciFunction(record, spec, {
    pci: bus,
    msi: spec.msi ? msi : null,
    ops: vfio.ops,
    slots: vfio.slots,
    log: (l) => log.push(l),
  });
  fn.reset();
  fn.restored();
  vfio.take();
  const cfgRead = (offset: number, size: 1 | 2 | 4) => bus.configRead(0, SLOT, 0, offset, size);
  const cfgWrite = (offset: number, size: 1 | 2 | 4, value: number) => bus.configWrite(0, SLOT, 0, offset, size, value);
  const mmio = bus.regions().find((r) => r.name === 'pci-mmio32')!;
  const mmioRead = (gpa: number, size: 1 | 2 | 4) => mmio.handler.read(gpa - mmio.base, size);
  const mmioWrite = (gpa: number, size: 1 | 2 | 4, value: number) => mmio.handler.write(gpa - mmio.base, size, value);
  return { spec, record, bus, vfio, msi, log, fn, cfgRead, cfgWrite, mmioRead, mmioWrite };
}

const edu = () => machine(eduConfig(), [0x10_0000]);
const nvme = () => machine(nvmeConfig(), [0x4000]);

test('vfio-pci config: identity, class and pin are the host’s; one function, no ROM, 256 bytes', () => {
  const { cfgRead, cfgWrite } = edu();
  assert.is(cfgRead(R.PCI_VENDOR_ID, 4), 0x11e81234);
  assert.is(cfgRead(R.PCI_REVISION_ID, 4), 0x00ff0010);
  assert.is(cfgRead(R.PCI_SUBSYSTEM_VENDOR_ID, 4), 0x11001af4);
  assert.is(cfgRead(R.PCI_HEADER_TYPE, 1), 0, 'multi-function bit cleared');
  assert.is(cfgRead(R.PCI_INTERRUPT_PIN, 1), 1);
  assert.is(cfgRead(R.PCI_ROM_ADDRESS, 4), 0);
  cfgWrite(R.PCI_ROM_ADDRESS, 4, 0xffffffff);
  assert.is(cfgRead(R.PCI_ROM_ADDRESS, 4), 0, 'no ROM: the ROM BAR does not size');
  assert.is(cfgRead(0x100, 4), 0xffffffff, 'no extended configuration space');
});

test('vfio-pci ROM: the ROM BAR sizes as VFIO’s ROM region, decodes while enabled, and reads the region', () => {
  const { cfgRead, cfgWrite, mmioRead, mmioWrite, vfio } = machine(eduConfig(), [0x10_0000], { romSize: 0x10000 });
  cfgWrite(R.PCI_ROM_ADDRESS, 4, 0xfffffffe);
  assert.is(cfgRead(R.PCI_ROM_ADDRESS, 4), 0xffff0000, '64 KiB, disabled');
  const rom = new Uint8Array(0x10000);
  rom.set([0x55, 0xaa, 0x80], 0);
  vfio.memory.set(6, rom);
  cfgWrite(R.PCI_ROM_ADDRESS, 4, 0xd0000000);
  assert.is(mmioRead(0xd0000000, 2), 0xffff, 'not decoding until enabled');
  cfgWrite(R.PCI_ROM_ADDRESS, 4, 0xd0000001);
  assert.is(mmioRead(0xd0000000, 4), 0x0080aa55, 'the option ROM signature, through the region');
  mmioWrite(0xd0000000, 4, 0);
  assert.is(mmioRead(0xd0000000, 2), 0xaa55, 'read-only');
  assert.not.ok(
    vfio.calls.some((c) => c.op === 'map' && c.gpa === 0xd0000000),
    'never a memory slot',
  );
  cfgWrite(R.PCI_COMMAND, 2, 0);
  assert.is(mmioRead(0xd0000000, 2), 0xffff, 'MEMORY off: no ROM either');
});

test('vfio-pci config: the capability list keeps the host’s offsets; MSI-X and PCIe follow the host’s order', () => {
  const { cfgRead } = nvme();
  assert.ok(cfgRead(R.PCI_STATUS, 2) & R.PCI_STATUS_CAP_LIST);
  const seen: [number, number][] = [];
  for (let at = cfgRead(R.PCI_CAPABILITY_LIST, 1); at; at = cfgRead(at + 1, 1)) seen.push([at, cfgRead(at, 1)]);
  assert.equal(seen, [
    [0x40, 0x01],
    [0x80, R.PCI_CAP_ID_EXP],
    [0x50, R.PCI_CAP_ID_MSIX],
  ]);
  assert.is(cfgRead(0x50 + R.PCI_MSIX_FLAGS, 2), 64, 'MSI-X off and unmasked at power-on, 65 vectors');
  assert.is(cfgRead(0x50 + R.PCI_MSIX_TABLE, 4), 0x2000);
  assert.is(cfgRead(0x50 + R.PCI_MSIX_PBA, 4), 0x3000);
});

test('vfio-pci config: a looping or out-of-range capability list is cut where it goes wrong', () => {
  const looped = eduConfig().set(0x41, 1, 0x40);
  assert.equal(
    findCapabilities(looped.bytes).list.map((c) => c.offset),
    [0x40],
  );
  const intoHeader = eduConfig().set(0x41, 1, 0x20);
  assert.equal(findCapabilities(intoHeader.bytes).list.length, 1);
  const { cfgRead } = machine(eduConfig().set(0x41, 1, 0x24), [0x10_0000]);
  assert.is(cfgRead(0x41, 1), 0, 'the guest sees the list end');
});

test('vfio-pci config: BAR 0 sizes as its VFIO region and moves where the guest writes it', () => {
  const { cfgRead, cfgWrite, vfio, spec } = edu();
  const bar0 = spec.barAddresses[0][1];
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0, 4), bar0);
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xffffffff);
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0, 4), 0xfff00000, '1 MiB, 32-bit, not prefetchable');
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xd0000000);
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0, 4), 0xd0000000);
  const calls = vfio.take().filter((c) => c.op === 'map' || c.op === 'unmap');
  // Sizing: the all-ones address lies outside every window, so the window goes; the new address brings it back.
  assert.equal(calls, [
    { op: 'unmap', window: 0 },
    { op: 'map', window: 0, gpa: 0xd0000000 },
  ]);
});

test('vfio-pci config: a 64-bit BAR sizes in two halves and decodes above 4 GiB', () => {
  const { cfgRead, cfgWrite, vfio } = nvme();
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xffffffff);
  cfgWrite(R.PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffff);
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0, 4), 0xffffc004);
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0 + 4, 4), 0xffffffff);
  vfio.take();
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0x0);
  cfgWrite(R.PCI_BASE_ADDRESS_0 + 4, 4, 0x1);
  const maps = vfio.take().filter((c) => c.op === 'map');
  // 16 KiB with the MSI-X table and PBA pages trapped: only 0x0000-0x1fff is a memory slot.
  assert.equal(maps, [{ op: 'map', window: 0, gpa: 0x1_0000_0000 }]);
});

test('vfio-pci windows: the MSI-X table and PBA pages stay trapped; sparse areas and sub-page BARs respected', () => {
  const msix = { offset: 0x50, vectors: 65, tableBar: 0, tableOffset: 0x2000, pbaBar: 0, pbaOffset: 0x3000 };
  assert.equal(barWindows({ index: 0, size: 0x4000, mmappable: true, sparse: null }, msix), [
    { offset: 0, size: 0x2000 },
  ]);
  assert.equal(barWindows({ index: 1, size: 0x4000, mmappable: true, sparse: null }, msix), [
    { offset: 0, size: 0x4000 },
  ]);
  assert.equal(
    barWindows(
      {
        index: 0,
        size: 0x10000,
        mmappable: true,
        sparse: [
          { offset: 0, size: 0x2000 },
          { offset: 0x4000, size: 0xc000 },
        ],
      },
      { ...msix, tableOffset: 0x8000, pbaOffset: 0x8800 },
    ),
    [
      { offset: 0, size: 0x2000 },
      { offset: 0x4000, size: 0x4000 },
      { offset: 0x9000, size: 0x7000 },
    ],
  );
  assert.equal(barWindows({ index: 0, size: 0x100, mmappable: true, sparse: null }, null), []);
  assert.equal(barWindows({ index: 0, size: 0x4000, mmappable: false, sparse: null }, null), []);
});

test('vfio-pci command: MEMORY off removes the slots before the device stops decoding; on adds them after', () => {
  const { cfgRead, cfgWrite, vfio, spec } = edu();
  const command = cfgRead(R.PCI_COMMAND, 2);
  assert.is(command & R.PCI_COMMAND_MEMORY, R.PCI_COMMAND_MEMORY, 'decoding on at power-on, as firmware leaves it');
  cfgWrite(R.PCI_COMMAND, 2, 0);
  assert.equal(vfio.take().slice(0, 2), [
    { op: 'unmap', window: 0 },
    { op: 'write', region: CONFIG, offset: R.PCI_COMMAND, bytes: [0, 0] },
  ]);
  cfgWrite(R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER);
  const calls = vfio.take();
  assert.equal(calls[0], { op: 'write', region: CONFIG, offset: R.PCI_COMMAND, bytes: [0x06, 0] });
  assert.equal(calls[1], { op: 'map', window: 0, gpa: spec.barAddresses[0][1] });
});

test('vfio-pci command: bus mastering and INTx disable reach the device; other bits neither stick nor pass', () => {
  const { cfgRead, cfgWrite, vfio } = edu();
  cfgWrite(R.PCI_COMMAND, 2, 0xffff);
  const written = vfio
    .take()
    .filter((c) => c.op === 'write' && c.region === CONFIG)
    .at(-1) as { bytes: number[] };
  const value = written.bytes[0] | (written.bytes[1] << 8);
  assert.is(value, PASSED_COMMAND_BITS);
  assert.is(cfgRead(R.PCI_COMMAND, 2), PASSED_COMMAND_BITS);
});

test('vfio-pci status: STATUS.INTERRUPT is read from the device; the capability bit stays the virtual one', () => {
  const { cfgRead, vfio } = edu();
  const host = new Uint8Array(256);
  vfio.memory.set(CONFIG, host);
  assert.is(cfgRead(R.PCI_STATUS, 2), R.PCI_STATUS_CAP_LIST);
  host[R.PCI_STATUS] = R.PCI_STATUS_INTERRUPT;
  assert.is(cfgRead(R.PCI_STATUS, 2), R.PCI_STATUS_CAP_LIST | R.PCI_STATUS_INTERRUPT);
  assert.is(cfgRead(R.PCI_COMMAND, 4) >>> 16, R.PCI_STATUS_CAP_LIST | R.PCI_STATUS_INTERRUPT, 'a dword read too');
  host[R.PCI_STATUS] = 0;
  assert.is(cfgRead(R.PCI_STATUS, 2), R.PCI_STATUS_CAP_LIST);
});

test('vfio-pci status: a mirrored STATUS.INTERRUPT never makes the bus drive the INTx GSI (KVM has it by irqfd)', () => {
  const lines = new FakeIrqLines();
  const spec = specFor(eduConfig(), [0x10_0000]);
  const bus = new PciBus({ mappingGeneration: 0, intxLevels: 0 }, WINDOWS, lines.line);
  const vfio = new FakeVfio();
  const fn = new VfioPciFunction(newRecord(vfioPciState), spec, {
    pci: bus,
    msi: null,
    ops: vfio.ops,
    slots: vfio.slots,
  });
  fn.reset();
  fn.restored();
  const host = new Uint8Array(256);
  host[R.PCI_STATUS] = R.PCI_STATUS_INTERRUPT;
  vfio.memory.set(CONFIG, host);
  bus.configWrite(0, SLOT, 0, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_INTX_DISABLE);
  assert.ok(bus.configRead(0, SLOT, 0, R.PCI_STATUS, 2) & R.PCI_STATUS_INTERRUPT);
  bus.configWrite(0, SLOT, 0, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
  bus.restored();
  assert.equal(
    lines.sets.filter(([, level]) => level),
    [],
  );
});

test('vfio-pci BARs: trapped accesses are forwarded to the region at the BAR offset', () => {
  const { mmioRead, mmioWrite, vfio, spec, fn } = edu();
  const bar0 = spec.barAddresses[0][1];
  vfio.memory.set(0, new Uint8Array(0x10_0000));
  vfio.memory.get(0)!.set([0x00, 0x00, 0xed, 0x10], 0); // edu's identification register
  // With the memory slot in place KVM never exits; an exit (the slot refused) still reaches the device.
  assert.is(mmioRead(bar0, 4), 0x010ed0000 >>> 0);
  mmioWrite(bar0 + 4, 4, 0x12345678);
  assert.equal(vfio.take().at(-1), { op: 'write', region: 0, offset: 4, bytes: [0x78, 0x56, 0x34, 0x12] });
  assert.is(fn.bar(1), undefined);
});

test('vfio-pci I/O BARs: sized and placed in the I/O window, every access forwarded to the region (never mapped)', () => {
  const host = eduConfig().set(R.PCI_BASE_ADDRESS_0 + 4, 4, 0xc001);
  const m = machine(host, [0x10_0000, 0x20]);
  assert.equal(
    m.spec.bars.map((b) => [b.index, b.kind, b.size]),
    [
      [0, 'mmio32', 0x10_0000],
      [1, 'io', 0x20],
    ],
  );
  assert.ok(m.cfgRead(R.PCI_COMMAND, 2) & R.PCI_COMMAND_IO, 'I/O decoding on at power-on');
  m.cfgWrite(R.PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffff);
  assert.is(m.cfgRead(R.PCI_BASE_ADDRESS_0 + 4, 4), 0xffffffe1);
  m.cfgWrite(R.PCI_BASE_ADDRESS_0 + 4, 4, 0xd000);
  const io = m.bus.regions().find((r) => r.name === 'pci-io')!;
  const ports = new Uint8Array(0x20);
  ports[4] = 0x5a;
  m.vfio.memory.set(1, ports);
  m.vfio.take();
  assert.is(io.handler.read(0xd004 - io.base, 1), 0x5a);
  io.handler.write(0xd010 - io.base, 2, 0xbeef);
  assert.equal(m.vfio.take(), [
    { op: 'read', region: 1, offset: 4, bytes: [0x5a] },
    { op: 'write', region: 1, offset: 0x10, bytes: [0xef, 0xbe] },
  ]);
  assert.is(
    m.spec.windows.every((w) => w.bar === 0),
    true,
    'no window of an I/O BAR',
  );
});

test('vfio-pci MSI: enabling it switches VFIO from INTx to MSI on the vector’s irqfd, routed to the message', () => {
  const { cfgWrite, cfgRead, vfio, msi } = edu();
  cfgWrite(0x40 + 4, 4, 0xfee01000);
  cfgWrite(0x40 + 8, 4, 0);
  cfgWrite(0x40 + 12, 2, 0x4021);
  vfio.take();
  cfgWrite(0x40 + 2, 2, 0x0001);
  assert.is(cfgRead(0x40 + 2, 2), 0x0081, 'enabled, 64-bit, one vector');
  assert.equal(vfio.take(), [
    { op: 'disableIrqs', index: INTX },
    { op: 'setIrqs', index: MSI, start: 0, fds: [100] },
  ]);
  assert.equal(msi.routes.get(0), { address: 0xfee01000n, data: 0x4021 });
  // A new message while enabled is a new route, nothing for VFIO.
  cfgWrite(0x40 + 12, 2, 0x4022);
  assert.equal(vfio.take(), []);
  assert.equal(msi.routes.get(0), { address: 0xfee01000n, data: 0x4022 });
  cfgWrite(0x40 + 2, 2, 0);
  assert.equal(vfio.take(), [
    { op: 'disableIrqs', index: MSI },
    { op: 'setIrqs', index: INTX, start: 0, fds: [50] },
    { op: 'resample', fd: 51 },
  ]);
});

test('vfio-pci MSI-X: enabled under the function mask every vector waits on its pending eventfd', () => {
  const { cfgWrite, vfio, mmioWrite, mmioRead, spec, msi, fn } = nvme();
  const bar0 = spec.barAddresses[0][1];
  cfgWrite(0x50 + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL);
  const calls = vfio.take();
  assert.equal(calls[0], { op: 'disableIrqs', index: INTX });
  assert.equal(calls[1], { op: 'setIrqs', index: MSIX, start: 0, fds: spec.pendingFds.slice(0, 65) });
  // Program vector 3 and unmask it and the function: vector 3 alone goes to its irqfd.
  mmioWrite(bar0 + 0x2000 + 3 * 16, 4, 0xfee00000);
  mmioWrite(bar0 + 0x2000 + 3 * 16 + 8, 4, 0x31);
  mmioWrite(bar0 + 0x2000 + 3 * 16 + 12, 4, 0);
  assert.equal(vfio.take(), [], 'still masked by the function');
  // A masked vector's interrupt is pending in the PBA.
  const watch = fn.ioWatches()[3];
  assert.is(watch.fd, 303);
  watch.ready();
  assert.is(mmioRead(bar0 + 0x3000, 4), 1 << 3);
  cfgWrite(0x50 + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE);
  assert.equal(vfio.take(), [{ op: 'setIrqs', index: MSIX, start: 3, fds: [103] }]);
  assert.equal(msi.routes.get(3), { address: 0xfee00000n, data: 0x31 });
  assert.equal(msi.fired, [3], 'the pending interrupt is delivered on unmask');
  assert.is(mmioRead(bar0 + 0x3000, 4), 0);
  // Masking it again points VFIO back at the pending eventfd.
  mmioWrite(bar0 + 0x2000 + 3 * 16 + 12, 4, 1);
  assert.equal(vfio.take(), [{ op: 'setIrqs', index: MSIX, start: 3, fds: [303] }]);
  // The table is emulated: nothing of it reached the device.
  assert.equal(mmioRead(bar0 + 0x2000 + 3 * 16 + 8, 4), 0x31);
});

test('vfio-pci garbage: random config writes and out-of-range BAR accesses never throw or touch identity', () => {
  const { cfgRead, cfgWrite, mmioRead, mmioWrite, spec } = nvme();
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed;
  };
  for (let i = 0; i < 20000; i++) {
    const size = ([1, 2, 4] as const)[rand() % 3];
    const offset = rand() % 0x1100;
    if (offset === R.PCI_COMMAND && size !== 1) continue; // keep decoding on for the BAR pokes below
    cfgWrite(offset, size, rand());
    mmioWrite(spec.barAddresses[0][1] + (rand() % 0x5000), size, rand());
    mmioRead(spec.barAddresses[0][1] + (rand() % 0x5000), size);
  }
  assert.is(cfgRead(R.PCI_VENDOR_ID, 4), 0x00101b36);
  assert.is(cfgRead(R.PCI_CLASS_PROG, 1), 0x02);
  assert.is(cfgRead(0x50 + R.PCI_MSIX_TABLE, 4), 0x2000);
});

test('vfio-pci reset: VFIO resets the device, interrupts go back to INTx, the slots to power-on addresses', () => {
  const { cfgWrite, cfgRead, vfio, fn, spec } = edu();
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xd0000000);
  cfgWrite(0x40 + 2, 2, 1);
  vfio.take();
  fn.reset();
  fn.restored();
  const calls = vfio.take();
  assert.ok(calls.some((c) => c.op === 'reset'));
  assert.ok(calls.some((c) => c.op === 'disableIrqs' && c.index === MSI));
  assert.equal(calls.filter((c) => c.op === 'setIrqs').at(-1), { op: 'setIrqs', index: INTX, start: 0, fds: [50] });
  assert.equal(calls.filter((c) => c.op === 'map').at(-1), { op: 'map', window: 0, gpa: spec.barAddresses[0][1] });
  assert.is(cfgRead(R.PCI_BASE_ADDRESS_0, 4), spec.barAddresses[0][1]);
});

test('vfio-pci restore: a copy of the record brings back BAR placement, MSI-X routes and masks in a new instance', () => {
  const a = nvme();
  const bar0 = a.spec.barAddresses[0][1];
  a.cfgWrite(0x50 + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE);
  a.mmioWrite(bar0 + 0x2000 + 16, 4, 0xfee00000);
  a.mmioWrite(bar0 + 0x2000 + 16 + 8, 4, 0x41);
  a.mmioWrite(bar0 + 0x2000 + 16 + 12, 4, 0);
  const b = machine(nvmeConfig(), [0x4000]);
  recordBytes(b.record).set(recordBytes(a.record));
  b.vfio.take();
  b.fn.restored();
  const calls = b.vfio.take();
  const setIrqs = calls.find((c) => c.op === 'setIrqs' && c.index === MSIX) as { fds: number[] };
  assert.is(setIrqs.fds[1], 101, 'vector 1 unmasked: its irqfd');
  assert.is(setIrqs.fds[0], 300, 'vector 0 masked: its pending eventfd');
  assert.equal(b.msi.routes.get(1), { address: 0xfee00000n, data: 0x41 });
  assert.ok(calls.some((c) => c.op === 'map' && c.window === 0 && c.gpa === bar0));
});

/** The edu guest's MSI set-up: address, data (vector 0x40), then enable. */
function eduMsi(cfgWrite: (offset: number, size: 1 | 2 | 4, value: number) => void): void {
  cfgWrite(0x40 + 4, 4, 0xfee00000);
  cfgWrite(0x40 + 8, 4, 0);
  cfgWrite(0x40 + 12, 2, 0x40);
  cfgWrite(0x40 + 2, 2, 1);
}

test('vfio-pci reboot-mode load, against the kernel’s SET_IRQS rules: power-on, warm-ups, the load of a guest in MSI, the wake-up’s reset and the guest’s MSI again — not one refusal', () => {
  const old = machine(eduConfig(), [0x10_0000], {}, { enabled: null, unmaskFd: false });
  eduMsi(old.cfgWrite);
  const saved = recordBytes(old.record).slice();
  // The new process: the function opened afresh, its power-on restore (INTx, with its unmask eventfd) done.
  const kernel: FakeIrqKernel = { enabled: null, unmaskFd: false };
  const m = machine(eduConfig(), [0x10_0000], {}, kernel);
  assert.equal(kernel, { enabled: INTX, unmaskFd: true });
  for (let i = 0; i < 3; i++) {
    recordBytes(m.record).set(recordBytes(m.record).slice()); // warm-up: its own state back into itself
    m.fn.restored();
  }
  recordBytes(m.record).set(saved); // cpr-load: the record says MSI, VFIO has INTx
  m.fn.restored();
  assert.equal(kernel, { enabled: MSI, unmaskFd: false });
  m.fn.reset(); // system_wakeup resets the devices, as firmware does
  m.fn.restored();
  assert.equal(kernel, { enabled: INTX, unmaskFd: true });
  eduMsi(m.cfgWrite); // the guest's driver sets it up again
  assert.equal(kernel, { enabled: MSI, unmaskFd: false });
  assert.equal(m.log, [], 'nothing refused, nothing logged');
});

test('vfio-pci adoption (cpr-transfer, cpr-exec) of a function in INTx: the old process’s unmask eventfd is replaced by this one’s, not doubled (EBUSY)', () => {
  const old = machine(eduConfig(), [0x10_0000], {}, { enabled: null, unmaskFd: false });
  const saved = recordBytes(old.record).slice(); // INTx since power-on
  const kernel: FakeIrqKernel = { enabled: INTX, unmaskFd: true }; // as the old process left it
  vfioAdoption.phase = 'inherited';
  try {
    const m = machine(eduConfig(), [0x10_0000], {}, kernel);
    assert.not.ok(
      m.vfio.calls.some((c) => c.op !== 'map' && c.op !== 'unmap' && c.op !== 'write'),
      'the build leaves the adopted device’s interrupts alone',
    );
    m.vfio.take();
    recordBytes(m.record).set(saved);
    vfioAdoption.phase = 'rewire';
    m.fn.restored();
    assert.equal(
      m.vfio.take().filter((c) => c.op === 'setIrqs' || c.op === 'resample' || c.op === 'disableIrqs'),
      [
        { op: 'setIrqs', index: INTX, start: 0, fds: [50] },
        { op: 'resample', fd: -1 },
        { op: 'resample', fd: 51 },
      ],
    );
    assert.equal(kernel, { enabled: INTX, unmaskFd: true });
    assert.equal(m.log, []);
  } finally {
    vfioAdoption.phase = 'none';
  }
});

test('vfio-pci query-pci: the function shows with the host’s ids and class, its pin and line, BAR 0 where it decodes', () => {
  const { bus, cfgWrite } = nvme();
  cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xd0000000);
  const [info] = queryPci(bus);
  assert.equal(info.devices, [
    {
      bus: 0,
      slot: SLOT,
      function: 0,
      class_info: { class: 0x0108 },
      id: { vendor: 0x1b36, device: 0x0010, subsystem: 0, 'subsystem-vendor': 0 },
      irq: 19, // INTA# of slot 3: GSI 16 + 3
      irq_pin: 1,
      qdev_id: 'hostdev0',
      regions: [{ bar: 0, type: 'memory', address: 0xd0000000, size: 0x4000, prefetch: false, mem_type_64: true }],
    },
  ]);
});

test('vfio-pci slots: a window KVM refuses stays trapped, with one line', () => {
  const m = machine(eduConfig(), [0x10_0000]);
  m.vfio.refuse.add(0);
  m.cfgWrite(R.PCI_BASE_ADDRESS_0, 4, 0xd0000000);
  assert.match(m.log.at(-1)!, /hostdev0: BAR 0 at 0xd0000000 stays trapped: .*EEXIST/);
  m.vfio.memory.set(0, new Uint8Array(0x10_0000).fill(0xab));
  assert.is(m.mmioRead(0xd0000000, 1), 0xab);
});

test.run();
