import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  MP_ENTRY_BUS,
  MP_ENTRY_IOAPIC,
  MP_ENTRY_IO_INTERRUPT,
  MP_ENTRY_LOCAL_INTERRUPT,
  MP_ENTRY_PROCESSOR,
  MP_EXTINT,
  MP_INT,
  MP_IRQ_CONFORMS,
  MP_IRQ_LEVEL_HIGH,
  MP_IRQ_LEVEL_LOW,
  MP_NMI,
  buildMpTable,
  type MpTableConfig,
} from './mptable.js';
import { BIOS_AREA_LAYOUT, buildAcpiTables } from './acpi/tables.js';
import { intxGsi } from '../../devices/pci/bus.js';
import { acpiPmPorts } from '../../devices/acpi-pm.js';
import { ArrayGuestMemory } from './testing/array-memory.js';

const MiB = 2 ** 20;
const RAM = [{ start: 0, size: 64 * MiB }];

function config(over: Partial<MpTableConfig> = {}): MpTableConfig {
  return { cpus: 2, placement: BIOS_AREA_LAYOUT.mp, ram: RAM, sciIrq: 9, pci: {}, ...over };
}

const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);
const text = (b: Uint8Array) => String.fromCharCode(...b);

interface Parsed {
  pointerAt: number;
  specRev: number;
  features: number[];
  lapic: number;
  oem: string;
  processors: { apicId: number; version: number; flags: number }[];
  buses: { id: number; type: string }[];
  ioapics: { id: number; version: number; flags: number; address: number }[];
  io: { type: number; flags: number; bus: number; irq: number; apic: number; pin: number }[];
  local: { type: number; flags: number; bus: number; irq: number; apic: number; lint: number }[];
  types: number[];
}

/** What Linux does: scan 0xF0000-0xFFFFF on 16-byte boundaries for a valid floating pointer, then walk the table. */
function scanAndParse(mem: ArrayGuestMemory): Parsed {
  let pointerAt = -1;
  for (let a = 0xf0000; a < 0x100000; a += 16) {
    const p = mem.read(a, 16);
    if (text(p.subarray(0, 4)) === '_MP_' && p[8] === 1 && sum(p) === 0) {
      pointerAt = a;
      break;
    }
  }
  assert.ok(pointerAt >= 0, 'no valid MP floating pointer in the BIOS area');
  const p = mem.read(pointerAt, 16);
  const configAt = new DataView(p.buffer).getUint32(4, true);
  const head = mem.read(configAt, 44);
  const hv = new DataView(head.buffer);
  assert.is(text(head.subarray(0, 4)), 'PCMP');
  const length = hv.getUint16(4, true);
  const table = mem.read(configAt, length);
  assert.is(sum(table), 0, 'configuration table checksum');
  const v = new DataView(table.buffer);
  const out: Parsed = {
    pointerAt,
    specRev: p[9],
    features: Array.from(p.subarray(11, 16)),
    lapic: v.getUint32(36, true),
    oem: text(table.subarray(8, 16)),
    processors: [],
    buses: [],
    ioapics: [],
    io: [],
    local: [],
    types: [],
  };
  assert.is(v.getUint16(40, true), 0, 'no extended table');
  let at = 44;
  const count = v.getUint16(34, true);
  for (let i = 0; i < count; i++) {
    const type = table[at];
    out.types.push(type);
    switch (type) {
      case MP_ENTRY_PROCESSOR:
        out.processors.push({ apicId: table[at + 1], version: table[at + 2], flags: table[at + 3] });
        at += 20;
        break;
      case MP_ENTRY_BUS:
        out.buses.push({ id: table[at + 1], type: text(table.subarray(at + 2, at + 8)) });
        at += 8;
        break;
      case MP_ENTRY_IOAPIC:
        out.ioapics.push({
          id: table[at + 1],
          version: table[at + 2],
          flags: table[at + 3],
          address: v.getUint32(at + 4, true),
        });
        at += 8;
        break;
      case MP_ENTRY_IO_INTERRUPT:
        out.io.push({
          type: table[at + 1],
          flags: v.getUint16(at + 2, true),
          bus: table[at + 4],
          irq: table[at + 5],
          apic: table[at + 6],
          pin: table[at + 7],
        });
        at += 8;
        break;
      case MP_ENTRY_LOCAL_INTERRUPT:
        out.local.push({
          type: table[at + 1],
          flags: v.getUint16(at + 2, true),
          bus: table[at + 4],
          irq: table[at + 5],
          apic: table[at + 6],
          lint: table[at + 7],
        });
        at += 8;
        break;
      default:
        assert.unreachable(`unknown entry type ${type}`);
    }
  }
  assert.is(at, length, 'entries fill the table exactly');
  return out;
}

function place(over: Partial<MpTableConfig> = {}) {
  const mem = new ArrayGuestMemory(RAM);
  const t = buildMpTable(config(over));
  for (const b of t.blobs) mem.write(b.gpa, b.bytes);
  return { mem, t, parsed: scanAndParse(mem) };
}

