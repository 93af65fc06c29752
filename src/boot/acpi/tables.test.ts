import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BIOS_AREA_LAYOUT,
  FADT_LENGTH,
  acpiTable,
  buildAcpiTables,
  checksum8,
  type AcpiConfig,
  type AcpiTables,
} from './tables.js';
import { intxGsi } from '../../../devices/pci/bus.js';
import { readWakingVector } from './facs.js';
import { AcpicaDir, acpicaMissing, problems } from './testing/iasl.js';
import { acpiPmPorts } from '../../../devices/acpi-pm.js';
import { ArrayGuestMemory } from '../testing/array-memory.js';
import { testIf } from '../../../test/support/skip.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** A QEMU-like PC: 2 GiB below the hole and 1 GiB above 4 GiB, COM1/COM2, i8042, PCIe with ECAM at 0xB0000000. */
function config(over: Partial<AcpiConfig> = {}): AcpiConfig {
  return {
    cpus: 4,
    ram: [
      { start: 0, size: 2 * GiB },
      { start: 4 * GiB, size: GiB },
    ],
    pm: acpiPmPorts(0x600),
    sciIrq: 9,
    pci: {
      windows: {
        io: [{ base: 0x1000, size: 0xf000 }],
        mmio32: { base: 0xc0000000, size: 0xfec00000 - 0xc0000000 },
        mmio64: { base: 8 * GiB, size: 32 * GiB },
      },
    },
    ecam: { base: 0xb0000000, endBus: 0xff },
    serial: [
      { base: 0x3f8, irq: 4 },
      { base: 0x2f8, irq: 3 },
    ],
    i8042: true,
    placement: BIOS_AREA_LAYOUT,
    ...over,
  };
}

const blob = (t: AcpiTables, name: string) => {
  const b = t.blobs.find((x) => x.name === name);
  if (!b) throw new Error(`no ${name} blob`);
  return b;
};
const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);
const u64 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getBigUint64(at, true);
const sig = (b: Uint8Array) => String.fromCharCode(...b.subarray(0, 4));

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Values of `[offset] Label : value` lines in an iasl data-table disassembly. */
function fields(dsl: string, label: string): string[] {
  const re = new RegExp(`^\\[[^\\]]+\\]\\s+${escapeRegExp(label)} : (.*?)\\s*$`, 'gm');
  return [...dsl.matchAll(re)].map((m) => m[1]);
}

/** Lines `Label : value` of iasl's bit-field decodings (no offset column). */
function decoded(dsl: string, label: string): string | undefined {
  return new RegExp(`^\\s+${escapeRegExp(label)} : (\\S+)`, 'm').exec(dsl)?.[1];
}

// ---- structure without the tools ------------------------------------------------------------------------------

test('acpi: every table checksums to zero and the RSDP has both checksums right', () => {
  const t = buildAcpiTables(config());
  for (const b of t.blobs) {
    if (b.name === 'RSDP') {
      assert.is(checksum8(b.bytes, 0, 20), 0, 'RSDP v1 checksum');
      assert.is(checksum8(b.bytes), 0, 'RSDP extended checksum');
    } else if (b.name !== 'FACS') {
      assert.is(u32(b.bytes, 4), b.bytes.length, `${b.name} length`);
      assert.is(checksum8(b.bytes), 0, `${b.name} checksum`);
    }
  }
});

