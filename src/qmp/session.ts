// One QMP client connection: its framing, its capability-negotiation state, and the order of its replies.
//
// Requests are answered strictly in the order they arrived (QEMU does the same per monitor), so an error for a
// malformed message waits behind the reply to the command before it. Like QEMU (QMP_REQ_QUEUE_LEN_MAX), a client
// with 8 requests not yet answered is not read from until it has fewer: memory stays bounded however fast it writes.
// Every request received is carried out even if the client leaves meanwhile — a script that writes `quit` and
// closes its socket gets its quit; replies to a departed client are dropped. A client that half-closes (socat at
// the end of its input) gets all its replies before the server closes its side.
// Output: replies and events are one line each, ending in "\r\n". A client that stops reading while more than
// MAX_PENDING_OUTPUT bytes are waiting for it is disconnected (with a log line) rather than holding memory.

import type net from 'node:net';
import type { FdReadiness } from '../sys/fd-readiness.js';
import { closeAll } from '../sys/socket.js';
import { ConnectionInput } from './connection-input.js';
import { JsonStreamer, type StreamLimits } from './json-stream.js';
import { parseMessage } from './json-parse.js';
import { formatQmpJson } from './json-format.js';

/** QEMU's QMP_REQ_QUEUE_LEN_MAX. */
export const MAX_QUEUED_REQUESTS = 8;
export const MAX_PENDING_OUTPUT = 16 * 1024 * 1024;
/**
 * Descriptors a client sent (SCM_RIGHTS) that no getfd has taken yet, per connection; an older one is closed when a
 * newer one would exceed this. As many as requests may wait, so every queued getfd can have its fd.
 */
export const MAX_RECEIVED_FDS = MAX_QUEUED_REQUESTS;
/** How long close() lets a client take its last replies before the connection is cut. */
const CLOSE_GRACE_MS = 1000;

export interface ReplyHooks {
  /** Runs `fn` once the reply has been handed to the kernel, or at once if the client is gone. */
  afterReply(fn: () => void): void;
}

/** What a session needs from the server. */
export interface SessionHost {
  readonly limits: StreamLimits;
  readonly greeting: object;
  /** Where connections wait for input (they are read with recvmsg, see connection-input.ts). */
  readonly readiness: FdReadiness;
  /** Carries out one parsed request; resolves to the reply object (never rejects). */
  dispatch(session: QmpSession, request: unknown, hooks: ReplyHooks): Promise<Record<string, unknown>>;
  sessionClosed(session: QmpSession): void;
  log(line: string): void;
}

const errorReply = (desc: string) => ({ error: { class: 'GenericError', desc } });

export class QmpSession {
  /** Capability negotiation done: commands other than qmp_capabilities are accepted, events are sent. */
  negotiated = false;
  private readonly streamer: JsonStreamer;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private inputPaused = false;
  private gone = false;
  private stopping = false;
  private readonly input: ConnectionInput;
  /** Received descriptors, oldest first, for getfd (takeReceivedFd). */
  private readonly receivedFds: number[] = [];

