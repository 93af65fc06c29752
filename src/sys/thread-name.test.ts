// setThreadName names the calling thread only, as ps and /proc show it (tsvmm's vCPU threads are `CPU n/KVM`).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { gettid, getpid } from './libc.js';

const comm = (tid: number) => readFileSync(`/proc/${getpid()}/task/${tid}/comm`, 'utf8').trim();

test('thread name: a worker names itself; the main thread keeps its name; names are cut at 15 bytes', async () => {
  const mainName = comm(gettid());
  const libc = new URL('./libc.js', import.meta.url).href;
  const worker = new Worker(
    `import(${JSON.stringify(libc)}).then((l) => {
       l.setThreadName('CPU 7/KVM');
       const named = l.gettid();
       require('node:worker_threads').parentPort.postMessage(named);
     });`,
    { eval: true },
  );
  const tid = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  try {
    assert.is(comm(tid), 'CPU 7/KVM');
    assert.is(comm(gettid()), mainName, 'the main thread is not renamed');
  } finally {
    await worker.terminate();
  }
  const long = new Worker(
    `import(${JSON.stringify(libc)}).then((l) => {
       l.setThreadName('a name longer than fifteen bytes');
       require('node:worker_threads').parentPort.postMessage(l.gettid());
     });`,
    { eval: true },
  );
  const longTid = await new Promise<number>((resolve) => long.once('message', resolve));
  try {
    assert.is(comm(longTid), 'a name longer t');
  } finally {
    await long.terminate();
  }
});

test.run();