test('acpi: the pointers link up: RSDP → RSDT/XSDT → FADT, MADT, MCFG; FADT → FACS and DSDT (32 and 64 bit)', () => {
  const t = buildAcpiTables(config());
  const at = (gpa: number) => t.blobs.find((b) => b.gpa === gpa)!;
  const rsdp = blob(t, 'RSDP').bytes;
  assert.is(t.rsdpAddress, 0xf0000);
  assert.is(String.fromCharCode(...rsdp.subarray(0, 8)), 'RSD PTR ');
  assert.is(rsdp[15], 2);
  const xsdt = at(Number(u64(rsdp, 24))).bytes;
  const rsdt = at(u32(rsdp, 16)).bytes;
  assert.is(sig(xsdt), 'XSDT');
  assert.is(sig(rsdt), 'RSDT');
  const listed = Array.from({ length: (xsdt.length - 36) / 8 }, (_, i) => Number(u64(xsdt, 36 + 8 * i)));
  assert.equal(
    listed.map((a) => sig(at(a).bytes)),
    ['FACP', 'APIC', 'MCFG'],
  );
  assert.equal(
    Array.from({ length: (rsdt.length - 36) / 4 }, (_, i) => u32(rsdt, 36 + 4 * i)),
    listed,
  );
  const fadt = at(listed[0]).bytes;
  assert.is(fadt.length, FADT_LENGTH);
  assert.is(u32(fadt, 36), t.facsAddress);
  assert.is(
    Number(u64(fadt, 132)),
    0,
    'X_FIRMWARE_CTRL is zero: FIRMWARE_CTRL and X_FIRMWARE_CTRL are exclusive (ACPI 6)',
  );
  assert.is(sig(at(u32(fadt, 40)).bytes), 'DSDT');
  assert.is(Number(u64(fadt, 140)), u32(fadt, 40));
  assert.is(t.facsAddress % 64, 0);
  // Everything sits inside its placement, without overlaps.
  const sorted = [...t.blobs].sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1].gpa + sorted[i - 1].bytes.length <= sorted[i].gpa);
  for (const b of t.blobs) {
    const area = b.name === 'RSDP' ? BIOS_AREA_LAYOUT.rsdp : BIOS_AREA_LAYOUT.tables;
    assert.ok(b.gpa >= area.base && b.gpa + b.bytes.length <= area.base + area.size, b.name);
  }
  assert.equal(t.reserved, [
    { base: 0xf0000, size: 0x1000 },
    { base: 0xf4000, size: 0x1000 },
  ]);
});

test('acpi: written to guest memory, the FACS gives the waking vector back (none until the guest sets one)', () => {
  const t = buildAcpiTables(config({ ram: [{ start: 0, size: 64 * MiB }], pci: undefined, ecam: undefined }));
  const mem = new ArrayGuestMemory([{ start: 0, size: 64 * MiB }]);
  for (const b of t.blobs) mem.write(b.gpa, b.bytes);
  assert.equal(readWakingVector(mem, t.facsAddress), { kind: 'none' });
  mem.writeU32(t.facsAddress + 12, 0x9a000);
  assert.equal(readWakingVector(mem, t.facsAddress), { kind: 'real', cs: 0x9a00, ip: 0, address: 0x9a000 });
});

test('acpi: 255 CPUs fit the BIOS-area layout; 0 and 256 CPUs are refused', () => {
  const t = buildAcpiTables(config({ cpus: 255 }));
  const madt = blob(t, 'APIC').bytes;
  assert.is(madt.length, 44 + 255 * 8 + 12 + 2 * 10 + 6);
  assert.throws(() => buildAcpiTables(config({ cpus: 0 })), /CPUs/);
  assert.throws(() => buildAcpiTables(config({ cpus: 256 })), /CPUs/);
});

test('acpi: bad layouts are refused: placements outside RAM, windows over RAM, the ECAM or the IOAPIC', () => {
  assert.throws(() => buildAcpiTables(config({ ram: [{ start: 0, size: 0xf0000 }] })), /not inside one RAM region/);
  assert.throws(
    () =>
      buildAcpiTables(config({ placement: { rsdp: { base: 0xf0008, size: 0x40 }, tables: BIOS_AREA_LAYOUT.tables } })),
    /16-byte aligned/,
  );
  assert.throws(
    () =>
      buildAcpiTables(config({ placement: { rsdp: BIOS_AREA_LAYOUT.rsdp, tables: { base: 0xf4000, size: 0x100 } } })),
    /need more than/,
  );
  const windows = config().pci!.windows;
  assert.throws(
    () => buildAcpiTables(config({ pci: { windows: { ...windows, mmio32: { base: 0x70000000, size: 0x20000000 } } } })),
    /overlaps RAM/,
  );
  assert.throws(
    () => buildAcpiTables(config({ pci: { windows: { ...windows, mmio32: { base: 0xa0000000, size: 0x20000000 } } } })),
    /ECAM overlaps the PCI 32-bit MMIO window/,
  );
  assert.throws(
    () => buildAcpiTables(config({ pci: { windows: { ...windows, mmio32: { base: 0xc0000000, size: 0x3f000000 } } } })),
    /beyond/,
  );
  assert.throws(
    () => buildAcpiTables(config({ pci: { windows: { ...windows, mmio64: { base: 4 * GiB, size: GiB } } } })),
    /overlaps RAM/,
  );
  assert.throws(() => buildAcpiTables(config({ ecam: { base: 0xb0080000, endBus: 0xff } })), /1 MiB aligned/);
  assert.throws(() => buildAcpiTables(config({ pci: undefined })), /ECAM without a PCI host bridge/);
  assert.throws(() => buildAcpiTables(config({ sciIrq: 2 })), /SCI/);
  assert.throws(() => buildAcpiTables(config({ serial: [{ base: 0x3f8, irq: 16 }] })), /COM1/);
});

