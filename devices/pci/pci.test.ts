import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bytes, newRecord, type Descriptor, type StateOf } from '../../cpr/vmstate/vmstate.js';
import { MmioBus, PioBus } from '../../src/bus/bus.js';
import type { IoHandler, MachineControl } from '../../src/bus/types.js';
import { PciBus, intxGsi, type PciWindows } from './bus.js';
import { PciConfigSpace } from './config-space.js';
import { PciHostBridge, pciHostState } from './host-bridge.js';
import { MsixCapability, msixFields } from './msix.js';
import type { MappedBar, PciFunction } from './types.js';
import * as R from './constants.js';
import { FakeIrqLines, FakeMsi } from './testing/fakes.js';
import { allocateBars, VIRTIO_PCI_BAR_REQUESTS, defaultPciHostConfig } from '../../src/machine/pci-plan.js';
import { pciRoutingTable } from '../../src/boot/acpi/platform.js';

const WINDOWS: PciWindows = {
  mmio32: { base: 0xc000_0000, size: 0x2000_0000 },
  mmio64: { base: 0x1_0000_0000, size: 0x1_0000_0000 },
  io: { base: 0xc000, size: 0x4000 },
};
const ECAM = 0xe000_0000;

const fnState = {
  name: 'test-fn',
  version: 1,
  fields: [bytes('config', 4096), ...msixFields(8)],
} as const satisfies Descriptor;
type FnRecord = StateOf<typeof fnState>;

/** A function with one BAR of each kind: BAR0 32-bit MMIO holding MSI-X, BAR2 64-bit MMIO scratch, BAR4 I/O. */
class TestFunction implements PciFunction {
  readonly config: PciConfigSpace;
  readonly msix: MsixCapability;
  readonly scratch = new Uint32Array(0x1000);
  readonly mapped: (MappedBar | null)[][] = [];
  private readonly handlers: IoHandler[] = [];

  constructor(
    readonly name: string,
    state: FnRecord,
    msi: FakeMsi,
    bars: { b0?: number; b2?: number; b4?: number } = {},
  ) {
    this.config = new PciConfigSpace(
      state.config,
      { vendorId: 0x1234, deviceId: 0x5678, revision: 2, classCode: 0xff0000, interruptPin: 1 },
      { command: R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO },
    );
    this.config.defineBar(0, { kind: 'mmio32', size: 0x1000 }, bars.b0 ?? 0);
    this.config.defineBar(2, { kind: 'mmio64', size: 0x4000, prefetchable: true }, bars.b2 ?? 0);
    this.config.defineBar(4, { kind: 'io', size: 0x20 }, bars.b4 ?? 0);
    this.msix = new MsixCapability(
      this.config,
      { vectors: 8, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x800 },
      state.msixTable,
      state.msixPba,
      msi,
    );
    this.handlers[0] = this.msix.barHandler(0);
    this.handlers[2] = {
      read: (o) => this.scratch[o >> 2],
      write: (o, _s, v) => {
        this.scratch[o >> 2] = v;
      },
    };
    this.handlers[4] = { read: (o) => 0xa0 + o, write: () => {} };
  }

  bar(i: number): IoHandler | undefined {
    return this.handlers[i];
  }

  configWritten(offset: number, size: number): void {
    this.msix.configWritten(offset, size);
  }

  barsMapped(bars: readonly (MappedBar | null)[]): void {
    this.mapped.push([...bars]);
  }

  reset(): void {
    this.config.reset();
    this.msix.reset();
  }
}

interface Rig {
  pio: PioBus;
  mmio: MmioBus;
  bus: PciBus;
  fn: TestFunction;
  fnState: FnRecord;
  hostState: StateOf<typeof pciHostState>;
  irqs: FakeIrqLines;
  msi: FakeMsi;
  resets: string[];
}

