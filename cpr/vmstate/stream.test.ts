import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  u8,
  u16,
  u32,
  u64,
  i64,
  bool,
  bytes,
  array,
  struct,
  structArray,
  newRecord,
  recordBytes,
  withHooks,
  VmstateError,
  str,
  setString,
  getString,
  type Descriptor,
} from './vmstate.js';
import { encodeRecord, decodeInto, decodeToJson, prepareDecode, SUBSECTION_MARKER } from './stream.js';
import {
  Rng,
  runSeed,
  forEachCase,
  randomDescriptor,
  fillRandom,
  olderVersion,
  expectedAfterLoad,
} from '../testing/random-vmstate.js';

const seed = runSeed();
const CASES = 600;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function assertRefused(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, VmstateError, `expected a VmstateError, got ${(e as Error)?.stack ?? e}`);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a VmstateError matching ${pattern}`);
}

// ---- properties over generated descriptors ------------------------------------------------------------------------

test(`stream: any generated descriptor and values round-trip exactly (${CASES} cases)`, () => {
  forEachCase(seed, CASES, (rng) => {
    const d = randomDescriptor(rng);
    const original = newRecord(d, false);
    fillRandom(rng, original);
    const stream = encodeRecord(d, original);
    const loaded = newRecord(d, false);
    decodeInto(d, stream, d.version, loaded);
    assert.is(
      hex(recordBytes(loaded)),
      hex(recordBytes(expectedAfterLoad(original, d))),
      'loaded record = what the stream carries',
    );
    assert.is(hex(encodeRecord(d, loaded)), hex(stream), 'encoding the loaded record gives the same stream');
    JSON.stringify(decodeToJson(d, stream, d.version)); // never throws on a valid stream, and is plain JSON
  });
});

test(`stream: a stream written by an older version loads with the newer fields at their reset values (${CASES} cases)`, () => {
  forEachCase(seed ^ 0x5eed, CASES, (rng) => {
    const current = randomDescriptor(rng);
    const older = olderVersion(rng, current);
    const saved = newRecord(older, false);
    fillRandom(rng, saved);
    const stream = encodeRecord(older, saved);
    const loaded = newRecord(current, false);
    decodeInto(current, stream, older.version, loaded);
    assert.is(hex(recordBytes(loaded)), hex(recordBytes(expectedAfterLoad(saved, current))));
  });
});

test(`stream: a corrupted stream is refused with a VmstateError and leaves the record untouched (${CASES} cases)`, () => {
  forEachCase(seed ^ 0xbad, CASES, (rng) => {
    const d = randomDescriptor(rng);
    const source = newRecord(d, false);
    fillRandom(rng, source);
    const stream = encodeRecord(d, source);
    const target = newRecord(d, false);
    fillRandom(rng, target);
    const before = hex(recordBytes(target));
    // One more byte after a complete stream can never be valid: it starts neither a field nor a whole subsection.
    const extended = new Uint8Array(stream.length + 1);
    extended.set(stream);
    extended[stream.length] = rng.chance(0.5) ? SUBSECTION_MARKER : rng.int(0, 255);
    assertRefused(() => decodeInto(d, extended, d.version, target), /./);
    assert.is(hex(recordBytes(target)), before);
    // Truncations and byte flips may happen to leave a valid stream; otherwise the refusal is total.
    const mutants = [stream.subarray(0, rng.int(0, Math.max(0, stream.length - 1)))];
    if (stream.length > 0) {
      const flipped = stream.slice();
      flipped[rng.int(0, stream.length - 1)] ^= 1 << rng.int(0, 7);
      mutants.push(flipped);
    }
    for (const mutant of mutants) {
      const unchanged = hex(recordBytes(target));
      try {
        decodeInto(d, mutant, d.version, target);
      } catch (e) {
        assert.instance(e, VmstateError, String((e as Error)?.stack));
        assert.is(hex(recordBytes(target)), unchanged, 'a refused stream changes nothing');
      }
    }
  });
});

// ---- version rules --------------------------------------------------------------------------------------------

const uartV1 = { name: 'uart', version: 1, fields: [u8('ier'), u8('lcr')] } as const satisfies Descriptor;
const uartV2 = {
  name: 'uart',
  version: 2,
  minVersion: 1,
  fields: [u8('ier'), u8('lcr'), u16('divisor', { since: 2 })],
} as const satisfies Descriptor;

test('stream: a field added in version 2 keeps its reset value when a version 1 stream is loaded', () => {
  const old = newRecord(uartV1);
  old.ier = 0x0f;
  old.lcr = 0x03;
  const loaded = newRecord(uartV2);
  loaded.divisor = 12; // the reset value
  decodeInto(uartV2, encodeRecord(uartV1, old), 1, loaded);
  assert.equal([loaded.ier, loaded.lcr, loaded.divisor], [0x0f, 0x03, 12]);
});

test('stream: a stream newer than the descriptor is refused naming both versions', () => {
  const r = newRecord(uartV2);
  assertRefused(
    () => decodeInto(uartV1, encodeRecord(uartV2, r), 2, newRecord(uartV1)),
    /vmstate uart: uart stream version 2 is newer than this tsvmm supports \(1\)/,
  );
});

test('stream: a stream older than minVersion is refused naming both versions', () => {
  const strict = { ...uartV2, minVersion: 2 } satisfies Descriptor;
  assertRefused(
    () => decodeInto(strict, new Uint8Array(2), 1, newRecord(strict)),
    /uart stream version 1 is older than the oldest supported \(2\)/,
  );
});

test('stream: a nested struct carries its own version, checked like the top level', () => {
  const innerV1 = { name: 'inner', version: 1, fields: [u32('a')] } as const satisfies Descriptor;
  const innerV2 = {
    name: 'inner',
    version: 2,
    minVersion: 2,
    fields: [u32('a'), u32('b', { since: 2 })],
  } as const satisfies Descriptor;
  const outerOld = { name: 'outer', version: 1, fields: [struct('child', innerV1)] } as const satisfies Descriptor;
  const outerNew = { name: 'outer', version: 1, fields: [struct('child', innerV2)] } as const satisfies Descriptor;
  assertRefused(
    () => decodeInto(outerNew, encodeRecord(outerOld, newRecord(outerOld)), 1, newRecord(outerNew)),
    /vmstate outer: field 'child': inner stream version 1 is older than the oldest supported \(2\)/,
  );
});

// ---- variable arrays, subsections, trailing bytes -------------------------------------------------------------------

const fifo = {
  name: 'fifo',
  version: 1,
  fields: [u8('count'), bytes('data', 8, { lengthField: 'count' }), u64('stamp')],
  subsections: [
    {
      name: 'fifo/irq',
      version: 2,
      minVersion: 1,
      fields: [bool('pending')],
      needed: (s: { pending: boolean }) => s.pending,
    },
  ],
} as const satisfies Descriptor;

test('stream: a variable array writes only the used elements', () => {
  const r = newRecord(fifo);
  r.count = 3;
  r.data.set([1, 2, 3, 4, 5]);
  r.stamp = 0x0102030405060708n;
  assert.is(hex(encodeRecord(fifo, r)), '03' + '010203' + '0807060504030201');
});

test('stream: a length field beyond its capacity is refused on save and on load, naming the field', () => {
  const r = newRecord(fifo);
  r.count = 9;
  assertRefused(() => encodeRecord(fifo, r), /field 'data': length field 'count' is 9, outside its capacity of 8/);
  const stream = new Uint8Array(1 + 9 + 8);
  stream[0] = 9;
  assertRefused(
    () => decodeInto(fifo, stream, 1, newRecord(fifo)),
    /vmstate fifo: field 'data': length field 'count' is 9, outside its capacity of 8/,
  );
});

test('stream: a subsection is written only when needed, as a block with marker, name, version and length', () => {
  const r = newRecord(fifo);
  const without = encodeRecord(fifo, r);
  r.pending = true;
  const withIt = encodeRecord(fifo, r);
  const name = Buffer.from('fifo/irq').toString('hex');
  assert.is(hex(withIt), `${hex(without)}05${'08'}${name}020000000100000001`);
  const loaded = newRecord(fifo);
  decodeInto(fifo, withIt, 1, loaded);
  assert.is(loaded.pending, true);
});

test('stream: an unknown subsection is refused by name', () => {
  const other = { ...fifo, subsections: [{ ...fifo.subsections[0], name: 'fifo/dma' }] } as const satisfies Descriptor;
  const r = newRecord(other);
  r.pending = true;
  assertRefused(() => decodeInto(fifo, encodeRecord(other, r), 1, newRecord(fifo)), /unknown subsection 'fifo\/dma'/);
});

test('stream: a subsection version newer than the descriptor is refused', () => {
  const newer = { ...fifo, subsections: [{ ...fifo.subsections[0], version: 3 }] } as const satisfies Descriptor;
  const r = newRecord(newer);
  r.pending = true;
  assertRefused(
    () => decodeInto(fifo, encodeRecord(newer, r), 1, newRecord(fifo)),
    /field '\{fifo\/irq\}': subsection 'fifo\/irq' stream version 3 is newer than this tsvmm supports \(2\)/,
  );
});

test('stream: a repeated subsection, a bool that is not 0/1 and trailing bytes are refused', () => {
  const r = newRecord(fifo);
  r.pending = true;
  const s = encodeRecord(fifo, r);
  const block = s.subarray(9);
  const twice = new Uint8Array([...s, ...block]);
  assertRefused(() => decodeInto(fifo, twice, 1, newRecord(fifo)), /subsection 'fifo\/irq' appears twice/);
  const badBool = s.slice();
  badBool[s.length - 1] = 2;
  assertRefused(
    () => decodeInto(fifo, badBool, 1, newRecord(fifo)),
    /field '\{fifo\/irq\}.pending': bool byte at \d+ is 2/,
  );
  assertRefused(
    () => decodeInto(fifo, new Uint8Array([...s, 0]), 1, newRecord(fifo)),
    /unexpected byte 0x00 at byte \d+ after the fields/,
  );
});

test('stream: a truncated stream is refused naming the field it ends in', () => {
  const s = encodeRecord(fifo, newRecord(fifo));
  assertRefused(
    () => decodeInto(fifo, s.subarray(0, 5), 1, newRecord(fifo)),
    /vmstate fifo: field 'stamp': stream ends at byte 5, 4 bytes short/,
  );
});

test('stream: a length field must come before its array', () => {
  const bad = {
    name: 'bad',
    version: 1,
    fields: [bytes('b', 4, { lengthField: 'n' }), u8('n')],
  } as const satisfies Descriptor;
  assertRefused(
    () => encodeRecord(bad, newRecord(bad)),
    /vmstate bad: field 'b': its length field 'n' must come before it/,
  );
});

test('stream: a record of another descriptor is refused', () => {
  assertRefused(() => encodeRecord(fifo, newRecord(uartV1) as any), /not a fifo record/);
});

test('stream: a str() field carries its length and only the used bytes', () => {
  const named = { name: 'named', version: 1, fields: [...str('label', 16)] } as const satisfies Descriptor;
  const r = newRecord(named);
  setString(r, 'label', 'com1');
  const s = encodeRecord(named, r);
  assert.is(hex(s), `04000000${Buffer.from('com1').toString('hex')}`);
  const loaded = newRecord(named);
  decodeInto(named, s, 1, loaded);
  assert.is(getString(loaded, 'label'), 'com1');
});

// ---- hooks ------------------------------------------------------------------------------------------------------

test('stream: preSave runs before encoding; postLoad runs after the copy, nested first, with the stream version', () => {
  const calls: string[] = [];
  const inner = withHooks({ name: 'inner', version: 3, fields: [u8('v')] } as const satisfies Descriptor, {
    postLoad: (s, v) => {
      calls.push(`inner v${v} val=${s.v}`);
    },
  });
  const base = {
    name: 'dev',
    version: 2,
    fields: [u32('derived'), u32('live'), structArray('kids', inner, 2)],
    subsections: [
      {
        name: 'dev/extra',
        version: 5,
        fields: [u8('extra')],
        needed: () => true,
        postLoad: (s: { extra: number }, v: number) => {
          calls.push(`sub v${v} extra=${s.extra}`);
        },
      },
    ],
  } as const satisfies Descriptor;
  const dev = withHooks(base, {
    preSave: (s) => {
      s.derived = s.live * 2;
    },
    postLoad: (s, v) => {
      calls.push(`dev v${v} derived=${s.derived}`);
    },
  });
  const r = newRecord(dev);
  r.live = 21;
  r.kids[0].v = 1;
  r.kids[1].v = 2;
  r.extra = 9;
  const stream = encodeRecord(dev, r);
  assert.is(r.derived, 42, 'preSave ran on the live record');
  const loaded = newRecord(dev);
  decodeInto(dev, stream, 2, loaded);
  assert.equal(calls, ['inner v3 val=1', 'inner v3 val=2', 'sub v5 extra=9', 'dev v2 derived=42']);
  calls.length = 0;
  assertRefused(() => decodeInto(dev, stream.subarray(0, stream.length - 1), 2, newRecord(dev)), /./);
  assert.equal(calls, [], 'no postLoad for a refused stream');
});

test('stream: prepareDecode validates now and changes the record only when committed', () => {
  const source = newRecord(uartV1);
  source.ier = 3;
  const target = newRecord(uartV1);
  const commit = prepareDecode(uartV1, encodeRecord(uartV1, source), 1, target);
  assert.is(target.ier, 0, 'untouched until the commit');
  commit();
  assert.is(target.ier, 3);
  assertRefused(() => prepareDecode(uartV1, new Uint8Array(1), 1, target), /field 'lcr': stream ends/);
});

// ---- JSON ----------------------------------------------------------------------------------------------------------

test('stream: decodeToJson shows bigints as numbers when safe, else strings; bytes as hex; subsections by name', () => {
  const d = {
    name: 'j',
    version: 1,
    fields: [
      u64('small'),
      u64('huge'),
      i64('neg'),
      bool('on'),
      bytes('raw', 4),
      array('words', 'u16', 2),
      struct('inner', uartV1),
    ],
    subsections: [{ name: 'j/more', version: 1, fields: [u8('more')], needed: () => true }],
  } as const satisfies Descriptor;
  const r = newRecord(d);
  r.small = 5n;
  r.huge = (1n << 64n) - 1n;
  r.neg = -3n;
  r.on = true;
  r.raw.set([0xde, 0xad, 0xbe, 0xef]);
  r.words.set([1, 2]);
  r.inner.ier = 7;
  r.more = 1;
  assert.equal(decodeToJson(d, encodeRecord(d, r), 1), {
    small: 5,
    huge: '18446744073709551615',
    neg: -3,
    on: true,
    raw: 'deadbeef',
    words: [1, 2],
    inner: { ier: 7, lcr: 0 },
    $subsections: { 'j/more': { $version: 1, more: 1 } },
  });
});

test(`stream: the generator is deterministic for a seed (this run: ${seed})`, () => {
  const a = randomDescriptor(new Rng(seed));
  const b = randomDescriptor(new Rng(seed));
  assert.is(
    JSON.stringify(a, (_k, v) => (typeof v === 'function' ? String(v) : v)),
    JSON.stringify(b, (_k, v) => (typeof v === 'function' ? String(v) : v)),
  );
});

test.run();