test('acpi: extra tables are placed and listed; a table with a bad checksum is refused', () => {
  const ssdt = acpiTable('SSDT', 2, new Uint8Array([0x10, 0x03, 0x5c, 0x00]));
  const t = buildAcpiTables(config({ extraTables: [ssdt] }));
  const xsdt = blob(t, 'XSDT').bytes;
  assert.is(Number(u64(xsdt, 36 + 3 * 8)), blob(t, 'SSDT').gpa);
  const bad = ssdt.slice();
  bad[9] ^= 1;
  assert.throws(() => buildAcpiTables(config({ extraTables: [bad] })), /checksum/);
});

test("acpi: takes the PCI planner's shapes: one I/O window, mmio64 null, {firstGsi, gsiCount}, an ECAM range record", () => {
  const t = buildAcpiTables(
    config({
      pci: {
        windows: { io: { base: 0xc000, size: 0x4000 }, mmio32: { base: 0xc0000000, size: 0x20000000 }, mmio64: null },
        intx: { firstGsi: 16, gsiCount: 8 },
      },
      ecam: { base: 0xe0000000, size: 0x10000000, startBus: 0, endBus: 0xff } as { base: number; endBus: number },
    }),
  );
  assert.ok(t.blobs.some((b) => b.name === 'MCFG'));
});

// ---- checked by the ACPICA tools ------------------------------------------------------------------------------

const acpica = acpicaMissing();

/** Disassembles every table except the RSDP, which iasl cannot read as a binary. */
function disassembleAll(t: AcpiTables, dir: AcpicaDir): Record<string, string> {
  const out: Record<string, string> = {};
  for (const b of t.blobs) {
    if (b.name === 'RSDP') continue;
    const d = dir.disassemble(b.name.toLowerCase(), b.bytes);
    assert.is(d.status, 0, `${b.name}: ${d.output}`);
    assert.equal(problems(d.output), [], `${b.name}: iasl reported problems`);
    assert.not.match(d.dsl, /Incorrect checksum|\*\*\*\*/i, `${b.name}: disassembly flags a problem`);
    out[b.name] = d.dsl;
  }
  return out;
}

testIf(test, acpica, 'acpi: iasl disassembles every table without errors and recompiles each to the same bytes', () => {
  const dir = new AcpicaDir();
  try {
    const t = buildAcpiTables(config());
    const dsl = disassembleAll(t, dir);
    for (const [name, text] of Object.entries(dsl)) {
      const c = dir.compile(name.toLowerCase(), text);
      assert.is(c.status, 0, `${name}: ${c.output}`);
      assert.equal(problems(c.output), [], `${name}: recompiling reported problems`);
      const ours = blob(t, name).bytes;
      const theirs = new Uint8Array(c.aml!);
      assert.is(theirs.length, ours.length, name);
      // iasl puts its own compiler ID/revision (bytes 28-35) in the header, hence its own checksum (byte 9);
      // it writes resource End Tag checksums as 0.
      for (let i = 0; i < ours.length; i++) {
        if (ours[i] === theirs[i] || (name !== 'FACS' && (i === 9 || (i >= 28 && i < 36)))) continue;
        assert.ok(name === 'DSDT' && theirs[i] === 0 && ours[i - 1] === 0x79, `${name} differs at byte ${i}`);
      }
    }
  } finally {
    dir.dispose();
  }
});