function rig(slot = 3, bars = { b0: 0xc000_1000, b2: 0xc000_4000, b4: 0xc040 }): Rig {
  const irqs = new FakeIrqLines();
  const hostState = newRecord(pciHostState);
  const resets: string[] = [];
  const machine = { reset: (r: string) => resets.push(r) } as unknown as MachineControl;
  const bus = new PciBus(hostState, WINDOWS, irqs.line);
  const host = new PciHostBridge(hostState, { windows: WINDOWS, ecam: { base: ECAM, buses: 1 } }, bus, machine);
  const state = newRecord(fnState);
  const msi = new FakeMsi(8);
  const fn = new TestFunction('test', state, msi, bars);
  const attached = bus.attach(slot, fn);
  host.reset();
  fn.reset();
  attached.configChanged();
  const pio = new PioBus();
  const mmio = new MmioBus();
  for (const r of host.regions()) (r.space === 'pio' ? pio : mmio).add(r);
  return { pio, mmio, bus, fn, fnState: state, hostState, irqs, msi, resets };
}

const cf8 = (bus: number, dev: number, fn: number, reg: number) =>
  (0x8000_0000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;

function type1Read(r: Rig, dev: number, reg: number, size: 1 | 2 | 4, bus = 0, fn = 0): number {
  r.pio.write(R.PCI_CONFIG_ADDRESS_PORT, 4, cf8(bus, dev, fn, reg));
  return r.pio.read(R.PCI_CONFIG_DATA_PORT + (reg & 3), size) >>> 0; // PioBus masks with & (signed)
}

function type1Write(r: Rig, dev: number, reg: number, size: 1 | 2 | 4, value: number): void {
  r.pio.write(R.PCI_CONFIG_ADDRESS_PORT, 4, cf8(0, dev, 0, reg));
  r.pio.write(R.PCI_CONFIG_DATA_PORT + (reg & 3), size, value);
}

const ecamAddress = (dev: number, reg: number, bus = 0, fn = 0) =>
  ECAM + ((bus << 20) | (dev << 15) | (fn << 12) | reg);
const ecamRead = (r: Rig, dev: number, reg: number, size: 1 | 2 | 4) =>
  Number(r.mmio.read(ecamAddress(dev, reg), size));
const ecamWrite = (r: Rig, dev: number, reg: number, size: 1 | 2 | 4, v: number) =>
  r.mmio.write(ecamAddress(dev, reg), size, v);

test('pci: the type-1 mechanism and ECAM read the same bytes at every width and offset', () => {
  const r = rig();
  for (const dev of [0, 3]) {
    for (let reg = 0; reg < 0x100; reg++) {
      for (const size of [1, 2, 4] as const) {
        if ((reg & 3) + size > 4) continue; // one dword per CONFIG_DATA access
        assert.is(
          type1Read(r, dev, reg, size),
          ecamRead(r, dev, reg, size),
          `dev ${dev} reg 0x${reg.toString(16)} size ${size}`,
        );
      }
    }
  }
  assert.is(type1Read(r, 3, R.PCI_VENDOR_ID, 2), 0x1234);
  assert.is(ecamRead(r, 3, R.PCI_DEVICE_ID, 2), 0x5678);
  assert.is(
    ecamRead(r, 0, R.PCI_VENDOR_ID, 4),
    ((R.PCI_DEVICE_ID_REDHAT_PCIE_HOST << 16) | R.PCI_VENDOR_ID_REDHAT) >>> 0,
    'the host bridge is 00:00.0',
  );
  // A write through one mechanism is seen through the other.
  type1Write(r, 3, R.PCI_INTERRUPT_LINE, 1, 0x0b);
  assert.is(ecamRead(r, 3, R.PCI_INTERRUPT_LINE, 1), 0x0b);
  ecamWrite(r, 3, R.PCI_CACHE_LINE_SIZE, 1, 0x10);
  assert.is(type1Read(r, 3, R.PCI_CACHE_LINE_SIZE, 1), 0x10);
  // A 64-bit ECAM read is split into two dwords by the MMIO bus.
  assert.is(r.mmio.read(ecamAddress(3, 0), 8), (BigInt(ecamRead(r, 3, 4, 4)) << 32n) | BigInt(ecamRead(r, 3, 0, 4)));
});

test('pci: an empty slot, a non-zero function, another bus or a disabled CONFIG_ADDRESS reads all-ones; writes vanish', () => {
  const r = rig();
  assert.is(type1Read(r, 5, 0, 4), 0xffffffff);
  assert.is(type1Read(r, 3, 0, 2, 0, 1), 0xffff);
  assert.is(type1Read(r, 3, 0, 4, 1, 0), 0xffffffff);
  assert.is(ecamRead(r, 31, 0, 4), 0xffffffff);
  assert.is(Number(r.mmio.read(ECAM + (1 << 20), 4)), 0xffffffff, 'outside a one-bus ECAM window: no device');
  r.pio.write(R.PCI_CONFIG_ADDRESS_PORT, 4, 3 << 11); // enable bit clear
  assert.is(r.pio.read(R.PCI_CONFIG_DATA_PORT, 4) >>> 0, 0xffffffff);
  type1Write(r, 5, R.PCI_COMMAND, 2, 0xffff);
  assert.is(type1Read(r, 5, R.PCI_COMMAND, 2), 0xffff);
  // CONFIG_ADDRESS latches dword writes only, and reads back without bits 1:0.
  r.pio.write(R.PCI_CONFIG_ADDRESS_PORT, 4, 0x8000_1803);
  assert.is(r.pio.read(R.PCI_CONFIG_ADDRESS_PORT, 4) >>> 0, 0x8000_1800);
  r.pio.write(R.PCI_CONFIG_ADDRESS_PORT, 2, 0);
  assert.is(r.pio.read(R.PCI_CONFIG_ADDRESS_PORT, 4) >>> 0, 0x8000_1800);
});

test('pci: BAR sizing — all-ones reads back the size mask and type bits for 32-bit, 64-bit and I/O BARs', () => {
  const r = rig();
  const bar = (i: number) => R.PCI_BASE_ADDRESS_0 + 4 * i;
  const saved = [0, 2, 3, 4].map((i) => ecamRead(r, 3, bar(i), 4));
  ecamWrite(r, 3, R.PCI_COMMAND, 2, 0); // as Linux does: decoding off while sizing
  for (const i of [0, 1, 2, 3, 4, 5]) ecamWrite(r, 3, bar(i), 4, 0xffffffff);
  assert.is(ecamRead(r, 3, bar(0), 4), 0xfffff000, '4 KiB 32-bit non-prefetchable');
  assert.is(ecamRead(r, 3, bar(1), 4), 0, 'an unused BAR is hard-wired to 0');
  assert.is(
    ecamRead(r, 3, bar(2), 4),
    (0xffffc000 | R.PCI_BASE_ADDRESS_MEM_TYPE_64 | R.PCI_BASE_ADDRESS_MEM_PREFETCH) >>> 0,
    '16 KiB 64-bit prefetchable',
  );
  assert.is(ecamRead(r, 3, bar(3), 4), 0xffffffff, 'upper half of a 64-bit BAR');
  assert.is(ecamRead(r, 3, bar(4), 4), (0xffffffe0 | R.PCI_BASE_ADDRESS_SPACE_IO) >>> 0, '32-byte I/O');
  assert.is(ecamRead(r, 3, R.PCI_ROM_ADDRESS, 4), 0, 'no expansion ROM');
  // Restore, decoding back on: the BARs decode where they were.
  for (const [k, i] of [0, 2, 3, 4].entries()) ecamWrite(r, 3, bar(i), 4, saved[k]);
  ecamWrite(r, 3, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO);
  r.mmio.write(0xc000_4010, 4, 0x1234_5678);
  assert.is(r.fn.scratch[4], 0x1234_5678);
  assert.is(r.pio.read(0xc045, 1), 0xa5, 'I/O BAR at 0xc040');
});

test('pci: moving a BAR moves its window (any thread sees it); COMMAND.MEM off stops decoding', () => {
  const r = rig();
  r.fn.scratch[0] = 0xcafe;
  assert.is(Number(r.mmio.read(0xc000_4000, 4)), 0xcafe);
  r.fn.mapped.length = 0;
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0 + 8, 4, 0xc100_0000);
  assert.is(Number(r.mmio.read(0xc000_4000, 4)), 0xffffffff, 'old address: nothing');
  assert.is(Number(r.mmio.read(0xc100_0000, 4)), 0xcafe, 'new address');
  assert.equal(r.fn.mapped.at(-1)![2], { index: 2, kind: 'mmio64', address: 0xc100_0000, size: 0x4000 });

  // A second thread's bus over the same records decodes the moved BAR too.
  const irqs = new FakeIrqLines();
  const bus2 = new PciBus(r.hostState, WINDOWS, irqs.line);
  const fn2 = new TestFunction('test', r.fnState, new FakeMsi(8));
  bus2.attach(3, fn2);
  const mmio2 = new MmioBus();
  for (const reg of bus2.regions()) if (reg.space === 'mmio') mmio2.add(reg);
  fn2.scratch[0] = 0xbeef;
  assert.is(Number(mmio2.read(0xc100_0000, 4)), 0xbeef);
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0 + 8, 4, 0xc200_0000); // thread 1 moves it again
  assert.is(Number(mmio2.read(0xc200_0000, 4)), 0xbeef, 'thread 2 follows the generation');

  // Above 4 GiB, in the 64-bit window.
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0 + 8, 4, 0x0000_8000 | 0xc);
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0 + 12, 4, 1);
  assert.is(Number(r.mmio.read(0x1_0000_8000, 4)), 0xcafe);

  ecamWrite(r, 3, R.PCI_COMMAND, 2, R.PCI_COMMAND_IO);
  assert.is(Number(r.mmio.read(0x1_0000_8000, 4)), 0xffffffff, 'memory decoding off');
  assert.is(r.fn.mapped.at(-1)![2], null);
  assert.is(r.fn.mapped.at(-1)![4]?.address, 0xc040, 'the I/O BAR still decodes');
});

