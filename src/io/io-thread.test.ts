import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import * as libc from '../sys/libc.js';
import { MachineLock } from '../sync/lock.js';
import { Doorbell } from '../runtime/doorbell.js';
import { IoThreadControl, IoThreadState } from './control.js';
import { runIoLoop } from './loop.js';
import { IoThread } from './thread.js';

interface LoopWorkerData {
  control: SharedArrayBuffer;
  controlFd: number;
  lock: SharedArrayBuffer;
  counts: SharedArrayBuffer;
  a: number;
  b: number;
}

// A worker running the I/O loop over two watches: eventfd `a` (counted, lock checked) and a readable fd `b` whose
// handler never reads it and says it has no room (false), so it must stay quiet until `a` fires again.
if (!isMainThread) {
  const d = workerData as LoopWorkerData;
  const control = new IoThreadControl(d.controlFd, d.control);
  const lock = new MachineLock(d.lock);
  const counts = new Int32Array(d.counts);
  control.announce(libc.gettid());
  runIoLoop({
    control,
    lock,
    watches: [
      {
        name: 'a',
        fd: d.a,
        kind: 'eventfd',
        group: 'dev',
        ready: () => {
          Atomics.add(counts, 0, 1);
          if (lock.held) Atomics.store(counts, 2, 1);
        },
      },
      {
        name: 'b',
        fd: d.b,
        kind: 'readable',
        group: 'dev',
        ready: () => {
          Atomics.add(counts, 1, 1);
          return false;
        },
      },
    ],
  });
  control.exited();
} else {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(2);
    }
  }
  const one = new BigUint64Array([1n]);

  test('io thread: eventfd watches run under the machine lock; a full readable fd waits for its group; pause and stop', async () => {
    const control = IoThreadControl.create();
    const lock = new MachineLock();
    const counts = new Int32Array(new SharedArrayBuffer(12));
    const a = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    const b = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    const worker = new Worker(new URL(import.meta.url), {
      workerData: {
        control: control.buffer,
        controlFd: control.wakeFd,
        lock: lock.buffer,
        counts: counts.buffer,
        a,
        b,
      } satisfies LoopWorkerData,
    });
    const exited = new Promise((r) => worker.once('exit', r));
    try {
      await until('the thread to run', () => control.state === IoThreadState.Running);
      libc.write(a, one);
      await until('watch a', () => counts[0] === 1);
      assert.is(counts[2], 1, 'the handler ran with the machine lock held');

      libc.write(b, one);
      await until('watch b', () => counts[1] === 1);
      await sleep(50);
      assert.is(counts[1], 1, 'b is still readable but not reported again: no busy loop');
      libc.write(a, one); // the guest made room: b is re-armed with a's group
      await until('a again and b re-armed', () => counts[0] === 2 && counts[1] === 2);

      control.requestPause();
      assert.ok(await control.waitParked(2000));
      assert.is(control.state, IoThreadState.Parked);
      libc.write(a, one);
      await sleep(50);
      assert.is(counts[0], 2, 'parked: nothing runs');
      // While parked the lock is free for a checkpoint.
      assert.ok(lock.with(() => true));
      control.resume();
      await until('the notification made while parked', () => counts[0] === 3);

      control.requestStop();
      await exited;
      assert.is(control.state, IoThreadState.Exited);
    } finally {
      await worker.terminate();
      control.close();
      libc.close(a);
      libc.close(b);
    }
  });

  test("io thread: the machine's I/O thread starts paused, resumes, parks on request and stops cleanly", async () => {
    const lock = new MachineLock();
    const io = IoThread.start(
      {
        vmFd: -1,
        ram: [],
        arena: new SharedArrayBuffer(8),
        devices: [],
        outputs: {},
        lock: lock.buffer,
        doorbell: new Doorbell().buffer,
        msi: null,
        ioEvents: null,
      },
      {
        paused: true,
        onCrash: (e) => {
          throw e;
        },
      },
    );
    try {
      await io.pause(10_000); // the first park, after its start-up
      assert.is(io.state, IoThreadState.Parked);
      io.resume();
      await until('running', () => io.state === IoThreadState.Running);
      io.pauseSync(2000);
      assert.is(io.state, IoThreadState.Parked);
      io.resume();
      const clean = await io.stop(5000);
      assert.ok(clean, 'exited by itself');
      assert.is(io.state, IoThreadState.Exited);
    } finally {
      await io.worker.terminate();
    }
  });

  test('io thread: stop wakes a thread that sleeps in epoll_wait', async () => {
    const io = IoThread.start({
      vmFd: -1,
      ram: [],
      arena: new SharedArrayBuffer(8),
      devices: [],
      outputs: {},
      lock: new MachineLock().buffer,
      doorbell: new Doorbell().buffer,
      msi: null,
      ioEvents: null,
    });
    await until('running', () => io.state === IoThreadState.Running, 10_000);
    await sleep(20);
    // The thread sleeps in epoll_wait(-1): unless stop() wakes it, it never stops, and stop() says false after 5 s.
    assert.ok(await io.stop(5000), 'stop() woke the thread');
  });

  test.run();
}