testIf(
  test,
  acpica,
  'acpi: the RSDP is byte for byte what iasl compiles from the same fields (it computes both checksums)',
  () => {
    const dir = new AcpicaDir();
    try {
      const t = buildAcpiTables(config());
      const rsdp = blob(t, 'RSDP').bytes;
      const hex = (n: number | bigint, digits: number) => n.toString(16).toUpperCase().padStart(digits, '0');
      const source = [
        '[0008]                          Signature : "RSD PTR "',
        '[0001]                           Checksum : 00',
        '[0006]                             Oem ID : "TSVMM "',
        '[0001]                           Revision : 02',
        `[0004]                       RSDT Address : ${hex(blob(t, 'RSDT').gpa, 8)}`,
        '[0004]                             Length : 00000024',
        `[0008]                       XSDT Address : ${hex(blob(t, 'XSDT').gpa, 16)}`,
        '[0001]                  Extended Checksum : 00',
        '[0003]                           Reserved : 000000',
        '',
      ].join('\n');
      const c = dir.compile('rsdp', source);
      assert.is(c.status, 0, c.output);
      assert.equal(new Uint8Array(c.aml!), rsdp);
    } finally {
      dir.dispose();
    }
  },
);

testIf(
  test,
  acpica,
  'acpi: FADT names the PM ports and lengths, SCI 9, no SMI_CMD, the i8042 reset register, century 0x32',
  () => {
    const dir = new AcpicaDir();
    try {
      const t = buildAcpiTables(config());
      const f = disassembleAll(t, dir).FACP;
      assert.equal(fields(f, 'Revision'), ['06']);
      assert.equal(fields(f, 'SCI Interrupt'), ['0009']);
      assert.equal(fields(f, 'SMI Command Port'), ['00000000']);
      assert.equal(fields(f, 'PM1A Event Block Address'), ['00000600']);
      assert.equal(fields(f, 'PM1A Control Block Address'), ['00000604']);
      assert.equal(fields(f, 'PM Timer Block Address'), ['00000608']);
      assert.equal(fields(f, 'PM1 Event Block Length'), ['04']);
      assert.equal(fields(f, 'PM1 Control Block Length'), ['02']);
      assert.equal(fields(f, 'PM Timer Block Length'), ['04']);
      assert.equal(fields(f, 'RTC Century Index'), ['32']);
      assert.equal(fields(f, 'FACS Address'), ['000F4000', '0000000000000000']);
      const dsdt = blob(t, 'DSDT').gpa.toString(16).toUpperCase();
      assert.equal(fields(f, 'DSDT Address'), [dsdt.padStart(8, '0'), dsdt.padStart(16, '0')]);
      // X_ blocks: SystemIO at the same ports, bit widths 32/16/32.
      assert.equal(
        fields(f, 'Address').filter((a) => a !== '0000000000000000'),
        ['0000000000000064', '0000000000000600', '0000000000000604', '0000000000000608'],
      );
      assert.equal(
        fields(f, 'Bit Width').filter((w) => w !== '00'),
        ['08', '20', '10', '20'],
      );
      assert.equal(fields(f, 'Value to cause reset'), ['FE']);
      assert.is(decoded(f, 'Reset Register Supported (V2)'), '1');
      assert.is(decoded(f, '32-bit PM Timer (V1)'), '1');
      assert.is(decoded(f, 'Hardware Reduced (V5)'), '0');
      assert.is(decoded(f, 'Control Method Power Button (V1)'), '0'); // the fixed power button is ours
      assert.is(decoded(f, '8042 Present on ports 60/64 (V2)'), '1');
      assert.is(decoded(f, 'Legacy Devices Supported (V2)'), '1');
      assert.is(decoded(f, 'Use APIC Physical Destination Mode (V4)'), '0');
      assert.is(decoded(f, 'RTC wake not in fixed reg space (V1)'), '0'); // the RTC alarm wakes from S3 (RTC_EN/RTC_STS)
    } finally {
      dir.dispose();
    }
  },
);