test('pci: a BAR outside every host-bridge window (or at 0) does not decode', () => {
  const r = rig();
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0, 4, 0x8000_0000); // RAM, not a PCI window
  assert.is(r.fn.mapped.at(-1)![0], null);
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0, 4, 0);
  assert.is(r.fn.mapped.at(-1)![0], null);
  ecamWrite(r, 3, R.PCI_BASE_ADDRESS_0, 4, 0xdffff000); // the last page of the 32-bit window
  assert.is(r.fn.mapped.at(-1)![0]?.address, 0xdffff000);
});

test('pci: status error bits are write-1-to-clear; read-only registers and bits ignore writes', () => {
  const r = rig();
  r.fn.config.setStatusBits(R.PCI_STATUS_DETECTED_PARITY | R.PCI_STATUS_REC_MASTER_ABORT, true);
  const status = ecamRead(r, 3, R.PCI_STATUS, 2);
  assert.ok(status & R.PCI_STATUS_CAP_LIST);
  ecamWrite(r, 3, R.PCI_STATUS, 2, R.PCI_STATUS_REC_MASTER_ABORT);
  assert.is(
    ecamRead(r, 3, R.PCI_STATUS, 2),
    status & ~R.PCI_STATUS_REC_MASTER_ABORT,
    'only the bit written as 1 cleared',
  );
  ecamWrite(r, 3, R.PCI_STATUS, 2, 0);
  assert.is(ecamRead(r, 3, R.PCI_STATUS, 2), status & ~R.PCI_STATUS_REC_MASTER_ABORT, 'writing 0 changes nothing');
  ecamWrite(r, 3, R.PCI_STATUS, 2, 0xffff);
  assert.is(ecamRead(r, 3, R.PCI_STATUS, 2), R.PCI_STATUS_CAP_LIST, 'CAP_LIST is read-only');
  ecamWrite(r, 3, R.PCI_VENDOR_ID, 4, 0);
  assert.is(ecamRead(r, 3, R.PCI_VENDOR_ID, 2), 0x1234);
  ecamWrite(r, 3, R.PCI_COMMAND, 2, 0xffff);
  assert.is(
    ecamRead(r, 3, R.PCI_COMMAND, 2),
    R.PCI_COMMAND_IO |
      R.PCI_COMMAND_MEMORY |
      R.PCI_COMMAND_MASTER |
      R.PCI_COMMAND_PARITY |
      R.PCI_COMMAND_SERR |
      R.PCI_COMMAND_INTX_DISABLE,
  );
  ecamWrite(r, 3, R.PCI_INTERRUPT_PIN, 1, 4);
  assert.is(ecamRead(r, 3, R.PCI_INTERRUPT_PIN, 1), 1);
  assert.is(ecamRead(r, 3, 0x100, 4), 0xffffffff, 'a conventional function has no extended space');
});