  constructor(
    readonly id: number,
    private readonly socket: net.Socket,
    private readonly host: SessionHost,
  ) {
    this.streamer = new JsonStreamer(host.limits);
    this.input = new ConnectionInput(socket, host.readiness, {
      data: (chunk, fds) => {
        this.keepFds(fds);
        this.received(chunk);
      },
      end: () => this.inputEnded(),
    });
    socket.on('error', (error) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EPIPE' && code !== 'ECONNRESET') host.log(`QMP client ${id}: ${error.message}`);
    });
    socket.on('close', () => {
      this.gone = true;
      this.input.close();
      closeAll(this.receivedFds.splice(0)); // QEMU closes a monitor connection's unclaimed fds with it, too
      host.sessionClosed(this);
    });
    this.writeLine(formatQmpJson(host.greeting));
  }

  /** Sends a preformatted event line if this client has negotiated capabilities. */
  event(line: string): void {
    if (this.negotiated) this.writeLine(line);
  }

  /** Resolves once everything written to this client has reached the kernel (or after `timeoutMs`). */
  flushed(timeoutMs: number): Promise<void> {
    if (this.gone || this.socket.destroyed || !this.socket.writable) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      // Writes complete in order: the callback of an empty write runs once the writes before it are done.
      this.socket.write('', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The oldest descriptor this client sent that nobody has taken (getfd), now the caller's; undefined if none. */
  takeReceivedFd(): number | undefined {
    return this.receivedFds.shift();
  }

  private keepFds(fds: number[]): void {
    if (this.gone) {
      closeAll(fds);
      return;
    }
    this.receivedFds.push(...fds);
    if (this.receivedFds.length > MAX_RECEIVED_FDS)
      closeAll(this.receivedFds.splice(0, this.receivedFds.length - MAX_RECEIVED_FDS));
  }

  /** Ends the connection: queued requests are dropped, written replies still go out for a short while. */
  stop(): Promise<void> {
    this.stopping = true;
    if (this.gone) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.once('finish', () => this.socket.destroy());
      this.socket.end();
    });
  }

  private received(chunk: Buffer): void {
    for (const item of this.streamer.push(chunk)) {
      if (item.kind === 'error') {
        this.enqueue(async () => errorReply(item.desc));
        continue;
      }
      const parsed = parseMessage(item.tokens);
      if (parsed.ok) this.enqueue((hooks) => this.host.dispatch(this, parsed.value, hooks));
      else this.enqueue(async () => errorReply(`JSON parse error, ${parsed.error}`));
    }
  }

  private inputEnded(): void {
    if (this.streamer.pending)
      this.host.log(`QMP client ${this.id}: connection closed in the middle of a message; it was dropped`);
    // The client will send nothing more: finish its queue, then close our side.
    this.chain = this.chain.then(() => {
      if (this.gone) return;
      // Node never saw the end of the input (it does not read: connection-input.ts does), so it would keep the
      // socket half-open; once our side is written out, the connection is over.
      this.socket.once('finish', () => this.socket.destroy());
      this.socket.end();
    });
  }

  private enqueue(job: (hooks: ReplyHooks) => Promise<Record<string, unknown>>): void {
    this.queued++;
    if (this.queued >= MAX_QUEUED_REQUESTS && !this.inputPaused) {
      this.inputPaused = true;
      this.input.pause();
    }
    this.chain = this.chain.then(async () => {
      try {
        if (this.stopping) return;
        const after: Array<() => void> = [];
        const reply = await job({
          afterReply: (fn) => {
            after.push(fn);
          },
        });
        this.reply(reply, after);
      } finally {
        this.queued--;
        if (this.inputPaused && this.queued < MAX_QUEUED_REQUESTS && !this.gone) {
          this.inputPaused = false;
          this.input.resume();
        }
      }
    });
  }

  private reply(reply: Record<string, unknown>, after: Array<() => void>): void {
    let line: string;
    try {
      line = formatQmpJson(reply);
    } catch (error) {
      // A handler returned something JSON cannot carry (NaN, a function, a cycle): a bug, reported as an error.
      this.host.log(`QMP client ${this.id}: cannot send a reply: ${(error as Error).message}`);
      const id = Object.hasOwn(reply, 'id') ? { id: reply.id } : {};
      line = formatQmpJson({
        ...id,
        error: {
          class: 'GenericError',
          desc: `internal error: the result cannot be sent: ${(error as Error).message}`,
        },
      });
    }
    this.writeLine(line, after);
  }

  private writeLine(line: string, after: Array<() => void> = []): void {
    const runAfter = () => {
      for (const fn of after) {
        try {
          fn();
        } catch (error) {
          this.host.log(`QMP: an after-reply action failed: ${(error as Error).stack ?? error}`);
        }
      }
    };
    if (this.gone || this.socket.destroyed || !this.socket.writable) {
      if (after.length) setImmediate(runAfter);
      return;
    }
    if (this.socket.writableLength > MAX_PENDING_OUTPUT) {
      this.host.log(
        `QMP client ${this.id}: not reading its replies and events (${this.socket.writableLength} bytes waiting); disconnected`,
      );
      this.socket.destroy();
      if (after.length) setImmediate(runAfter);
      return;
    }
    this.socket.write(`${line}\r\n`, after.length ? runAfter : undefined);
  }
}
