// What every character backend shares: the output slot (the fd writers on any thread use), the input pump, and the
// CharBackend interface the machine sees.
import type { CharOut } from '../bus/types.js';
import { close as sysClose } from '../sys/libc.js';
import { OutputSlot, SharedFdOut, DEFAULT_STALL_LIMIT_MS, type CharOutTransfer } from './char-out.js';
import { InputPump, type InputHandler } from './input.js';
import type { CharSpec } from './spec.js';

export interface CharBackendOptions {
  /** Host input for the device (main thread). May also be set later with setInputHandler. */
  onInput?: InputHandler;
  /** Ctrl-a x on a stdio terminal. Without it, tsvmm restores the terminal and sends itself SIGTERM. */
  onQuit?: () => void;
  /** How long output waits for a reader that does not read before it is dropped (default 100 ms). */
  stallLimitMs?: number;
  /** One-line notices: waiting for a socket client, client connected/left. Default: stderr. */
  log?: (message: string) => void;
}

/** The main thread's handle on a host character backend. */
export interface CharBackend {
  readonly spec: CharSpec;
  /** `stdio`, `file:/tmp/x`, `unix:/run/vm.sock`, … */
  readonly label: string;
  /** Output from the main thread (the same fd the transferable reaches). */
  readonly out: CharOut & { readonly dropped: number };
  /** For a vCPU worker: pass through workerData, then `openCharOut(transfer)` there. */
  transferable(): CharOutTransfer;
  /** Where host input goes; input that arrives before a handler is set waits (the source is paused). */
  setInputHandler(handler: InputHandler | null): void;
  /** Offer input the device could not take yet again (call when the guest has drained its FIFO). */
  retryInput(): void;
  /** Input bytes waiting for the device. */
  readonly pendingInput: number;
  /** True while output reaches a reader: a socket client is connected; always for stdio/file/pipe; never for null. */
  readonly connected: boolean;
  /** Output bytes dropped so far (no reader, write errors, stalled reader). */
  readonly droppedBytes: number;
  /** Stop input, close fds and sockets, restore the terminal. Idempotent. */
  close(): Promise<void>;
}

export const defaultLog = (message: string): void => {
  process.stderr.write(`tsvmm: ${message}\n`);
};

export abstract class BackendBase implements CharBackend {
  readonly out: SharedFdOut;
  protected readonly slot: OutputSlot;
  protected readonly pump: InputPump;
  protected readonly log: (message: string) => void;
  protected closed = false;

  constructor(
    readonly spec: CharSpec,
    readonly label: string,
    options: CharBackendOptions,
  ) {
    this.slot = new OutputSlot(label, options.stallLimitMs ?? DEFAULT_STALL_LIMIT_MS);
    this.out = new SharedFdOut(this.slot.transfer);
    this.pump = new InputPump({ pause: () => this.pauseInput(), resume: () => this.resumeInput() });
    this.log = options.log ?? defaultLog;
    if (options.onInput) this.pump.setHandler(options.onInput);
  }

  transferable(): CharOutTransfer {
    return this.slot.transfer;
  }

  setInputHandler(handler: InputHandler | null): void {
    this.pump.setHandler(handler);
  }

  retryInput(): void {
    this.pump.retry();
  }

  get pendingInput(): number {
    return this.pump.pending;
  }

  get connected(): boolean {
    return this.slot.fd >= 0;
  }

  get droppedBytes(): number {
    return this.slot.dropped;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pump.close();
    await this.shutdown();
  }

  /** Stop reading the input source (the device is full). */
  protected pauseInput(): void {}
  protected resumeInput(): void {}
  /** Release what the backend owns; input has already stopped. */
  protected abstract shutdown(): Promise<void> | void;

  /** Point writers at `fd` (-1: none) and close the fd they used before, once nobody writes to it. */
  protected replaceOutputFd(fd: number, closeOld = true): void {
    const old = this.slot.swap(fd);
    if (closeOld && old >= 0) sysClose(old);
  }
}
