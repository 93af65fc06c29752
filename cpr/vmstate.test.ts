import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { u8, u16, u32, u64, bool, bytes, struct, structArray, array, newRecord, layoutOf, type Descriptor } from './vmstate.js';

const inner = { name: 'inner', version: 1, fields: [u16('a'), u32('b')] } as const satisfies Descriptor;
const outer = {
  name: 'outer', version: 2, fields: [
    u8('x'), u64('big'), bool('flag'), bytes('fifo', 16, { lengthField: 'x' }), struct('child', inner),
    structArray('kids', inner, 3), array('regs', 'u32', 4),
  ],
  subsections: [{ name: 'outer/extra', version: 1, fields: [u32('extra')], needed: (s: { extra: number }) => s.extra !== 0 }],
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
  s.fifo[3] = 9; s.child.b = 0xdeadbeef; s.kids[2].a = 5; s.regs[1] = 77;
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

test.run();
