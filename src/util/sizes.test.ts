import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GiB, KiB, MiB, TiB } from './sizes.js';

test('sizes: each unit is 1024 of the one before', () => {
  assert.is(KiB, 1024);
  assert.is(MiB, 1024 * 1024);
  assert.is(GiB, 2 ** 30);
  assert.is(TiB, 2 ** 40);
});

test.run();
