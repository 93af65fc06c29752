// A virtio-pci function behind the PCI host bridge, as a guest reaches it: config space through ECAM and the legacy
// 0xCF8/0xCFC ports (header, BARs, capability list, MSI-X capability), the MSI-X table and PBA, and the modern BAR
// (common config, ISR, device config, notifications) of devices/virtio/pci-transport.ts, with virtio-rng behind it.
// The input's first 2 KiB are guest RAM from address 0 (for the rings the guest points the queues at); the rest is
// a script of accesses. No access throws, and nothing the device does reaches outside RAM.
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { PciBus, type PciWindows } from '../../devices/pci/bus.js';
import * as P from '../../devices/pci/constants.js';
import { PciHostBridge, pciHostState } from '../../devices/pci/host-bridge.js';
import { FakeIoEvents, FakeIrqLines, FakeMsi } from '../../devices/pci/testing/fakes.js';
import * as V from '../../devices/virtio/pci-transport.js';
import { VirtioRng } from '../../devices/virtio/rng.js';
import { CheckedMemory } from '../../devices/virtio/testing/checked-memory.js';
import type { VirtioBackend } from '../../devices/virtio/types.js';
import { MmioBus, PioBus } from '../../src/bus/bus.js';
import type { AccessSize } from '../../src/bus/types.js';
import { ByteScript } from '../support/bytes.js';
import { invariant } from '../support/contract.js';

export const instrumented = ['devices/pci/', 'devices/virtio/pci-transport.js', 'devices/virtio/queue.js'];

const WINDOWS: PciWindows = {
  mmio32: { base: 0xc000_0000, size: 0x2000_0000 },
  mmio64: null,
  io: { base: 0xc000, size: 0x4000 },
};
const ECAM = 0xe000_0000;
const SLOT = 3;
const BARS = { msix: 0xc000_0000, modern: 0xc000_4000 };
const RAM_IMAGE = 2048;
/** Where an access goes: config space (ECAM, of the bridge, our function or an empty slot), the two BARs, 0xCF8. */
const TARGETS = ['ecam', 'modern', 'msix', 'cf8'] as const;

function machine(memory: CheckedMemory) {
  const hostState = newRecord(pciHostState);
  const irqs = new FakeIrqLines();
  const bus = new PciBus(hostState, WINDOWS, irqs.line);
  const host = new PciHostBridge(hostState, { windows: WINDOWS, ecam: { base: ECAM, buses: 1 } }, bus);
  const transport = new V.VirtioPciTransport(newRecord(V.virtioPciState), new VirtioRng() as VirtioBackend, {
    pci: bus,
    slot: SLOT,
    memory,
    msi: new FakeMsi(3),
    notify: new FakeIoEvents(2),
    bars: BARS,
    name: 'rng',
    log: () => {},
    ioeventfd: false,
  });
  const pio = new PioBus();
  const mmio = new MmioBus();
  for (const r of host.regions()) (r.space === 'pio' ? pio : mmio).add(r);
  host.reset();
  transport.reset();
  host.restored();
  transport.restored();
  return { pio, mmio };
}

function address(target: (typeof TARGETS)[number], s: ByteScript): number {
  switch (target) {
    case 'ecam':
      return ECAM + (s.pick([0, SLOT, 5]) << 15) + (s.u16() % 4096);
    case 'modern':
      return BARS.modern + (s.u16() % V.VIRTIO_PCI_MODERN_BAR_SIZE);
    case 'msix':
      return BARS.msix + (s.u16() % V.VIRTIO_PCI_MSIX_BAR_SIZE);
    case 'cf8':
      return 0xcf8 + (s.u8() % 8);
  }
}

export function fuzz(data: Uint8Array): void {
  const memory = new CheckedMemory(64 << 10);
  memory.write(0, data.subarray(0, RAM_IMAGE));
  const { pio, mmio } = machine(memory);
  const s = new ByteScript(data.subarray(RAM_IMAGE));
  while (!s.done) {
    const op = s.u8();
    const target = TARGETS[(op >> 1) & 3];
    const size = ([1, 2, 4] as const)[(op >> 3) % 3] as AccessSize;
    const at = address(target, s);
    const bus = target === 'cf8' ? pio : mmio;
    if (op & 1) bus.write(at, size, size === 1 ? s.u8() : size === 2 ? s.u16() : s.u32());
    else bus.read(at, size);
  }
  invariant(memory.violations.length === 0, `access outside RAM: ${JSON.stringify(memory.violations[0])}`);
}

