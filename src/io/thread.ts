// The main thread's handle on the I/O thread: start it over the machine's shared state, pause it around a
// checkpoint, resume it, stop it when the machine ends.
import { Worker } from 'node:worker_threads';
import { IoThreadControl, type IoThreadState } from './control.js';
import type { IoThreadEvent, IoThreadInit } from './messages.js';

/** Where the I/O thread's code is; a bundled tsvmm points this at its own bundle (as setVcpuWorkerUrl). */
let ioWorkerUrl: URL = new URL('./worker.js', import.meta.url);

export function setIoWorkerUrl(url: URL): void {
  ioWorkerUrl = url;
}

export class IoThread {
  readonly worker: Worker;
  /** Resolves when the thread has ended (cleanly or not). */
  readonly exited: Promise<void>;
  private ended = false;

  private constructor(
    readonly control: IoThreadControl,
    init: IoThreadInit,
    onEvent: (e: IoThreadEvent) => void,
    onCrash: (e: Error) => void,
  ) {
    this.worker = new Worker(ioWorkerUrl, { workerData: init });
    this.worker.on('message', (e: IoThreadEvent) => onEvent(e));
    this.worker.on('error', (e) => onCrash(e));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', () => {
        this.ended = true;
        control.exited(); // a thread that died without saying so counts as gone for waitParked
        resolve();
      }),
    );
  }

  /**
   * Starts the thread. It builds its devices and runs at once unless `paused` (then it parks before its first
   * wait, and resume() lets it go) — a machine created paused (-S, -incoming) starts it paused.
   */
  static start(
    init: Omit<IoThreadInit, 'control' | 'controlFd'>,
    {
      paused = false,
      onEvent = () => {},
      onCrash = () => {},
    }: { paused?: boolean; onEvent?: (e: IoThreadEvent) => void; onCrash?: (e: Error) => void } = {},
  ): IoThread {
    const control = IoThreadControl.create();
    if (paused) control.requestPause();
    return new IoThread(control, { ...init, control: control.buffer, controlFd: control.wakeFd }, onEvent, onCrash);
  }

  /**
   * Resolves once a thread started paused has built its devices and parked: from then on a guest's first kick is
   * served at once. (A Node worker takes seconds to start on a slow machine; a guest that ran meanwhile saw its
   * first virtio request wait that long.) Throws if the thread does not get there within `timeoutMs`.
   */
  async ready(timeoutMs: number): Promise<void> {
    if (!(await this.control.waitParked(timeoutMs))) {
      throw new Error(`the I/O thread did not start within ${Math.round(timeoutMs / 1000)} s`);
    }
  }

  get state(): IoThreadState {
    return this.control.state;
  }

  /** Parks the thread (between batches, outside the machine lock). Throws if it does not park in time. */
  async pause(timeoutMs = 5000): Promise<void> {
    this.control.requestPause();
    if (!(await this.control.waitParked(timeoutMs))) throw new Error(`I/O thread did not park within ${timeoutMs} ms`);
  }

  /** As pause(), blocking this thread (inside a checkpoint's pause). */
  pauseSync(timeoutMs = 5000): void {
    this.control.requestPause();
    if (!this.control.waitParkedSync(timeoutMs)) throw new Error(`I/O thread did not park within ${timeoutMs} ms`);
  }

  resume(): void {
    this.control.resume();
  }

  /** Ends the thread; resolves true once it has exited (false after `timeoutMs`, the thread then terminated). */
  async stop(timeoutMs = 5000): Promise<boolean> {
    if (!this.ended) this.control.requestStop();
    const clean = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref()),
    ]);
    if (!clean) await this.worker.terminate();
    this.control.close();
    return clean;
  }
}
