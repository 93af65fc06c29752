// Starting vCPU threads. A worker thread takes ~20 ms to boot and more to load its code, so tsvmm starts them as
// soon as it knows how many it needs — before loading the rest of itself — and hands each its vCPU later (the init
// message). On a restart this start-up would otherwise sit inside the guest's pause.
//
// The thread waits for its init synchronously (Atomics.wait on a signal word, then receiveMessageOnPort), so its
// code has no top-level await and can be loaded as a script from V8's code cache (src/vcpu/thread-loader.ts).
import { Worker } from 'node:worker_threads';
import type { VcpuThreadInit } from './messages.js';

/**
 * What a vCPU thread gets at spawn: word 0 the main thread raises once the init message is posted; word 1 the
 * thread raises once its code (koffi included) is loaded and it waits for the init.
 */
export interface VcpuThreadData {
  readonly signal: SharedArrayBuffer;
}
export const SIGNAL_INIT_POSTED = 0;
export const SIGNAL_LOADED = 1;

/** Where the vCPU thread's code is; a bundled tsvmm sets this to its own loader. */
let workerUrl: URL = new URL('./worker.js', import.meta.url);

export function setVcpuWorkerUrl(url: URL): void {
  workerUrl = url;
}

export class VcpuThread {
  readonly worker: Worker;
  private readonly signal = new SharedArrayBuffer(8);

  constructor() {
    this.worker = new Worker(workerUrl, { workerData: { signal: this.signal } satisfies VcpuThreadData });
  }

  /** Hands the thread its vCPU: it builds its side of the machine and parks, ready to run. */
  start(init: VcpuThreadInit): void {
    this.worker.postMessage(init);
    const word = new Int32Array(this.signal);
    Atomics.store(word, SIGNAL_INIT_POSTED, 1);
    Atomics.notify(word, SIGNAL_INIT_POSTED);
  }

  /**
   * Resolves once the thread has loaded its code (or after `timeoutMs`). Ending a thread while a native addon is
   * still initialising in it aborts the whole process, so a thread is ended only after this.
   */
  async loaded(timeoutMs = 5000): Promise<void> {
    const word = new Int32Array(this.signal);
    if (Atomics.load(word, SIGNAL_LOADED) !== 0) return;
    const wait = Atomics.waitAsync(word, SIGNAL_LOADED, 0, timeoutMs);
    if (wait.async) await wait.value;
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
  await Promise.all(
    started.splice(0).map(async (t) => {
      await t.loaded();
      await t.worker.terminate();
    }),
  );
}
