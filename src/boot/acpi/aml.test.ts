import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AmlError,
  buffer,
  device,
  dwordIo,
  dwordMemory,
  eisaId,
  eisaIdValue,
  integer,
  interrupt,
  io,
  irqNoFlags,
  memory32Fixed,
  method,
  name,
  nameRef,
  nameString,
  pkg,
  pkgLength,
  qwordMemory,
  resourceTemplate,
  ret,
  scope,
  string,
  termList,
  wordBusNumber,
} from './aml.js';
import { acpiTable } from './tables.js';
import { AcpicaDir, acpicaMissing, problems } from './testing/iasl.js';
import { testIf } from '../../../test/support/skip.js';

const isAmlError = (e: unknown) => e instanceof AmlError;
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const bytes = (...xs: number[]) => Uint8Array.from(xs);
const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

test('aml: PkgLength uses one byte up to 63, then a lead byte with the low nybble and 1-3 more bytes', () => {
  assert.equal(pkgLength(0), bytes(0x01));
  assert.equal(pkgLength(62), bytes(0x3f)); // 62 + itself = 63: the largest one-byte length
  assert.equal(pkgLength(63), bytes(0x41, 0x04)); // 63 + 2 = 65 = 0x041
  assert.equal(pkgLength(0xffd), bytes(0x4f, 0xff)); // 4093 + 2 = 0xFFF: the largest two-byte length
  assert.equal(pkgLength(0xffe), bytes(0x81, 0x00, 0x01)); // 4094 + 3 = 0x1001
  assert.equal(pkgLength(0xffffc), bytes(0x8f, 0xff, 0xff)); // 0xFFFFF
  assert.equal(pkgLength(0xffffd), bytes(0xc1, 0x00, 0x00, 0x01));
  assert.throws(() => pkgLength(2 ** 28), isAmlError);
  assert.throws(() => pkgLength(-1), isAmlError);
});

