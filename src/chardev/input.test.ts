import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { InputPump } from './input.js';

function setup() {
  const flow: string[] = [];
  const pump = new InputPump({ pause: () => flow.push('pause'), resume: () => flow.push('resume') });
  return { flow, pump };
}

test('input: bytes the device cannot take wait, and the source is paused until they are taken', async () => {
  const { flow, pump } = setup();
  const got: number[] = [];
  let room = 2;
  pump.setHandler((bytes) => {
    const n = Math.min(room, bytes.length);
    got.push(...bytes.subarray(0, n));
    room -= n;
    return n;
  });
  pump.push(Uint8Array.from([1, 2, 3, 4, 5]));
  assert.equal(got, [1, 2]);
  assert.is(pump.pending, 3);
  assert.equal(flow, ['pause']);
  room = 2;
  pump.retry();
  assert.equal(got, [1, 2, 3, 4]);
  assert.equal(flow, ['pause']);
  room = 10;
  // The retry timer (backed off to at most 50 ms) offers the rest; on a loaded machine it may come much later.
  for (let waited = 0; got.length < 5 && waited < 10_000; waited += 10) await sleep(10);
  assert.equal(got, [1, 2, 3, 4, 5]);
  assert.equal(flow, ['pause', 'resume']);
  pump.close();
});

test('input: input before a handler is set waits for it', () => {
  const { pump } = setup();
  pump.push(Uint8Array.from([9]));
  const got: number[] = [];
  pump.setHandler((bytes) => {
    got.push(...bytes);
  });
  assert.equal(got, [9]);
  pump.close();
});

test.run();
