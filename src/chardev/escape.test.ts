import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EscapeFilter, CTRL_A } from './escape.js';

function setup() {
  const calls: string[] = [];
  const filter = new EscapeFilter({ quit: () => calls.push('quit'), help: () => calls.push('help') });
  const run = (...bytes: number[]) => [...filter.filter(Uint8Array.from(bytes))];
  return { calls, run, filter };
}

test('escape: input without Ctrl-a passes through untouched (same array)', () => {
  const { filter } = setup();
  const input = Uint8Array.from([0x61, 0x03, 0x0d]);
  assert.is(filter.filter(input), input);
});

test('escape: Ctrl-a x quits', () => {
  const { calls, run } = setup();
  assert.equal(run(0x61, CTRL_A, 0x78, 0x62), [0x61, 0x62]);
  assert.equal(calls, ['quit']);
});

test('escape: Ctrl-a Ctrl-a sends one Ctrl-a', () => {
  const { calls, run } = setup();
  assert.equal(run(CTRL_A, CTRL_A, 0x7a), [CTRL_A, 0x7a]);
  assert.equal(calls, []);
});

test('escape: Ctrl-a h prints help; other keys after Ctrl-a are swallowed', () => {
  const { calls, run } = setup();
  assert.equal(run(CTRL_A, 0x68, CTRL_A, 0x63, 0x41), [0x41]);
  assert.equal(calls, ['help']);
});

test('escape: a Ctrl-a at the end of one read applies to the next', () => {
  const { calls, run } = setup();
  assert.equal(run(0x31, CTRL_A), [0x31]);
  assert.equal(run(0x78), []);
  assert.equal(calls, ['quit']);
});

test.run();