test('aml: integers take the shortest encoding: Zero, One, Byte, Word, DWord, QWord prefixes', () => {
  assert.equal(integer(0).bytes, bytes(0x00));
  assert.equal(integer(1).bytes, bytes(0x01));
  assert.equal(integer(2).bytes, bytes(0x0a, 0x02));
  assert.equal(integer(0xff).bytes, bytes(0x0a, 0xff));
  assert.equal(integer(0x100).bytes, bytes(0x0b, 0x00, 0x01));
  assert.equal(integer(0x10000).bytes, bytes(0x0c, 0x00, 0x00, 0x01, 0x00));
  assert.equal(integer(0xffffffff).bytes, bytes(0x0c, 0xff, 0xff, 0xff, 0xff));
  assert.equal(integer(2 ** 32).bytes, bytes(0x0e, 0, 0, 0, 0, 1, 0, 0, 0));
  assert.equal(integer((1n << 64n) - 1n).bytes, bytes(0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
  assert.throws(() => integer(-1), isAmlError);
  assert.throws(() => integer(1n << 64n), isAmlError);
  assert.throws(() => integer(1.5), isAmlError);
});

test('aml: name strings: segments padded with _, root and parent prefixes, dual and multi-segment paths', () => {
  assert.equal(nameString('_S5'), Uint8Array.from(ascii('_S5_')));
  assert.equal(nameString('\\_SB.PCI0'), Uint8Array.from([0x5c, 0x2e, ...ascii('_SB_PCI0')]));
  assert.equal(nameString('^COM1'), Uint8Array.from([0x5e, ...ascii('COM1')]));
  assert.equal(nameString('\\_SB.PCI0.ISA'), Uint8Array.from([0x5c, 0x2f, 3, ...ascii('_SB_PCI0ISA_')]));
  assert.equal(nameString('\\'), bytes(0x5c, 0x00));
  for (const bad of ['', 'pci0', 'ABCDE', '1ABC', 'A.B..C', '\\^A'])
    assert.throws(() => nameString(bad), isAmlError, bad);
});

test('aml: EISAID compresses three letters and four hex digits into a DWord', () => {
  assert.is(eisaIdValue('PNP0A03'), 0x030ad041);
  assert.is(eisaIdValue('PNP0501'), 0x0105d041);
  assert.is(eisaIdValue('PNP0B00'), 0x000bd041);
  assert.equal(eisaId('PNP0A08').bytes, bytes(0x0c, 0x41, 0xd0, 0x0a, 0x08));
  assert.throws(() => eisaIdValue('pnp0a03'), isAmlError);
  assert.throws(() => eisaIdValue('PNP0G03'), isAmlError);
});

test('aml: strings, buffers and packages', () => {
  assert.equal(string('AB').bytes, bytes(0x0d, 0x41, 0x42, 0x00));
  assert.throws(() => string('é'), isAmlError);
  assert.equal(buffer([1, 2, 3]).bytes, bytes(0x11, 0x06, 0x0a, 0x03, 1, 2, 3));
  assert.equal(
    pkg([integer(0), integer(1), nameRef('COM1')]).bytes,
    bytes(0x12, 0x08, 0x03, 0x00, 0x01, ...ascii('COM1')),
  );
  assert.throws(() => pkg(new Array(256).fill(integer(0))), isAmlError);
});

test('aml: Name, Scope, Device, Method and Return', () => {
  assert.equal(name('_UID', integer(1)).bytes, Uint8Array.from([0x08, ...ascii('_UID'), 0x01]));
  assert.equal(device('RTC', []).bytes, Uint8Array.from([0x5b, 0x82, 0x05, ...ascii('RTC_')]));
  assert.equal(scope('\\', []).bytes, bytes(0x10, 0x03, 0x5c, 0x00));
  assert.equal(
    method('_STA', { args: 0 }, [ret(integer(0x0f))]).bytes,
    Uint8Array.from([0x14, 0x09, ...ascii('_STA'), 0x00, 0xa4, 0x0a, 0x0f]),
  );
  assert.is(method('XMTH', { args: 3, serialized: true, syncLevel: 2 }, []).bytes[6], 0x2b);
  assert.throws(() => method('XMTH', { args: 8 }, []), isAmlError);
});

test('aml: a resource template ends with an End Tag whose checksum makes the template sum to zero', () => {
  const t = resourceTemplate([io({ min: 0x3f8, length: 8 }), irqNoFlags([4])]).bytes;
  // BufferOp, PkgLength, BufferSize (0x0F), IO (8 bytes), IRQ (3 bytes), End Tag (2 bytes)
  const body = t.subarray(4);
  assert.is(hex(body.subarray(0, 8)), '47 01 f8 03 f8 03 01 08');
  assert.is(hex(body.subarray(8, 11)), '22 10 00');
  assert.is(body[11], 0x79);
  assert.is(
    body.reduce((s, b) => (s + b) & 0xff, 0),
    0,
  );
  assert.is(t[3], body.length);
});

test('aml: address-space descriptors carry granularity, min, max, translation and length (= max - min + 1)', () => {
  const bus = wordBusNumber({ min: 0, max: 0xff }).bytes;
  assert.is(hex(bus), '88 0d 00 02 0c 00 00 00 00 00 ff 00 00 00 00 01');
  const q = qwordMemory({ min: 0x1_0000_0000n, max: 0x1_ffff_ffffn, cacheable: true }).bytes;
  assert.is(q.length, 3 + 43);
  assert.is(q[5], 0x03); // ReadWrite | Cacheable
  assert.is(new DataView(q.buffer).getBigUint64(3 + 35, true), 0x1_0000_0000n);
  assert.throws(() => dwordIo({ min: 0x2000, max: 0x1000 }), isAmlError);
  assert.throws(() => dwordMemory({ min: 0, max: 2 ** 32, cacheable: false }), isAmlError);
  assert.throws(() => io({ min: 0x10000, length: 1 }), isAmlError);
  assert.throws(() => irqNoFlags([16]), isAmlError);
});

const acpica = acpicaMissing();

/** A DSDT that uses every construct the encoder has. */
function everything(): Uint8Array {
  return acpiTable(
    'DSDT',
    2,
    termList([
      scope('\\_SB', [
        device('DEV0', [
          name('_HID', eisaId('PNP0C02')),
          name('_UID', integer(0x1234_5678_9abcn)),
          name('STR0', string('tsvmm')),
          name('BUF0', buffer([0xde, 0xad, 0xbe, 0xef])),
          name('PKG0', pkg([integer(0), integer(1), integer(0xffff), nameRef('\\_SB.DEV0'), string('x')])),
          method('_STA', { args: 0 }, [ret(integer(0x0f))]),
          method('MTH3', { args: 3, serialized: true }, [ret(nameRef('BUF0'))]),
          name(
            '_CRS',
            resourceTemplate([
              io({ min: 0x600, length: 0x10 }),
              irqNoFlags([3, 4]),
              interrupt({ gsis: [16, 17], edge: false, activeLow: true, shared: true }),
              memory32Fixed({ base: 0xfed00000, length: 0x400 }),
              wordBusNumber({ min: 0, max: 0x7f }),
              dwordIo({ min: 0x1000, max: 0xffff }),
              dwordMemory({ min: 0xc0000000, max: 0xfebfffff, cacheable: false }),
              qwordMemory({ min: 0x8_0000_0000n, max: 0xf_ffff_ffffn, cacheable: true }),
            ]),
          ),
        ]),
        scope('^', [name('NUM0', integer(5))]),
      ]),
      name('_S5', pkg([integer(0), integer(0), integer(0), integer(0)])),
    ]),
  );
}

testIf(
  test,
  acpica,
  'aml: iasl disassembles every construct and recompiles it to the same AML (End Tag checksums aside)',
  () => {
    const dir = new AcpicaDir();
    try {
      const ours = everything();
      const d = dir.disassemble('dsdt', ours);
      assert.is(d.status, 0, d.output);
      assert.equal(problems(d.output), []);
      for (const text of [
        'Device (DEV0)',
        'EisaId ("PNP0C02")',
        '0x0000123456789ABC',
        '"tsvmm"',
        'Method (MTH3, 3, Serialized)',
        'Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, )',
        'Memory32Fixed (ReadWrite,',
        'QWordMemory (ResourceProducer',
        '\\_SB.DEV0',
        'Name (NUM0, 0x05)',
        'Name (_S5, Package (0x04)',
      ]) {
        assert.ok(d.dsl.includes(text), `disassembly lacks ${text}`);
      }
      const c = dir.compile('dsdt', d.dsl);
      assert.is(c.status, 0, c.output);
      assert.ok(c.aml, c.output);
      const theirs = new Uint8Array(c.aml!);
      assert.is(theirs.length, ours.length);
      // The header differs in the compiler ID/revision and so the checksum; iasl writes End Tag checksums as 0.
      for (let i = 36; i < ours.length; i++) {
        if (ours[i] === theirs[i]) continue;
        assert.ok(
          theirs[i] === 0 && ours[i - 1] === 0x79 && theirs[i - 1] === 0x79,
          `AML differs at ${i}: ours ${ours[i]} iasl ${theirs[i]}`,
        );
      }
    } finally {
      dir.dispose();
    }
  },
);

testIf(test, acpica, 'aml: ACPICA decodes the resource template: every descriptor converts, values as encoded', () => {
  const dir = new AcpicaDir();
  try {
    dir.write('dsdt.dat', everything());
    const r = dir.acpiexec(
      ['dsdt.dat'],
      ['Resources \\_SB.DEV0', 'Evaluate \\_SB.DEV0._STA', 'Evaluate \\_SB.DEV0.MTH3 1 2 3'],
    );
    for (const text of [
      'Address Minimum : C0000000',
      'Address Maximum : 0000000FFFFFFFFF',
      'Dword01 : 00000011',
      'Polarity : ActiveLow',
      'Sharing : Shared',
      'Address Length : 00000400',
      '[Integer] = 000000000000000F',
      '[Buffer] Length 04',
    ]) {
      assert.ok(
        new RegExp(text.replace(/[[\]()]/g, '\\$&').replace(/ : /, '\\s*:\\s*')).test(r.output),
        `acpiexec output lacks ${text}`,
      );
    }
    // acpiexec converts the template back and only finds the End Tag checksum different (it writes 0 there).
    const mismatches = r.output.split('\n').filter((l) => /Mismatch at byte/.test(l));
    assert.ok(
      mismatches.every((l) => /is 00, should be/.test(l)),
      mismatches.join('\n'),
    );
  } finally {
    dir.dispose();
  }
});

test.run();
