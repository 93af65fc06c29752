import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { le16, le32, u32At } from './le-bytes.js';

test('le16/le32: the low bytes first, wider values cut to the field', () => {
  assert.equal(le16(0x1234), [0x34, 0x12]);
  assert.equal(le16(0x12345), [0x45, 0x23]);
  assert.equal(le32(0xfee00000), [0x00, 0x00, 0xe0, 0xfe]);
  assert.equal(le32(0x1_0000_0001), [1, 0, 0, 0]);
});

test('u32At: reads what le32 wrote, unsigned', () => {
  const bytes = Uint8Array.from([0xaa, ...le32(0xffff_fffe), 0xbb]);
  assert.is(u32At(bytes, 1), 0xffff_fffe);
  assert.is(u32At(Uint8Array.from(le32(0x1badb002)), 0), 0x1badb002);
});

test.run();
