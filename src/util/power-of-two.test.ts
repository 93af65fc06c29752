import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isPowerOfTwo } from './power-of-two.js';

test('isPowerOfTwo: 1, 2, 4 … 2^52 are; 0, 3, 6, negatives and fractions are not', () => {
  for (let k = 0; k <= 52; k++) assert.ok(isPowerOfTwo(2 ** k), `2^${k}`);
  for (const n of [0, 3, 6, 0x1001, -4, 0.5, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.not.ok(isPowerOfTwo(n), String(n));
  }
});

test('isPowerOfTwo: exact where 32-bit bitwise tests and rounded logarithms go wrong', () => {
  assert.not.ok(isPowerOfTwo(2 ** 32 + 2), 'the low 32 bits alone would say yes');
  assert.not.ok(isPowerOfTwo(2 ** 52 - 1), 'Math.log2 rounds this to 52');
  assert.not.ok(isPowerOfTwo(2 ** 53), 'not a safe integer');
});

test.run();