test('mptable: the floating pointer is found in the BIOS area, MP 1.4, with a configuration table and both checksums right', () => {
  const { t, parsed } = place();
  assert.is(parsed.pointerAt, BIOS_AREA_LAYOUT.mp.base);
  assert.is(t.floatingPointerAddress, parsed.pointerAt);
  assert.is(parsed.specRev, 4);
  assert.equal(parsed.features, [0, 0, 0, 0, 0]); // config table present, virtual-wire mode
  assert.is(parsed.lapic, 0xfee00000);
  assert.is(parsed.oem, 'TSVMM   ');
});

test('mptable: entries come in type order: processors, buses, IOAPIC, I/O interrupts, local interrupts', () => {
  const { parsed } = place({ cpus: 3 });
  const sorted = [...parsed.types].sort((a, b) => a - b);
  assert.equal(parsed.types, sorted);
});

test('mptable: one enabled processor per vCPU, APIC IDs 0..n-1, only vCPU 0 is the bootstrap processor', () => {
  const { parsed } = place({ cpus: 4 });
  assert.equal(
    parsed.processors.map((p) => p.apicId),
    [0, 1, 2, 3],
  );
  assert.equal(
    parsed.processors.map((p) => p.flags),
    [3, 1, 1, 1],
  );
  assert.ok(parsed.processors.every((p) => p.version === 0x14));
});

test('mptable: PCI is bus 0, ISA bus 1; the IOAPIC is ID 0 at 0xFEC00000', () => {
  const { parsed } = place();
  assert.equal(parsed.buses, [
    { id: 0, type: 'PCI   ' },
    { id: 1, type: 'ISA   ' },
  ]);
  assert.equal(parsed.ioapics, [{ id: 0, version: 0x11, flags: 1, address: 0xfec00000 }]);
});

test('mptable: ISA IRQ 0 goes to pin 2, the 8259 ExtINT to pin 0, IRQ 2 is absent, the SCI is level/active-high', () => {
  const { parsed } = place();
  const isa = parsed.io.filter((e) => e.bus === 1);
  assert.equal(
    isa.filter((e) => e.type === MP_EXTINT),
    [{ type: MP_EXTINT, flags: MP_IRQ_CONFORMS, bus: 1, irq: 0, apic: 0, pin: 0 }],
  );
  const ints = isa.filter((e) => e.type === MP_INT);
  assert.equal(
    ints.map((e) => e.irq),
    [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  );
  for (const e of ints) {
    assert.is(e.pin, e.irq === 0 ? 2 : e.irq, `IRQ ${e.irq}`);
    assert.is(e.flags, e.irq === 9 ? MP_IRQ_LEVEL_HIGH : MP_IRQ_CONFORMS, `IRQ ${e.irq} flags`);
  }
});

test('mptable: every PCI slot and pin routes level/active-low to the same GSI as the DSDT _PRT', () => {
  const { parsed } = place();
  const pci = parsed.io.filter((e) => e.bus === 0);
  assert.is(pci.length, 128);
  for (const e of pci) {
    assert.is(e.type, MP_INT);
    assert.is(e.flags, MP_IRQ_LEVEL_LOW);
    assert.is(e.pin, intxGsi(e.irq >> 2, (e.irq & 3) + 1));
  }
  const custom = place({ pci: { intx: { firstGsi: 20, gsiCount: 4 } } }).parsed.io.filter((e) => e.bus === 0);
  assert.ok(custom.every((e) => e.pin === 20 + (((e.irq >> 2) + (e.irq & 3)) % 4)));
});

test('mptable: LINT0 carries ExtINT and LINT1 NMI on every local APIC', () => {
  const { parsed } = place();
  assert.equal(
    parsed.local.map((e) => [e.type, e.apic, e.lint]),
    [
      [MP_EXTINT, 0xff, 0],
      [MP_NMI, 0xff, 1],
    ],
  );
});

test('mptable: without PCI there is only the ISA bus (ID 0) and no PCI interrupt entries', () => {
  const { parsed } = place({ pci: undefined });
  assert.equal(parsed.buses, [{ id: 0, type: 'ISA   ' }]);
  assert.ok(parsed.io.every((e) => e.bus === 0) && parsed.io.length === 16);
});

test('mptable: 255 CPUs fit the BIOS-area layout next to the ACPI tables; bad configurations are refused', () => {
  const mem = new ArrayGuestMemory(RAM);
  const acpi = buildAcpiTables({
    cpus: 255,
    ram: RAM,
    pm: acpiPmPorts(),
    sciIrq: 9,
    serial: [],
    i8042: true,
    placement: BIOS_AREA_LAYOUT,
    pci: { windows: { io: [{ base: 0x1000, size: 0xf000 }], mmio32: { base: 0xc0000000, size: 0x3ec00000 } } },
  });
  const mp = buildMpTable(config({ cpus: 255 }));
  for (const b of [...acpi.blobs, ...mp.blobs]) mem.write(b.gpa, b.bytes);
  assert.is(scanAndParse(mem).processors.length, 255);
  assert.throws(() => buildMpTable(config({ cpus: 256 })), /CPUs/);
  assert.throws(() => buildMpTable(config({ placement: { base: 0xf0048, size: 0x1000 } })), /aligned/);
  assert.throws(() => buildMpTable(config({ placement: { base: 0xf0040, size: 0x100 } })), /needs/);
  assert.throws(() => buildMpTable(config({ ram: [{ start: 0, size: 0xa0000 }] })), /RAM/);
  assert.throws(() => buildMpTable(config({ sciIrq: 2 })), /SCI/);
});

test.run();