test('pci: the capability list leads from 0x34 to an MSI-X capability that names its BAR, offsets and size', () => {
  const r = rig();
  const first = ecamRead(r, 3, R.PCI_CAPABILITY_LIST, 1);
  assert.is(first, 0x40);
  assert.is(ecamRead(r, 3, first, 1), R.PCI_CAP_ID_MSIX);
  assert.is(ecamRead(r, 3, first + 1, 1), 0, 'last in the list');
  assert.is(ecamRead(r, 3, first + R.PCI_MSIX_FLAGS, 2), 7, '8 vectors, disabled, not masked');
  assert.is(ecamRead(r, 3, first + R.PCI_MSIX_TABLE, 4), 0);
  assert.is(ecamRead(r, 3, first + R.PCI_MSIX_PBA, 4), 0x800);
  ecamWrite(r, 3, first + R.PCI_MSIX_FLAGS, 2, 0xffff);
  assert.is(ecamRead(r, 3, first + R.PCI_MSIX_FLAGS, 2), 0xc007, 'only enable and function mask are writable');
});

test('pci: extended capabilities chain from 0x100 in a 4096-byte space', () => {
  const record = newRecord(fnState);
  const c = new PciConfigSpace(record.config, { vendorId: 1, deviceId: 2, revision: 0, classCode: 0 }, { size: 4096 });
  const a = c.addExtendedCapability(0x0001, 1, 0x40);
  const b = c.addExtendedCapability(0x000b, 2, 0x10);
  c.reset();
  assert.is(a, 0x100);
  assert.is(c.read(a, 4), R.pciExtCapHeader(0x0001, 1, b));
  assert.is(c.read(b, 4), R.pciExtCapHeader(0x000b, 2, 0));
  assert.is(c.read(0xffc, 4), 0, 'inside the space');
});

