// The bench's QMP client: QEMU's wire protocol over a unix socket, as any controller speaks it. Unlike the test
// client it tags each command with an `id` (so commands can be pipelined and their replies matched) and stamps
// every reply and event with the CLOCK_REALTIME time it arrived, so the controller's own steps can be placed on
// the same axis as the VMMs' phase marks and the guest's debugcon stamps.
import net from 'node:net';
import { realtimeUs } from './clock.js';
import { guardMs } from '../lib/where.js';

export class QmpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${command}: ${errorClass}: ${desc}`);
  }
}

export interface QmpReply<T = any> {
  value: T;
  /** CLOCK_REALTIME µs when the reply was parsed. */
  atUs: number;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, any>;
  atUs: number;
}

interface Pending {
  command: string;
  resolve: (r: QmpReply) => void;
  reject: (e: Error) => void;
}

export class Qmp {
  readonly events: QmpEvent[] = [];
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private greeting: ((v: unknown) => void) | null = null;
  private eventWaiters: Array<() => void> = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.setNoDelay?.(true);
    socket.on('data', (text: string) => this.onData(text));
    const closed = (e?: Error) => {
      this.closedError ??= e ?? new Error('QMP connection closed');
      for (const p of this.pending.values()) p.reject(new Error(`${p.command}: ${this.closedError.message}`));
      this.pending.clear();
      for (const w of this.eventWaiters.splice(0)) w();
    };
    socket.on('close', () => closed());
    socket.on('error', (e) => closed(e));
  }

  private onData(text: string): void {
    const atUs = realtimeUs();
    this.buffer += text;
    for (let end = this.buffer.indexOf('\n'); end >= 0; end = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, end).trim();
      this.buffer = this.buffer.slice(end + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, any>;
      if ('QMP' in msg) {
        this.greeting?.(msg);
        this.greeting = null;
      } else if ('event' in msg) {
        this.events.push({ event: msg.event, data: msg.data, atUs });
        for (const w of this.eventWaiters.splice(0)) w();
      } else {
        const p = this.pending.get(msg.id);
        if (!p) continue;
        this.pending.delete(msg.id);
        if ('error' in msg) p.reject(new QmpCommandError(p.command, msg.error.class, msg.error.desc));
        else p.resolve({ value: msg.return, atUs });
      }
    }
  }

  /** Connects to a listening QMP socket, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = guardMs(10_000)): Promise<Qmp> {
    const socket = net.createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const qmp = new Qmp(socket);
    await Promise.race([
      new Promise((resolve) => {
        qmp.greeting = resolve;
      }),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`QMP ${path}: no greeting within ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  /**
   * Sends a command now and returns its reply (with arrival time) later. Several commands may be in flight: QEMU
   * answers them in order, and the ids match them up.
   */
  send<T = any>(command: string, args?: Record<string, unknown>): { sentUs: number; reply: Promise<QmpReply<T>> } {
    if (this.closedError) throw new Error(`${command}: ${this.closedError.message}`);
    const id = this.nextId++;
    const reply = new Promise<QmpReply<T>>((resolve, reject) => this.pending.set(id, { command, resolve, reject }));
    const sentUs = realtimeUs();
    this.socket.write(
      `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
    );
    return { sentUs, reply };
  }

  async execute<T = any>(command: string, args?: Record<string, unknown>): Promise<T> {
    return (await this.send<T>(command, args).reply).value;
  }

  /** The first event named `name` that `match` accepts, received at any time on this connection. */
  async waitEvent(name: string, timeoutMs: number, match: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === name && match(e));
      if (found) return found;
      if (this.closedError) throw new Error(`waiting for ${name}: ${this.closedError.message}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${name} event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.eventWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
