// An EINTR storm: a thread of the test process sends `signal` to every thread of another process, over and over
// (each round, then a pause of about 100 µs), so every blocking call there — KVM_RUN, epoll_wait, futex waits,
// reads and writes — keeps being interrupted. tgkill reaches each thread, not just whichever the kernel picks.
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { readdirSync } from 'node:fs';
import { tgkill } from '../../src/sys/libc.js';

interface StormData {
  pid: number;
  signal: number;
  durationMs: number;
  pauseMs: number;
}

export interface StormReport {
  /** Signals delivered. */
  sent: number;
  /** The most threads the process had during the storm. */
  threads: number;
  ms: number;
}

/** Storms `pid` with `signal` for `durationMs`; resolves with what was sent (the process may end meanwhile). */
export function signalStorm(pid: number, signal: number, durationMs: number, pauseMs = 0.1): Promise<StormReport> {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { pid, signal, durationMs, pauseMs } satisfies StormData,
  });
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

function threadsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return []; // the process ended
  }
}

function storm({ pid, signal, durationMs, pauseMs }: StormData): StormReport {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const start = Date.now();
  let sent = 0;
  let most = 0;
  let tids = threadsOf(pid);
  let listedAt = start;
  while (Date.now() - start < durationMs && tids.length > 0) {
    for (const tid of tids) {
      try {
        tgkill(pid, tid, signal);
        sent++;
      } catch {
        // The thread ended since the list was made.
      }
    }
    Atomics.wait(pause, 0, 0, pauseMs);
    if (Date.now() - listedAt > 100) {
      // Threads come and go (vCPU and I/O threads start late; Node's helpers): list them again now and then.
      tids = threadsOf(pid);
      listedAt = Date.now();
    }
    most = Math.max(most, tids.length);
  }
  return { sent, threads: most, ms: Date.now() - start };
}

if (!isMainThread && (workerData as StormData | undefined)?.pid)
  parentPort!.postMessage(storm(workerData as StormData));
