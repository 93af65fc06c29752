// The I/O thread parks promptly while a guest floods virtio-blk — without KVM: the real epoll loop (src/io/loop.ts)
// in a worker serves a real VirtioBlk over guest-driver rings (the back-end tests' FakeTransport), wired as the
// machine wires it: parkRequested from the thread's control block, serveLater re-signalling the queue's eventfd.
// (src/machine/liveness.test.ts does the same with a real guest under KVM.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as libc from '../sys/libc.js';
import { MachineLock } from '../sync/lock.js';
import { IoRequest, IoThreadControl, IoThreadState } from '../io/control.js';
import { runIoLoop } from '../io/loop.js';
import { VirtioBlk } from '../../devices/virtio/blk.js';
import { FakeTransport } from '../../devices/virtio/testing/transport.js';
import type { BufferSpec } from '../../devices/virtio/testing/driver.js';

interface FloodWorkerData {
  control: SharedArrayBuffer;
  controlFd: number;
  lock: SharedArrayBuffer;
  kick: number;
  disk: number;
  /** [0]: chains queued, [1]: chains completed. */
  counts: SharedArrayBuffer;
}

/** Requests and their size: 16 reads of 1022 x 4 MiB onto one buffer, as examples/guests/blk-flood.c queues. */
const REQUESTS = 16;
const PIECES = 1022;
const BUFFER = 4 << 20;

if (!isMainThread) {
  const d = workerData as FloodWorkerData;
  const control = new IoThreadControl(d.controlFd, d.control);
  const lock = new MachineLock(d.lock);
  const counts = new Int32Array(d.counts);
  const one = new BigUint64Array([1n]);
  const t = new FakeTransport(new VirtioBlk({ fd: d.disk }), { ramSize: 16 << 20 });
  t.parkWanted = () => control.request !== IoRequest.Run;
  t.serveLater = () => void libc.write(d.kick, one);
  t.start();
  const q = t.drivers[0];
  const buffer = t.allocator.alloc(BUFFER, 4096);
  for (let i = 0; i < REQUESTS; i++) {
    const data = Array.from({ length: PIECES }, (): BufferSpec => ({ gpa: buffer, length: BUFFER, write: true }));
    q.add([{ data: new Uint8Array(16) }, ...data, { length: 1, write: true }], { indirect: true });
  }
  Atomics.store(counts, 0, REQUESTS);
  control.announce(libc.gettid());
  runIoLoop({
    control,
    lock,
    watches: [
      {
        name: 'blk/queue0',
        fd: d.kick,
        kind: 'eventfd',
        group: 'blk',
        ready: () => {
          t.kick(0);
          Atomics.add(counts, 1, q.takeUsed().length);
        },
      },
    ],
  });
  control.exited();
} else {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** A hang guard for a park that must come at once (before the fix it waited for 64 GiB of reads). */
  const PARK_GUARD_MS = 5000;

  test('I/O thread: asked to park while serving 16 virtio-blk reads of 4 GiB each, it parks within the guard and stops cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-io-park-'));
    const disk = openSync(join(dir, 'disk.img'), 'w+');
    ftruncateSync(disk, 4 * 2 ** 30); // sparse: reads are served (zeroes), just many of them
    const control = IoThreadControl.create();
    const lock = new MachineLock();
    const kick = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    const counts = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(new URL(import.meta.url), {
      workerData: {
        control: control.buffer,
        controlFd: control.wakeFd,
        lock: lock.buffer,
        kick,
        disk,
        counts: counts.buffer,
      } satisfies FloodWorkerData,
    });
    const exited = new Promise((r) => worker.once('exit', r));
    try {
      while (control.state !== IoThreadState.Running) await sleep(5);
      libc.write(kick, new BigUint64Array([1n])); // the guest's one kick
      await sleep(100);
      const started = performance.now();
      control.requestPause();
      const parked = await control.waitParked(PARK_GUARD_MS);
      const took = performance.now() - started;
      assert.ok(parked, `not parked after ${Math.round(took)} ms (${counts[1]} of ${counts[0]} requests done)`);
      assert.ok(counts[1] < REQUESTS, 'the flood was still being served when the park came');
      // While parked the machine lock is free (a checkpoint takes it) and nothing runs.
      assert.ok(lock.with(() => true));
      const done = counts[1];
      await sleep(200);
      assert.is(counts[1], done, 'parked: no request completes');
      control.resume();
      await sleep(100);
      control.requestStop();
      const stop = await Promise.race([exited.then(() => 'exited'), sleep(PARK_GUARD_MS).then(() => 'still running')]);
      assert.is(stop, 'exited', 'a stop mid-flood ends the thread at its next piece');
    } finally {
      await worker.terminate();
      control.close();
      libc.close(kick);
      closeSync(disk);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.run();
}
