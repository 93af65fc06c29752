// Starting vCPU threads. A worker thread takes ~20 ms to boot and more to load its modules, so tsvmm starts them
// as early as it knows how many it needs — before loading the rest of itself — and hands each its vCPU later
// (the init message). On a restart this start-up would otherwise sit inside the guest's pause.
import { Worker } from 'node:worker_threads';

/** Where the vCPU thread's code is; a bundled tsvmm sets this to its own worker bundle. */
let workerUrl: URL = new URL('./worker.js', import.meta.url);

export function setVcpuWorkerUrl(url: URL): void {
  workerUrl = url;
}

const started: Worker[] = [];

/** Threads the launcher started before tsvmm's code was even loaded (dist/tsvmm.mjs). */
export function adoptVcpuThreads(threads: readonly Worker[]): void {
  started.push(...threads);
}

/** Starts `count` vCPU threads now; Machine.create adopts them instead of starting its own. */
export function prestartVcpuThreads(count: number): void {
  while (started.length < count) started.push(new Worker(workerUrl, { workerData: null }));
}

/** A vCPU thread waiting for its init message: a pre-started one if there is one, else a new one. */
export function takeVcpuThread(): Worker {
  return started.shift() ?? new Worker(workerUrl, { workerData: null });
}

/** Ends pre-started threads nobody took (e.g. the VM could not be created). */
export async function discardVcpuThreads(): Promise<void> {
  await Promise.all(started.splice(0).map(w => w.terminate()));
}
