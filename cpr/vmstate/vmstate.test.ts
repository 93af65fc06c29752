import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  u8,
  u16,
  u32,
  u64,
  bool,
  bytes,
  struct,
  structArray,
  array,
  newRecord,
  layoutOf,
  str,
  setString,
  getString,
  VmstateError,
  type Descriptor,
} from './vmstate.js';

const inner = { name: 'inner', version: 1, fields: [u16('a'), u32('b')] } as const satisfies Descriptor;
const outer = {
  name: 'outer',
  version: 2,
  fields: [
    u8('x'),
    u64('big'),
    bool('flag'),
    bytes('fifo', 16, { lengthField: 'x' }),
    struct('child', inner),
    structArray('kids', inner, 3),
    array('regs', 'u32', 4),
  ],
  subsections: [
    { name: 'outer/extra', version: 1, fields: [u32('extra')], needed: (s: { extra: number }) => s.extra !== 0 },
  ],
} as const satisfies Descriptor;

test('vmstate: scalars place at natural alignment and read back what was written', () => {
  const s = newRecord(outer);
  s.x = 300; // u8 wraps like the hardware register it models
  s.big = 0x1_0000_0001n;
  s.flag = true;
  s.extra = 7;
  assert.is(s.x, 300 & 0xff);
  assert.is(s.big, 0x1_0000_0001n);
  assert.is(s.flag, true);
  assert.is(s.extra, 7);
  assert.is(layoutOf(outer).byName.get('big')!.offset % 8, 0);
});

test('vmstate: arrays and nested records are views into the same buffer', () => {
  const s = newRecord(outer);
  s.fifo[3] = 9;
  s.child.b = 0xdeadbeef;
  s.kids[2].a = 5;
  s.regs[1] = 77;
  const raw = new Uint8Array(s.$buffer);
  assert.ok(raw.includes(9));
  assert.is(s.child.b, 0xdeadbeef);
  assert.is(s.kids[2].a, 5);
  assert.is(s.kids[1].a, 0);
});

test('vmstate: a length field must be an integer scalar', () => {
  const bad = { name: 'bad', version: 1, fields: [bool('n'), bytes('b', 4, { lengthField: 'n' })] } as const;
  assert.throws(() => layoutOf(bad), /length field 'n'/);
});

const withPath = {
  name: 'with-path',
  version: 1,
  fields: [u8('mode'), ...str('path', 8)],
} as const satisfies Descriptor;

test('vmstate: str() declares a u32 length before its byte buffer', () => {
  const layout = layoutOf(withPath);
  assert.equal(
    withPath.fields.map((f) => f.name),
    ['mode', 'pathLength', 'path'],
  );
  assert.is(layout.byName.get('path')!.size, 8);
  assert.is((layout.byName.get('path')!.field as { lengthField?: string }).lengthField, 'pathLength');
});

test('vmstate: setString stores UTF-8 and its length; getString gives it back', () => {
  const s = newRecord(withPath);
  setString(s, 'path', 'ab/é');
  assert.is(s.pathLength, 5);
  assert.is(getString(s, 'path'), 'ab/é');
  setString(s, 'path', 'x');
  assert.equal([...s.path], [0x78, 0, 0, 0, 0, 0, 0, 0], 'a shorter string clears what the longer one left');
});

test('vmstate: a string longer than its capacity is refused', () => {
  const s = newRecord(withPath);
  assert.throws(
    () => setString(s, 'path', '123456789'),
    (e: Error) => e instanceof VmstateError && /string of 9 bytes exceeds its capacity of 8/.test(e.message),
  );
  assert.is(s.pathLength, 0, 'the record is unchanged');
});

test('vmstate: getString refuses a length beyond capacity or bytes that are not UTF-8', () => {
  const s = newRecord(withPath);
  s.pathLength = 9;
  assert.throws(() => getString(s, 'path'), /length 9 exceeds its capacity of 8/);
  s.pathLength = 1;
  s.path[0] = 0xff;
  assert.throws(() => getString(s, 'path'), /not valid UTF-8/);
});

test.run();
