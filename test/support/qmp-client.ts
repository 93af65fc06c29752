// A small QMP client for tests that drive a running tsvmm: negotiates capabilities, runs commands (a QMP error
// becomes a thrown QmpClientError with its class), and keeps every event for later assertions.
import net from 'node:net';
import { HANG_GUARD_MS } from './hang-guard.js';

export class QmpClientError extends Error {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${errorClass}: ${desc}`);
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export class QmpClient {
  readonly events: QmpEvent[] = [];
  private buffer = '';
  private readonly replies: Array<Record<string, unknown>> = [];
  private readonly wakers: Array<() => void> = [];
  private closedFlag = false;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      this.buffer += text;
      for (let end = this.buffer.indexOf('\n'); end >= 0; end = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, end).trim();
        this.buffer = this.buffer.slice(end + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) this.events.push(msg as unknown as QmpEvent);
        else this.replies.push(msg);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.wake();
    });
    socket.on('error', () => {
      this.closedFlag = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }

  private async until<T>(take: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = take();
      if (v !== undefined) return v;
      if (this.closedFlag) throw new Error(`qmp: connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`qmp: no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wakers.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = HANG_GUARD_MS): Promise<QmpClient> {
    const socket = net.createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new QmpClient(socket);
    await client.until(() => client.replies.shift(), timeoutMs, 'greeting');
    await client.execute('qmp_capabilities');
    return client;
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = HANG_GUARD_MS): Promise<any> {
    this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const reply = await this.until(() => this.replies.shift(), timeoutMs, `reply to ${command}`);
    if ('error' in reply) {
      const e = reply.error as { class: string; desc: string };
      throw new QmpClientError(e.class, e.desc);
    }
    return reply.return;
  }

  /** The first event named `name` at or after index `from` (waits for it). */
  async waitEvent(
    name: string,
    timeoutMs = HANG_GUARD_MS,
    match: (e: QmpEvent) => boolean = () => true,
  ): Promise<QmpEvent> {
    return this.until(() => this.events.find((e) => e.event === name && match(e)), timeoutMs, `event ${name}`);
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  close(): void {
    this.socket.destroy();
  }
}