/** MSI-X on, bus mastering on, vector v programmed (and left masked). */
function msixUp(r: Rig, vectors: number[]): number {
  const cap = 0x40;
  ecamWrite(r, 3, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER);
  ecamWrite(r, 3, cap + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE);
  for (const v of vectors) {
    const at = 0xc000_1000 + 16 * v;
    r.mmio.write(at + R.PCI_MSIX_ENTRY_LOWER_ADDR, 4, 0xfee0_0000);
    r.mmio.write(at + R.PCI_MSIX_ENTRY_UPPER_ADDR, 4, 0);
    r.mmio.write(at + R.PCI_MSIX_ENTRY_DATA, 4, 0x40 + v);
  }
  return cap;
}

test('msix: every vector starts masked; a masked vector sets its PBA bit and unmasking delivers it once', () => {
  const r = rig();
  msixUp(r, [2]);
  const ctrl = 0xc000_1000 + 16 * 2 + R.PCI_MSIX_ENTRY_VECTOR_CTRL;
  assert.is(Number(r.mmio.read(ctrl, 4)), 1, 'masked after reset');
  assert.ok(r.fn.msix.notify(2));
  assert.equal(r.msi.fired, []);
  assert.is(Number(r.mmio.read(0xc000_1800, 4)), 1 << 2, 'pending in the PBA');
  r.mmio.write(0xc000_1800, 4, 0); // the PBA is read-only
  assert.is(Number(r.mmio.read(0xc000_1800, 4)), 1 << 2);
  r.mmio.write(ctrl, 4, 0);
  assert.equal(r.msi.fired, [2]);
  assert.equal(r.msi.routes.get(2), { address: 0xfee0_0000n, data: 0x42 });
  assert.is(Number(r.mmio.read(0xc000_1800, 4)), 0, 'no longer pending');
  r.fn.msix.notify(2);
  assert.equal(r.msi.fired, [2, 2], 'unmasked: delivered at once');
});

test('msix: the function mask holds every vector; clearing it releases the pending ones', () => {
  const r = rig();
  const cap = msixUp(r, [0, 5]);
  for (const v of [0, 5]) r.mmio.write(0xc000_1000 + 16 * v + 12, 4, 0);
  ecamWrite(r, 3, cap + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL);
  r.fn.msix.notify(5);
  r.fn.msix.notify(0);
  assert.equal(r.msi.fired, []);
  assert.is(Number(r.mmio.read(0xc000_1800, 4)), 0b100001);
  ecamWrite(r, 3, cap + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE);
  assert.equal(r.msi.fired, [0, 5]);
});