testIf(
  test,
  acpica,
  'acpi: without an i8042 the FADT has no reset register and no 8042 flag; above 8 CPUs physical APIC mode',
  () => {
    const dir = new AcpicaDir();
    try {
      const f = disassembleAll(buildAcpiTables(config({ i8042: false, cpus: 9 })), dir).FACP;
      assert.is(decoded(f, 'Reset Register Supported (V2)'), '0');
      assert.is(decoded(f, '8042 Present on ports 60/64 (V2)'), '0');
      assert.equal(fields(f, 'Value to cause reset'), ['00']);
      assert.is(decoded(f, 'Use APIC Physical Destination Mode (V4)'), '1');
    } finally {
      dir.dispose();
    }
  },
);

testIf(
  test,
  acpica,
  'acpi: MADT lists one enabled local APIC per CPU, the IOAPIC, the IRQ0 and SCI overrides and LINT1 NMI',
  () => {
    const dir = new AcpicaDir();
    try {
      const m = disassembleAll(buildAcpiTables(config({ cpus: 3 })), dir).APIC;
      assert.equal(fields(m, 'Local Apic Address'), ['FEE00000']);
      assert.equal(fields(m, 'Subtable Type'), [
        '00 [Processor Local APIC]',
        '00 [Processor Local APIC]',
        '00 [Processor Local APIC]',
        '01 [I/O APIC]',
        '02 [Interrupt Source Override]',
        '02 [Interrupt Source Override]',
        '04 [Local APIC NMI]',
      ]);
      assert.equal(fields(m, 'Local Apic ID'), ['00', '01', '02']);
      assert.equal(fields(m, 'Processor ID'), ['00', '01', '02', 'FF']);
      assert.equal(fields(m, 'I/O Apic ID'), ['00']);
      assert.equal(fields(m, 'Address'), ['FEC00000']);
      assert.equal(fields(m, 'Source'), ['00', '09']);
      assert.equal(fields(m, 'Interrupt'), ['00000000', '00000002', '00000009']); // IOAPIC GSI base, then overrides
      assert.equal(fields(m, 'Flags (decoded below)'), [
        '00000001',
        '00000001',
        '00000001',
        '00000001',
        '0000',
        '000D',
        '0000',
      ]);
      assert.equal(fields(m, 'Interrupt Input LINT'), ['01']);
      assert.is(decoded(m, 'PC-AT Compatibility'), '1');
    } finally {
      dir.dispose();
    }
  },
);

testIf(test, acpica, 'acpi: MCFG gives the ECAM base, segment 0 and the bus range', () => {
  const dir = new AcpicaDir();
  try {
    const m = disassembleAll(
      buildAcpiTables(
        config({
          ecam: { base: 0xe0000000, endBus: 0x3f },
          pci: {
            ...config().pci!,
            windows: { ...config().pci!.windows, mmio32: { base: 0xc0000000, size: 0x20000000 } },
          },
        }),
      ),
      dir,
    ).MCFG;
    assert.equal(fields(m, 'Base Address'), ['00000000E0000000']);
    assert.equal(fields(m, 'Segment Group Number'), ['0000']);
    assert.equal(fields(m, 'Start Bus Number'), ['00']);
    assert.equal(fields(m, 'End Bus Number'), ['3F']);
  } finally {
    dir.dispose();
  }
});

