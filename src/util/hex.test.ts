import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hex, hexDigits } from './hex.js';

test('hex: numbers and bigints as 0x and lower-case digits, no padding unless asked', () => {
  assert.is(hex(0), '0x0');
  assert.is(hex(0x1f), '0x1f');
  assert.is(hex(0xffff_ffff), '0xffffffff');
  assert.is(hex(0xffffffff81000000n), '0xffffffff81000000');
});

test('hex: a width pads with zeros and never truncates', () => {
  assert.is(hex(0x1f, 8), '0x0000001f');
  assert.is(hex(0x12n, 16), '0x0000000000000012');
  assert.is(hex(0x12345, 4), '0x12345');
});

test('hexDigits: the same digits without the prefix', () => {
  assert.is(hexDigits(0x1af4, 4), '1af4');
  assert.is(hexDigits(0x10, 6), '000010');
  assert.is(hexDigits(255), 'ff');
});

test.run();