test('msix: disabled means INTx (notify is false); no bus mastering or a non-LAPIC address delivers nothing', () => {
  const r = rig();
  assert.is(r.fn.msix.notify(0), false);
  msixUp(r, [1]);
  r.mmio.write(0xc000_1000 + 16 + 12, 4, 0);
  ecamWrite(r, 3, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
  assert.ok(r.fn.msix.notify(1));
  assert.equal(r.msi.fired, [], 'bus mastering off: an MSI is a memory write that cannot happen');
  ecamWrite(r, 3, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER);
  r.mmio.write(0xc000_1000 + 16, 4, 0x1000); // a RAM address
  r.fn.msix.notify(1);
  assert.equal(r.msi.fired, []);
  assert.ok(r.fn.msix.notify(99), 'an out-of-range vector is ignored');
});

test('msix: table writes are bounded and vector control keeps only the mask bit', () => {
  const r = rig();
  msixUp(r, []);
  r.mmio.write(0xc000_1000 + 16 * 3 + 12, 4, 0xffff_fffe);
  assert.is(Number(r.mmio.read(0xc000_1000 + 16 * 3 + 12, 4)), 0);
  r.mmio.write(0xc000_1000 + 16 * 8, 4, 0x1234); // one past the last entry
  assert.is(Number(r.mmio.read(0xc000_1000 + 16 * 8, 4)), 0);
  assert.ok(r.fnState.msixTable.length >= 128 && r.fnState.msixTable.subarray(128).every((b) => b === 0));
  // Byte and 64-bit accesses reach the same entry.
  r.mmio.write(0xc000_1000 + 16 * 4, 8, 0x0000_0001_fee0_1000n);
  assert.is(Number(r.mmio.read(0xc000_1000 + 16 * 4 + 4, 4)), 1);
  assert.is(Number(r.mmio.read(0xc000_1000 + 16 * 4 + 1, 1)), 0x10);
});

test('pci: INTx — functions sharing a GSI are OR-ed, INTX_DISABLE silences one, STATUS.INTERRUPT still reports it', () => {
  const r = rig(3);
  const other = new TestFunction('other', newRecord(fnState), new FakeMsi(8));
  const slot11 = r.bus.attach(11, other);
  other.reset();
  const gsi = intxGsi(3, 1);
  assert.is(gsi, 19);
  assert.is(intxGsi(11, 1), 19, 'slot 11 INTA# shares it');
  slot11.intx.set(true);
  assert.is(r.irqs.level(gsi), true);
  assert.ok(other.config.u16(R.PCI_STATUS) & R.PCI_STATUS_INTERRUPT);
  r.bus.configWrite(0, 11, 0, R.PCI_COMMAND, 2, R.PCI_COMMAND_INTX_DISABLE);
  assert.is(r.irqs.level(gsi), false, 'disabled: the line drops');
  assert.ok(other.config.u16(R.PCI_STATUS) & R.PCI_STATUS_INTERRUPT, 'status still shows the pending interrupt');
  r.bus.configWrite(0, 11, 0, R.PCI_COMMAND, 2, 0);
  assert.is(r.irqs.level(gsi), true, 'enabled again: the line rises');
  slot11.intx.set(false);
  assert.is(r.irqs.level(gsi), false);
  const sets = r.irqs.sets.length;
  slot11.intx.set(false);
  assert.is(r.irqs.sets.length, sets, 'no ioctl when the level does not change');
});

test('pci: INTERRUPT_LINE comes out of reset naming the GSI the function drives, as firmware leaves it', () => {
  const r = rig(3);
  const other = new TestFunction('other', newRecord(fnState), new FakeMsi(8));
  r.bus.attach(6, other);
  other.reset();
  assert.is(r.bus.configRead(0, 6, 0, R.PCI_INTERRUPT_LINE, 1), intxGsi(6, 1));
  r.bus.configWrite(0, 6, 0, R.PCI_INTERRUPT_LINE, 1, 0x0b);
  assert.is(r.bus.configRead(0, 6, 0, R.PCI_INTERRUPT_LINE, 1), 0x0b, 'software may overwrite it');
  other.reset();
  assert.is(r.bus.configRead(0, 6, 0, R.PCI_INTERRUPT_LINE, 1), intxGsi(6, 1), 'a reset restores it');
});

test('pci: two functions on one GSI keep it high until both lower their pins', () => {
  const irqs = new FakeIrqLines();
  const host = newRecord(pciHostState);
  const bus = new PciBus(host, WINDOWS, irqs.line);
  const a = new TestFunction('a', newRecord(fnState), new FakeMsi(8));
  const b = new TestFunction('b', newRecord(fnState), new FakeMsi(8));
  const sa = bus.attach(2, a);
  const sb = bus.attach(10, b);
  a.reset();
  b.reset();
  sa.intx.set(true);
  sb.intx.set(true);
  sa.intx.set(false);
  assert.is(irqs.level(intxGsi(2, 1)), true, 'b still asserts');
  sb.intx.set(false);
  assert.is(irqs.level(intxGsi(2, 1)), false);
  // A restore re-drives every INTx GSI from the records.
  sa.intx.set(true);
  irqs.levels.clear();
  bus.restored();
  assert.is(irqs.level(intxGsi(2, 1)), true);
  assert.is(irqs.levels.size, 8, 'all eight GSIs driven');
});

test('pci: a byte write of RST_CPU to 0xcf9 asks the machine for a reset', () => {
  const r = rig();
  r.pio.write(R.PCI_RESET_CONTROL_PORT, 1, R.RCR_SYS_RST);
  assert.equal(r.resets, []);
  assert.is(r.pio.read(R.PCI_RESET_CONTROL_PORT, 1), R.RCR_SYS_RST);
  r.pio.write(R.PCI_RESET_CONTROL_PORT, 1, R.RCR_SYS_RST | R.RCR_RST_CPU);
  assert.is(r.resets.length, 1);
});

test('pci: attaching two functions to one slot, or to slot 32, is refused', () => {
  const r = rig();
  assert.throws(() => r.bus.attach(3, new TestFunction('x', newRecord(fnState), new FakeMsi(8))), /slot 3 is taken/);
  assert.throws(() => r.bus.attach(32, new TestFunction('x', newRecord(fnState), new FakeMsi(8))), /not 0\.\.31/);
});

test('pci plan: BARs are placed aligned inside their windows, 64-bit ones above 4 GiB only when asked', () => {
  assert.is(defaultPciHostConfig(6.5 * 2 ** 30).windows.mmio64?.base, 7 * 2 ** 30, 'first GiB boundary above RAM');
  assert.is(defaultPciHostConfig(2 ** 30).windows.mmio64?.base, 4 * 2 ** 30, 'never below 4 GiB');
  const config = defaultPciHostConfig(6 * 2 ** 30);
  const low = allocateBars([VIRTIO_PCI_BAR_REQUESTS, VIRTIO_PCI_BAR_REQUESTS], config.windows);
  for (const placed of low)
    for (const [i, at] of placed) {
      const size = VIRTIO_PCI_BAR_REQUESTS.find((b) => b.index === i)!.size;
      assert.is(at % size, 0);
      assert.ok(
        at >= config.windows.mmio32.base && at + size <= config.windows.mmio32.base + config.windows.mmio32.size,
      );
    }
  assert.not.equal(low[0].get(4), low[1].get(4));
  const high = allocateBars([VIRTIO_PCI_BAR_REQUESTS], config.windows, { place64Above4G: true });
  assert.is(high[0].get(4), config.windows.mmio64!.base);
  assert.is(high[0].get(1), config.windows.mmio32.base);
  assert.throws(() => allocateBars([[{ index: 0, kind: 'mmio32', size: 2 ** 30 }]], config.windows), /no room/);
});

test('pci plan: the _PRT table gives each slot and pin the GSI the bus drives', () => {
  const table = pciRoutingTable();
  assert.is(table.length, 128);
  assert.equal(
    table.find((e) => e.address === 0x0003ffff && e.pin === 0),
    { address: 0x0003ffff, pin: 0, gsi: 19 },
  );
  for (const e of table) assert.is(e.gsi, intxGsi(e.address >>> 16, e.pin + 1));
  assert.ok(table.every((e) => e.gsi >= 16 && e.gsi <= 23));
});

test.run();