testIf(
  test,
  acpica,
  'acpi: the DSDT describes the CPUs, COM ports, RTC, i8042, PCI host bridge, motherboard resources, _S3 and _S5',
  () => {
    const dir = new AcpicaDir();
    try {
      const d = disassembleAll(buildAcpiTables(config()), dir).DSDT;
      assert.is([...d.matchAll(/"ACPI0007" \/\* Processor Device \*\//g)].length, 4);
      for (const text of [
        'Device (COM1)',
        'Device (COM2)',
        'Device (RTC)',
        'Device (KBD)',
        'Device (MOU)',
        'Device (PCI0)',
        'Device (SYSR)',
        'EisaId ("PNP0501")',
        'EisaId ("PNP0B00")',
        'EisaId ("PNP0303")',
        'EisaId ("PNP0F13")',
        'EisaId ("PNP0C02")',
        'Name (_HID, EisaId ("PNP0A08")',
        'Name (_CID, EisaId ("PNP0A03")',
        'Name (_SEG, Zero)',
        'Name (_BBN, Zero)',
        'Name (_PRT, Package (0x80)',
      ])
        assert.ok(d.includes(text), `DSDT lacks ${text}`);
      assert.not.ok(d.includes('Device (COM3)'));
      assert.match(d, /Name \(_S3, Package \(0x04\)[^{]*\{\s*One,\s*One,\s*Zero,\s*Zero\s*\}/);
      assert.match(d, /Name \(_S5, Package \(0x04\)[^{]*\{\s*Zero,\s*Zero,\s*Zero,\s*Zero\s*\}/);
    } finally {
      dir.dispose();
    }
  },
);

testIf(
  test,
  acpica,
  'acpi: ACPICA evaluates the namespace: _CRS of every device, _PRT pins on the swizzled GSIs, sleep packages',
  () => {
    const dir = new AcpicaDir();
    try {
      const t = buildAcpiTables(config());
      const files = ['FACP', 'FACS', 'DSDT', 'APIC', 'MCFG'].map((n) =>
        dir.write(`${n.toLowerCase()}.dat`, blob(t, n).bytes),
      );
      const r = dir.acpiexec(files, [
        'Resources \\_SB.PCI0',
        'Resources \\_SB.COM1',
        'Resources \\_SB.COM2',
        'Resources \\_SB.RTC',
        'Resources \\_SB.KBD',
        'Resources \\_SB.MOU',
        'Resources \\_SB.SYSR',
        'Evaluate \\_S3_',
        'Evaluate \\_S5_',
        'Evaluate \\_SB.COM1._STA',
      ]);
      assert.not.match(r.output, /AE_AML|AE_NOT_FOUND.*_CRS|Could not|Invalid/i);
      const mismatches = r.output.split('\n').filter((l) => /Mismatch at byte/.test(l));
      assert.ok(
        mismatches.every((l) => /is 00, should be/.test(l)),
        mismatches.join('\n'),
      ); // End Tag checksums only
      const flat = r.output.replace(/\s+/g, ' ');
      // The host bridge's windows.
      for (const text of [
        'Address Minimum : 0000 Address Maximum : 00FF',
        'Address Minimum : 00001000 Address Maximum : 0000FFFF',
        'Address Minimum : C0000000 Address Maximum : FEBFFFFF',
        'Address Minimum : 0000000200000000 Address Maximum : 00000009FFFFFFFF',
        'Address : B0000000 Address Length : 10000000',
        'Address Minimum : 03F8 Address Maximum : 03F8',
        'Address Minimum : 0600 Address Maximum : 0600',
      ]) {
        assert.ok(flat.includes(text), `acpiexec output lacks ${text}`);
      }
      // _PRT: slot 3 INTB# (pin 1) → GSI 16 + (3 + 1) % 8 = 20.
      const prt =
        /Address : 000000000003FFFF Pin : 00000001 Source : \[NULL NAMESTRING\] Source Index : ([0-9A-F]+)/.exec(flat);
      assert.ok(prt, 'no _PRT entry for slot 3 INTB#');
      assert.is(parseInt(prt![1], 16), intxGsi(3, 2));
      assert.is([...flat.matchAll(/PCI IRQ Routing Table Package/g)].length, 128);
      assert.match(
        flat,
        /Evaluating \\_S3_ .*?Contains 4 Elements: \[Integer\] = 0000000000000001 \[Integer\] = 0000000000000001 \[Integer\] = 0000000000000000 \[Integer\] = 0000000000000000/,
      );
      assert.match(
        flat,
        /Evaluating \\_S5_ .*?Contains 4 Elements: (\[Integer\] = 0000000000000000 ){3}\[Integer\] = 0000000000000000/,
      );
      assert.match(flat, /Evaluating \\_SB.COM1._STA .*?\[Integer\] = 000000000000000F/);
    } finally {
      dir.dispose();
    }
  },
);

testIf(
  test,
  acpica,
  'acpi: the largest machine (255 CPUs, COM1-COM4) disassembles cleanly with every processor and port',
  () => {
    const dir = new AcpicaDir();
    try {
      const serial = [
        { base: 0x3f8, irq: 4 },
        { base: 0x2f8, irq: 3 },
        { base: 0x3e8, irq: 4 },
        { base: 0x2e8, irq: 3 },
      ];
      const dsl = disassembleAll(buildAcpiTables(config({ cpus: 255, serial })), dir);
      assert.is([...dsl.DSDT.matchAll(/"ACPI0007"/g)].length, 255);
      assert.ok(dsl.DSDT.includes('Device (C0FE)'));
      assert.ok(dsl.DSDT.includes('Device (COM4)'));
      assert.is(fields(dsl.APIC, 'Local Apic ID').length, 255);
      assert.is(fields(dsl.APIC, 'Local Apic ID')[254], 'FE');
    } finally {
      dir.dispose();
    }
  },
);

testIf(test, acpica, 'acpi: a machine without PCI has no PCI0 and no MCFG, and still disassembles cleanly', () => {
  const dir = new AcpicaDir();
  try {
    const t = buildAcpiTables(config({ pci: undefined, ecam: undefined, serial: [], i8042: false }));
    assert.equal(
      t.blobs.map((b) => b.name),
      ['RSDP', 'FACS', 'DSDT', 'FACP', 'APIC', 'XSDT', 'RSDT'],
    );
    const d = disassembleAll(t, dir).DSDT;
    assert.not.ok(d.includes('PCI0'));
    assert.not.ok(d.includes('COM1'));
    assert.ok(d.includes('Device (RTC)'));
  } finally {
    dir.dispose();
  }
});

testIf(
  test,
  acpica,
  'acpi: with pvpanic the DSDT has PEVT (QEMU0001, one byte at its port, _STA 0x0F) as QEMU 7.2 does; without, none',
  () => {
    const dir = new AcpicaDir();
    try {
      const without = disassembleAll(buildAcpiTables(config()), dir).DSDT;
      assert.not.ok(without.includes('QEMU0001'));
      assert.not.ok(without.includes('PEVT'));

      const t = buildAcpiTables(config({ pvpanic: { port: 0x505 } }));
      const d = disassembleAll(t, dir).DSDT;
      assert.ok(d.includes('Device (PEVT)'), d);
      assert.ok(d.includes('Name (_HID, "QEMU0001")'), 'PEVT _HID');
      assert.match(
        d,
        /Device \(PEVT\)[\s\S]*?IO \(Decode16,\s*0x0505,\s*\/\/ Range Minimum\s*0x0505,\s*\/\/ Range Maximum\s*0x01,\s*\/\/ Alignment\s*0x01,/,
      );
      assert.match(d, /Device \(PEVT\)[\s\S]*?Name \(_STA, 0x0F\)/);
      // The same AML back from iasl (bar the header's compiler id and End Tag checksums, as above).
      const c = dir.compile('dsdt', d);
      assert.is(c.status, 0, c.output);
      assert.is(new Uint8Array(c.aml!).length, blob(t, 'DSDT').bytes.length);
      // And ACPICA evaluates it as the guest's OS would.
      const r = dir.acpiexec(
        [dir.write('dsdt.dat', blob(t, 'DSDT').bytes)],
        ['Resources \\_SB.PEVT', 'Evaluate \\_SB.PEVT._STA', 'Evaluate \\_SB.PEVT._HID'],
      );
      const flat = r.output.replace(/\s+/g, ' ');
      assert.ok(flat.includes('Address Minimum : 0505 Address Maximum : 0505'), r.output);
      assert.match(flat, /Evaluating \\_SB.PEVT._STA .*?\[Integer\] = 000000000000000F/);
      assert.match(flat, /Evaluating \\_SB.PEVT._HID .*?\[String\] .*?"QEMU0001"/);
    } finally {
      dir.dispose();
    }
  },
);

test.run();
