import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { MachineLock } from './lock.js';

const rounds = 20_000;

/** A non-atomic read-modify-write with a delay inside: without mutual exclusion, updates get lost. */
function hammer(lock: MachineLock, counter: Int32Array): void {
  for (let i = 0; i < rounds; i++) {
    lock.with(() => {
      const v = counter[0];
      for (let k = 0; k < 20; k++);
      counter[0] = v + 1;
    });
  }
}

if (!isMainThread) {
  hammer(new MachineLock(workerData.lock), new Int32Array(workerData.counter));
} else {
  test('lock: with() releases the lock even when the body throws', () => {
    const lock = new MachineLock();
    assert.throws(
      () =>
        lock.with(() => {
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.is(lock.held, false);
  });

  test('lock: increments from two worker threads and the main thread are never lost', async () => {
    const lock = new MachineLock();
    const counter = new Int32Array(new SharedArrayBuffer(4));
    const workers = [0, 1].map(
      () => new Worker(new URL(import.meta.url), { workerData: { lock: lock.buffer, counter: counter.buffer } }),
    );
    hammer(lock, counter);
    await Promise.all(workers.map((w) => new Promise((resolve) => w.on('exit', resolve))));
    assert.is(counter[0], rounds * 3);
  });

  test.run();
}
