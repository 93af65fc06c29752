// Host input on its way to a device, with backpressure. A device takes only what fits (a 16550A's RX FIFO holds 16
// bytes), so the handler returns how many bytes it took; the pump keeps the rest, pauses the source (stdin or the
// socket stops being read, and the kernel's buffer pushes back on the sender) and offers the rest again — when the
// machine calls retry() (e.g. after the guest drained the FIFO) or, failing that, on a timer that backs off from
// 1 ms to 50 ms while nothing is taken.

/** Receives host bytes; returns how many it took (void: all). Called on the main thread. */
export type InputHandler = (bytes: Uint8Array) => number | void;

export interface FlowControl {
  pause(): void;
  resume(): void;
}

const FIRST_RETRY_MS = 1;
const MAX_RETRY_MS = 50;

export class InputPump {
  private handler: InputHandler | null = null;
  private readonly queue: Uint8Array[] = [];
  private paused = false;
  private timer: NodeJS.Timeout | null = null;
  private retryMs = FIRST_RETRY_MS;
  private closed = false;

  constructor(private readonly flow: FlowControl) {}

  setHandler(handler: InputHandler | null): void {
    this.handler = handler;
    this.retry();
  }

  /** Bytes from the source. */
  push(chunk: Uint8Array): void {
    if (this.closed || chunk.length === 0) return;
    this.queue.push(chunk);
    this.deliver();
  }

  /** Offer pending bytes again now. */
  retry(): void {
    if (this.queue.length > 0) this.deliver();
  }

  /** Bytes waiting for the device. */
  get pending(): number {
    let n = 0;
    for (const chunk of this.queue) n += chunk.length;
    return n;
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private deliver(): void {
    let progressed = false;
    while (this.queue.length > 0 && this.handler !== null) {
      const chunk = this.queue[0];
      const result = this.handler(chunk);
      const taken = result === undefined ? chunk.length : Math.max(0, Math.min(chunk.length, Math.floor(result)));
      if (taken > 0) progressed = true;
      if (taken === chunk.length) {
        this.queue.shift();
        continue;
      }
      this.queue[0] = chunk.subarray(taken);
      break;
    }
    if (this.queue.length === 0) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      this.retryMs = FIRST_RETRY_MS;
      if (this.paused) {
        this.paused = false;
        this.flow.resume();
      }
      return;
    }
    if (!this.paused) {
      this.paused = true;
      this.flow.pause();
    }
    if (this.handler === null) return; // nothing to retry into until a handler is set
    this.retryMs = progressed ? FIRST_RETRY_MS : Math.min(this.retryMs * 2, MAX_RETRY_MS);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retry();
    }, this.retryMs);
    this.timer.unref();
  }
}