// ---- seeds: a driver's probe and set-up, as accesses in the script's encoding ----

const le = (v: number, n: number) => Array.from({ length: n }, (_, i) => (v >>> (8 * i)) & 0xff);
const SIZE_CODE = { 1: 0, 2: 1, 4: 2 } as const;
function access(target: (typeof TARGETS)[number], write: boolean, size: 1 | 2 | 4, where: number[], value = 0) {
  const op = (write ? 1 : 0) | (TARGETS.indexOf(target) << 1) | (SIZE_CODE[size] << 3);
  return [op, ...where, ...(write ? le(value, size) : [])];
}
const cfg = (write: boolean, size: 1 | 2 | 4, reg: number, value = 0) =>
  access('ecam', write, size, [1, ...le(reg, 2)], value); // slot index 1 of [0, SLOT, 5]
const common = (write: boolean, size: 1 | 2 | 4, reg: number, value = 0) =>
  access('modern', write, size, le(V.VIRTIO_PCI_COMMON_OFFSET + reg, 2), value);

export const seeds = (): Uint8Array[] => {
  const ram = new Uint8Array(RAM_IMAGE);
  const probe = [
    ...cfg(false, 4, 0),
    ...cfg(false, 1, P.PCI_CAPABILITY_LIST),
    ...cfg(true, 4, 0x10, 0xffffffff), // BAR sizing
    ...cfg(false, 4, 0x10),
    ...cfg(true, 2, P.PCI_COMMAND, P.PCI_COMMAND_MEMORY | P.PCI_COMMAND_MASTER),
  ];
  const setup = [
    ...common(true, 1, V.VIRTIO_PCI_COMMON_STATUS, 0),
    ...common(true, 1, V.VIRTIO_PCI_COMMON_STATUS, 3),
    ...common(true, 4, V.VIRTIO_PCI_COMMON_GFSELECT, 1),
    ...common(true, 4, V.VIRTIO_PCI_COMMON_GF, 1),
    ...common(true, 1, V.VIRTIO_PCI_COMMON_STATUS, 11),
    ...common(true, 2, V.VIRTIO_PCI_COMMON_Q_SELECT, 0),
    ...common(true, 2, V.VIRTIO_PCI_COMMON_Q_SIZE, 8),
    ...common(true, 4, V.VIRTIO_PCI_COMMON_Q_DESCLO, 0x100),
    ...common(true, 4, V.VIRTIO_PCI_COMMON_Q_AVAILLO, 0x200),
    ...common(true, 4, V.VIRTIO_PCI_COMMON_Q_USEDLO, 0x300),
    ...common(true, 2, V.VIRTIO_PCI_COMMON_Q_ENABLE, 1),
    ...common(true, 1, V.VIRTIO_PCI_COMMON_STATUS, 15),
    ...access('modern', true, 2, le(V.VIRTIO_PCI_NOTIFY_OFFSET, 2), 0),
    ...access('modern', false, 1, le(V.VIRTIO_PCI_ISR_OFFSET, 2)),
  ];
  const msix = [
    ...access('msix', true, 4, le(0, 2), 0xfee00000),
    ...access('msix', true, 4, le(8, 2), 0x41),
    ...access('msix', true, 4, le(12, 2), 0),
    ...access('msix', false, 4, le(V.VIRTIO_PCI_MSIX_PBA_OFFSET, 2)),
  ];
  // one descriptor (0x400, 64 bytes, device-writable) in the table, the avail ring offering it
  const v = new DataView(ram.buffer);
  v.setBigUint64(0x100, 0x400n, true);
  v.setUint32(0x108, 64, true);
  v.setUint16(0x10c, 2, true);
  v.setUint16(0x202, 1, true);
  return [
    Uint8Array.from([...ram, ...probe]),
    Uint8Array.from([...ram, ...probe, ...setup]),
    Uint8Array.from([...ram, ...probe, ...msix, ...setup]),
    Uint8Array.from([...ram, ...access('cf8', true, 4, [0], 0x80001800), ...access('cf8', false, 4, [4])]),
  ];
};
