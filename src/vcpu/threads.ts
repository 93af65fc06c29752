// Starting vCPU threads. A worker thread takes ~20 ms to boot and more to load its code, so tsvmm starts them as
// soon as it knows how many it needs — before loading the rest of itself — and hands each its vCPU later (the init
// message). On a restart this start-up would otherwise sit inside the guest's pause.
//
// The thread waits for its init synchronously (Atomics.wait on a signal word, then receiveMessageOnPort), so its
// code has no top-level await and can be loaded as a script from V8's code cache (src/vcpu/thread-loader.ts).
import { Worker } from 'node:worker_threads';
import type { VcpuThreadInit } from './messages.js';

/** What a vCPU thread gets at spawn: a word the main thread raises once the init message is posted. */
export interface VcpuThreadData {
  readonly signal: SharedArrayBuffer;
}

/** Where the vCPU thread's code is; a bundled tsvmm sets this to its own loader. */
let workerUrl: URL = new URL('./worker.js', import.meta.url);

export function setVcpuWorkerUrl(url: URL): void {
  workerUrl = url;
}

export class VcpuThread {
  readonly worker: Worker;
  private readonly signal = new SharedArrayBuffer(4);

  constructor() {
    this.worker = new Worker(workerUrl, { workerData: { signal: this.signal } satisfies VcpuThreadData });
  }

  /** Hands the thread its vCPU: it builds its side of the machine and parks, ready to run. */
  start(init: VcpuThreadInit): void {
    this.worker.postMessage(init);
    const word = new Int32Array(this.signal);
    Atomics.store(word, 0, 1);
    Atomics.notify(word, 0);
  }
}

const started: VcpuThread[] = [];

/** Starts `count` vCPU threads now; Machine.create adopts them instead of starting its own. */
export function prestartVcpuThreads(count: number): void {
  while (started.length < count) started.push(new VcpuThread());
}

/** A vCPU thread waiting for its init: a pre-started one if there is one, else a new one. */
export function takeVcpuThread(): VcpuThread {
  return started.shift() ?? new VcpuThread();
}

/** Ends pre-started threads nobody took (e.g. -smp was guessed too high). */
export async function discardVcpuThreads(): Promise<void> {
  await Promise.all(started.splice(0).map(t => t.worker.terminate()));
}
