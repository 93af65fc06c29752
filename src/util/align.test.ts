import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignUp } from './align.js';

test('alignUp: rounds up to the next multiple, keeps a multiple as it is', () => {
  assert.is(alignUp(0, 8), 0);
  assert.is(alignUp(1, 8), 8);
  assert.is(alignUp(8, 8), 8);
  assert.is(alignUp(0x1001, 0x1000), 0x2000);
  assert.is(alignUp(10, 3), 12);
});

test('alignUp: beyond 32 bits it does not wrap', () => {
  assert.is(alignUp(2 ** 32 + 1, 2 ** 21), 2 ** 32 + 2 ** 21);
  assert.is(alignUp(2 ** 31 + 3, 4), 2 ** 31 + 4);
});

test.run();
