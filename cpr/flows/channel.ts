// The CPR channel: framed messages between the old and the new VMM process over an AF_UNIX stream socket, each
// carrying a type, a JSON header, a binary payload and file descriptors (SCM_RIGHTS). This is what QEMU's
// cpr-transfer does with its `cpr` incoming channel: the new process is started first and listens; the old one
// connects, sends its RAM memfds and other fds, then the device and vCPU state.
//
// Frame (little-endian): a 16-byte head, then the type, the JSON header and the payload.
//   0 u32 magic 'CPR1'    4 u16 type length    6 u16 fd count    8 u32 header length    12 u32 payload length
// The fds travel with the head's first byte (the kernel attaches them to the first buffer of a sendmsg). Reads are
// bounded by the frame's lengths, so one recvmsg never runs into the next frame and fds can arrive only with a
// head; fds anywhere else, a bad magic or a length over the receiver's limits end the channel with a clear error,
// before anything is allocated for the body.
//
// Waiting: `receive` and `CprListener.accept` first try without blocking and only then wait, with poll(2) on a
// libuv pool thread, so the event loop keeps running while the new process waits for the old one (a wake-up
// eventfd makes close() end the wait at once). `send` and `receiveSync` block the calling thread with poll(2) —
// for the pause window, where a thread hop (15-80 µs measured here) would cost more than the transfer itself.
import { lstatSync, unlinkSync } from 'node:fs';
import { close, eventfd, write, EFD_CLOEXEC, EFD_NONBLOCK, monotonicMs } from '../../src/sys/libc.js';
import { SysError, Errno } from '../../src/sys/errno.js';
import {
  unixSocket,
  bindUnix,
  listenSocket,
  acceptConnection,
  connectUnix,
  peerCredentials,
  sendWithFds,
  receiveWithFds,
  pollSync,
  pollAsync,
  closeAll,
  TruncatedMessageError,
  POLLIN,
  POLLOUT,
  SCM_MAX_FD,
} from '../../src/sys/socket.js';

/** 'CPR1' as a little-endian u32: the frame magic; the digit is the frame format version. */
export const FRAME_MAGIC = 0x31525043;
export const FRAME_HEAD_BYTES = 16;
/** Longest message type, in bytes (printable ASCII). */
export const MAX_TYPE_BYTES = 64;

export interface ChannelLimits {
  /** Longest JSON header accepted, bytes. */
  readonly maxHeaderBytes: number;
  /** Longest payload accepted, bytes (the frame format's ceiling is 2^32 - 1). */
  readonly maxPayloadBytes: number;
  /** Most fds one message may carry (at most SCM_MAX_FD). */
  readonly maxFds: number;
}

export const DEFAULT_LIMITS: ChannelLimits = Object.freeze({
  maxHeaderBytes: 1 << 20,
  maxPayloadBytes: 256 << 20,
  maxFds: 64,
});

export interface ChannelOptions {
  limits?: Partial<ChannelLimits>;
  /** How long send() may block waiting for the peer to drain the socket (default 10 s). */
  sendTimeoutMs?: number;
  /**
   * How long receiveSync() polls the socket without sleeping before it blocks in poll(2), µs (default 200). A
   * sleeping process takes ~40 µs per wake-up here; spinning briefly cuts a cross-process round trip from ~90 µs
   * to ~20 µs (median, measured in channel.test.ts). Only receiveSync spins: it is for the pause window.
   */
  spinMicros?: number;
}

/** What send() takes. The channel does not take ownership of `fds`: the kernel duplicates them into the peer. */
export interface CprMessage {
  readonly type: string;
  readonly header?: unknown;
  readonly payload?: Uint8Array;
  readonly fds?: readonly number[];
}

/** What receive() gives: the fds are new descriptors (close-on-exec) that the caller owns and must close. */
export interface ReceivedMessage {
  readonly type: string;
  /** The JSON header, or undefined when the sender gave none. */
  readonly header: unknown;
  readonly payload: Uint8Array;
  readonly fds: number[];
}

export type ChannelErrorCode =
  | 'closed' // the peer closed the channel between messages, or this side closed it
  | 'truncated' // the peer closed the channel in the middle of a message
  | 'timeout' // nothing (or not all) arrived / could be sent in time; the channel stays usable
  | 'protocol' // bad magic, bad type, undecodable header, fds where none belong
  | 'limit' // a length or fd count over this side's limits
  | 'io'; // any other failed system call (the cause holds the SysError)

export class CprChannelError extends Error {
  readonly code: ChannelErrorCode;
  constructor(code: ChannelErrorCode, message: string, options?: { cause?: unknown }) {
    super(`cpr channel: ${message}`, options);
    this.name = 'CprChannelError';
    this.code = code;
  }
}

function resolveLimits(partial: Partial<ChannelLimits> | undefined): ChannelLimits {
  const limits = { ...DEFAULT_LIMITS, ...partial };
  const check = (name: string, value: number, max: number) => {
    if (!Number.isInteger(value) || value < 0 || value > max)
      throw new RangeError(`cpr channel: ${name} ${value} not in 0..${max}`);
  };
  check('maxHeaderBytes', limits.maxHeaderBytes, 0xffffffff);
  check('maxPayloadBytes', limits.maxPayloadBytes, 0xffffffff);
  check('maxFds', limits.maxFds, Math.min(SCM_MAX_FD, 0xffff));
  return Object.freeze(limits);
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const TYPE_PATTERN = /^[\x21-\x7e]+$/;

function isPeerGone(e: unknown): boolean {
  return e instanceof SysError && (e.errno === Errno.EPIPE || e.errno === Errno.ECONNRESET);
}

// ---- reading one frame, resumably -------------------------------------------------------------------------------

/** Reads one frame without blocking; keeps its progress across EAGAIN so a later call continues where it stopped. */
class FrameReader {
  private readonly head = new Uint8Array(FRAME_HEAD_BYTES);
  private headFilled = 0;
  private meta: Uint8Array | null = null; // type + JSON header
  private payload: Uint8Array | null = null;
  private bodyFilled = 0;
  private fds: number[] = [];
  private typeLength = 0;

  constructor(private readonly limits: ChannelLimits) {}

  /** True once any byte of a frame has arrived (an EOF now is a truncation, not a clean close). */
  get inProgress(): boolean {
    return this.headFilled > 0;
  }

  /** The next complete message, or null when the socket has nothing more for now. Throws CprChannelError. */
  pump(fd: number): ReceivedMessage | null {
    try {
      while (this.headFilled < FRAME_HEAD_BYTES) {
        // fds can only arrive here: room for the limit, and MSG_CTRUNC (→ limit error) if the peer sent more.
        const r = this.receive(fd, this.head.subarray(this.headFilled), this.limits.maxFds, 'head');
        if (r.bytes < 0) return null;
        if (r.bytes === 0) {
          throw this.headFilled === 0
            ? new CprChannelError('closed', 'the peer closed the channel')
            : new CprChannelError(
                'truncated',
                `the peer closed the channel after ${this.headFilled} of ${FRAME_HEAD_BYTES} bytes of a frame head`,
              );
        }
        this.fds.push(...r.fds);
        this.headFilled += r.bytes;
        if (this.headFilled === FRAME_HEAD_BYTES) this.startBody();
      }
      const meta = this.meta!,
        payload = this.payload!;
      const bodyLength = meta.byteLength + payload.byteLength;
      while (this.bodyFilled < bodyLength) {
        const buffers =
          this.bodyFilled < meta.byteLength
            ? [meta.subarray(this.bodyFilled), payload]
            : [payload.subarray(this.bodyFilled - meta.byteLength)];
        // No room for fds: any fd in the body is a protocol error, and the kernel drops it (MSG_CTRUNC) for us.
        const r = this.receive(fd, buffers, 0, 'body');
        if (r.bytes < 0) return null;
        if (r.bytes === 0) {
          throw new CprChannelError(
            'truncated',
            `the peer closed the channel after ${FRAME_HEAD_BYTES + this.bodyFilled} of ${FRAME_HEAD_BYTES + bodyLength} bytes of message '${this.typeOrUnknown()}'`,
          );
        }
        this.bodyFilled += r.bytes;
      }
      return this.finish();
    } catch (e) {
      this.discard();
      throw e;
    }
  }

  /** Closes the fds of a partly read frame (on error, or when the channel closes mid-frame). */
  discard(): void {
    closeAll(this.fds);
    this.fds = [];
  }

  private receive(fd: number, into: Uint8Array | Uint8Array[], maxFds: number, part: string) {
    try {
      return receiveWithFds(fd, into, maxFds);
    } catch (e) {
      if (e instanceof TruncatedMessageError) {
        throw part === 'head'
          ? new CprChannelError('limit', `the peer attached more than ${maxFds} fds to a message (maxFds)`, {
              cause: e,
            })
          : new CprChannelError('protocol', `fds arrived inside the body of message '${this.typeOrUnknown()}'`, {
              cause: e,
            });
      }
      if (isPeerGone(e)) {
        throw new CprChannelError(
          this.inProgress ? 'truncated' : 'closed',
          `the peer reset the channel (${(e as SysError).code})`,
          { cause: e },
        );
      }
      throw e;
    }
  }

  /** Validates the head — every length against the limits — before allocating anything for the body. */
  private startBody(): void {
    const v = new DataView(this.head.buffer, this.head.byteOffset, FRAME_HEAD_BYTES);
    const magic = v.getUint32(0, true);
    const typeLength = v.getUint16(4, true);
    const fdCount = v.getUint16(6, true);
    const headerLength = v.getUint32(8, true);
    const payloadLength = v.getUint32(12, true);
    if (magic !== FRAME_MAGIC)
      throw new CprChannelError(
        'protocol',
        `bad frame magic 0x${magic.toString(16).padStart(8, '0')} (want 0x${FRAME_MAGIC.toString(16)}: 'CPR1')`,
      );
    if (typeLength === 0 || typeLength > MAX_TYPE_BYTES)
      throw new CprChannelError('limit', `message type length ${typeLength} not in 1..${MAX_TYPE_BYTES}`);
    if (fdCount > this.limits.maxFds)
      throw new CprChannelError('limit', `message carries ${fdCount} fds; the limit is ${this.limits.maxFds}`);
    if (headerLength > this.limits.maxHeaderBytes)
      throw new CprChannelError(
        'limit',
        `header length ${headerLength} exceeds the limit ${this.limits.maxHeaderBytes}`,
      );
    if (payloadLength > this.limits.maxPayloadBytes)
      throw new CprChannelError(
        'limit',
        `payload length ${payloadLength} exceeds the limit ${this.limits.maxPayloadBytes}`,
      );
    if (this.fds.length !== fdCount)
      throw new CprChannelError(
        'protocol',
        `frame head announces ${fdCount} fds but ${this.fds.length} arrived with it`,
      );
    this.typeLength = typeLength;
    this.meta = new Uint8Array(typeLength + headerLength);
    this.payload = new Uint8Array(payloadLength);
    this.bodyFilled = 0;
  }

  private typeOrUnknown(): string {
    if (!this.meta || this.bodyFilled < this.typeLength) return '?';
    return Buffer.from(this.meta.subarray(0, this.typeLength)).toString('latin1');
  }

  private finish(): ReceivedMessage {
    const meta = this.meta!;
    const type = Buffer.from(meta.subarray(0, this.typeLength)).toString('latin1');
    if (!TYPE_PATTERN.test(type))
      throw new CprChannelError('protocol', `message type ${JSON.stringify(type)} is not printable ASCII`);
    let header: unknown;
    if (meta.byteLength > this.typeLength) {
      try {
        header = JSON.parse(utf8Strict.decode(meta.subarray(this.typeLength)));
      } catch (e) {
        throw new CprChannelError(
          'protocol',
          `the header of message '${type}' is not valid JSON: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    const message: ReceivedMessage = { type, header, payload: this.payload!, fds: this.fds };
    this.headFilled = 0;
    this.meta = this.payload = null;
    this.bodyFilled = 0;
    this.fds = [];
    return message;
  }
}

// ---- the channel ------------------------------------------------------------------------------------------------

export class CprChannel {
  /** The peer process as the kernel saw it at connect (SO_PEERCRED). */
  readonly peer: { pid: number; uid: number; gid: number };
  readonly limits: ChannelLimits;
  private readonly sendTimeoutMs: number;
  private readonly spinMs: number;
  private readonly reader: FrameReader;
  private readonly wakeFd: number;
  private fd: number;
  private failure: CprChannelError | null = null;
  private waiting = false; // an async receive is parked in poll on a pool thread
  private closeRequested = false;

  /** Adopts a connected AF_UNIX stream socket (made non-blocking by the caller; the channel closes it). */
  static fromFd(fd: number, options: ChannelOptions = {}): CprChannel {
    return new CprChannel(fd, options);
  }

  /**
   * The old process's side: connects to the new process's socket at `path`. Throws SysError naming the path when
   * nobody listens there (ENOENT, ECONNREFUSED) or the listener's queue is full.
   */
  static connect(path: string, options: ChannelOptions = {}): CprChannel {
    const fd = unixSocket({ nonBlocking: true });
    try {
      if (!connectUnix(fd, path))
        throw new SysError('connect', `${path}: the listener's backlog is full`, Errno.EAGAIN);
      return new CprChannel(fd, options);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /**
   * The new process's side: binds `path` (mode 0600) at once — the socket exists when this returns its promise —
   * then waits up to `timeoutMs` for the old process to connect, without blocking the event loop. The listening
   * socket is closed and its file removed once the peer is connected (or the wait fails).
   */
  static async listen(path: string, options: ChannelOptions & { timeoutMs?: number } = {}): Promise<CprChannel> {
    const listener = CprListener.bind(path, options);
    try {
      return await listener.accept(options.timeoutMs ?? Infinity);
    } finally {
      listener.close();
    }
  }

  private constructor(fd: number, options: ChannelOptions) {
    this.limits = resolveLimits(options.limits);
    this.sendTimeoutMs = options.sendTimeoutMs ?? 10_000;
    this.spinMs = (options.spinMicros ?? 200) / 1000;
    this.reader = new FrameReader(this.limits);
    this.peer = peerCredentials(fd);
    this.wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    this.fd = fd;
  }

  get closed(): boolean {
    return this.fd < 0 || this.closeRequested;
  }

  /**
   * Sends one message, blocking this thread until all of it is in the socket (poll for POLLOUT while the peer
   * drains a large payload). Throws CprChannelError: 'limit' before sending anything when the message is over this
   * side's limits, 'closed' when the peer has gone, 'timeout' after `timeoutMs` (the channel is then unusable: a
   * partial message is in the stream).
   */
  send(message: CprMessage, timeoutMs = this.sendTimeoutMs): void {
    this.checkUsable();
    const { head, payload, fds } = this.encode(message);
    const total = head.byteLength + payload.byteLength;
    const deadline = monotonicMs() + timeoutMs;
    let sent = 0;
    try {
      while (sent < total) {
        const chunks =
          sent < head.byteLength ? [head.subarray(sent), payload] : [payload.subarray(sent - head.byteLength)];
        const r = sendWithFds(this.fd, chunks, sent === 0 ? fds : []);
        if (r > 0) {
          sent += r;
          continue;
        }
        const left = deadline - monotonicMs();
        if (left <= 0) {
          throw new CprChannelError(
            'timeout',
            `sending message '${message.type}' timed out after ${timeoutMs} ms (${sent} of ${total} bytes sent)`,
          );
        }
        pollSync([{ fd: this.fd, events: POLLOUT }], left);
      }
    } catch (e) {
      const error = isPeerGone(e)
        ? new CprChannelError(
            'closed',
            `the peer closed the channel while message '${message.type}' was being sent (${sent} of ${total} bytes)`,
            { cause: e },
          )
        : e;
      // Nothing sent yet (a bad fd, a timeout): the stream is still at a frame boundary and the channel stays usable.
      if (sent > 0 || isPeerGone(e)) this.fail(error);
      throw error;
    }
  }

  /**
   * The next message, waiting up to `timeoutMs` (Infinity = forever) without blocking the event loop. A timeout
   * leaves the channel usable (a partly received message is continued by the next call). close() ends the wait
   * with a 'closed' error.
   */
  async receive(timeoutMs: number): Promise<ReceivedMessage> {
    this.checkUsable();
    if (this.waiting) throw new Error('cpr channel: receive() is already waiting on this channel');
    const deadline = monotonicMs() + timeoutMs;
    try {
      for (;;) {
        const message = this.pump();
        if (message) return message;
        const left = deadline - monotonicMs();
        if (left <= 0) throw this.timeout(timeoutMs);
        this.waiting = true;
        try {
          await pollAsync(
            [
              { fd: this.fd, events: POLLIN },
              { fd: this.wakeFd, events: POLLIN },
            ],
            left,
          );
        } finally {
          this.waiting = false;
        }
        if (this.closeRequested) throw new CprChannelError('closed', 'the channel was closed while receiving');
      }
    } finally {
      if (this.closeRequested) this.release();
    }
  }

  /**
   * The next message, blocking this thread up to `timeoutMs`: for the pause window. Spins (non-blocking reads) for
   * `spinMicros` (default: the channel's spinMicros) before it sleeps in poll(2): waking a sleeping thread costs
   * up to a millisecond on some hosts, more than a whole cpr-transfer pause should.
   */
  receiveSync(timeoutMs: number, spinMicros?: number): ReceivedMessage {
    this.checkUsable();
    if (this.waiting) throw new Error('cpr channel: receive() is already waiting on this channel');
    const start = monotonicMs();
    const deadline = start + timeoutMs;
    const spinUntil = start + Math.min(spinMicros === undefined ? this.spinMs : spinMicros / 1000, timeoutMs);
    for (;;) {
      const message = this.pump();
      if (message) return message;
      const now = monotonicMs();
      if (now < spinUntil) continue;
      const left = deadline - now;
      if (left <= 0) throw this.timeout(timeoutMs);
      pollSync([{ fd: this.fd, events: POLLIN }], left);
    }
  }

  /**
   * Closes the socket (the peer sees end of stream) and any fds of a partly received message. A receive() that is
   * waiting is woken and rejects with 'closed'; its socket is released when it has returned from poll.
   */
  close(): void {
    if (this.closed) return;
    this.closeRequested = true;
    if (this.waiting) write(this.wakeFd, new BigUint64Array([1n]));
    else this.release();
  }

  private release(): void {
    if (this.fd < 0) return;
    this.reader.discard();
    closeAll([this.fd, this.wakeFd]);
    this.fd = -1;
  }

  private pump(): ReceivedMessage | null {
    try {
      return this.reader.pump(this.fd);
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }

  private timeout(timeoutMs: number): CprChannelError {
    return new CprChannelError(
      'timeout',
      this.reader.inProgress
        ? `the rest of a message did not arrive within ${timeoutMs} ms`
        : `no message arrived within ${timeoutMs} ms`,
    );
  }

  /** Marks the channel unusable: the stream is no longer at a known frame boundary. */
  private fail(error: unknown): void {
    this.failure ??=
      error instanceof CprChannelError
        ? error
        : new CprChannelError('io', error instanceof Error ? error.message : String(error), { cause: error });
  }

  private checkUsable(): void {
    if (this.closed) throw new CprChannelError('closed', 'the channel is closed');
    if (this.failure)
      throw new CprChannelError(this.failure.code, `the channel failed earlier: ${this.failure.message}`, {
        cause: this.failure,
      });
  }

  private encode(message: CprMessage): { head: Uint8Array; payload: Uint8Array; fds: readonly number[] } {
    const type = utf8.encode(message.type);
    if (type.byteLength === 0 || type.byteLength > MAX_TYPE_BYTES || !TYPE_PATTERN.test(message.type)) {
      throw new CprChannelError(
        'limit',
        `message type ${JSON.stringify(message.type)} must be 1..${MAX_TYPE_BYTES} printable ASCII characters`,
      );
    }
    const json = message.header === undefined ? new Uint8Array(0) : utf8.encode(JSON.stringify(message.header));
    const payload = message.payload ?? new Uint8Array(0);
    const fds = message.fds ?? [];
    if (json.byteLength > this.limits.maxHeaderBytes)
      throw new CprChannelError(
        'limit',
        `header of '${message.type}' is ${json.byteLength} bytes; the limit is ${this.limits.maxHeaderBytes}`,
      );
    if (payload.byteLength > this.limits.maxPayloadBytes)
      throw new CprChannelError(
        'limit',
        `payload of '${message.type}' is ${payload.byteLength} bytes; the limit is ${this.limits.maxPayloadBytes}`,
      );
    if (fds.length > this.limits.maxFds)
      throw new CprChannelError(
        'limit',
        `'${message.type}' carries ${fds.length} fds; the limit is ${this.limits.maxFds}`,
      );
    const head = new Uint8Array(FRAME_HEAD_BYTES + type.byteLength + json.byteLength);
    const v = new DataView(head.buffer);
    v.setUint32(0, FRAME_MAGIC, true);
    v.setUint16(4, type.byteLength, true);
    v.setUint16(6, fds.length, true);
    v.setUint32(8, json.byteLength, true);
    v.setUint32(12, payload.byteLength, true);
    head.set(type, FRAME_HEAD_BYTES);
    head.set(json, FRAME_HEAD_BYTES + type.byteLength);
    return { head, payload, fds };
  }
}

// ---- the listening side -----------------------------------------------------------------------------------------

/** A bound, listening socket for the new process; accept() waits for the old process without blocking the loop. */
export class CprListener {
  readonly path: string;
  private readonly options: ChannelOptions;
  private readonly wakeFd: number;
  private fd: number;
  private readonly inode: number;
  private waiting = false;
  private closeRequested = false;

  /** Binds `path` (mode 0600; a stale socket there is replaced, anything else refused) and listens. */
  static bind(path: string, options: ChannelOptions = {}): CprListener {
    resolveLimits(options.limits); // refuse bad limits before creating anything
    const fd = unixSocket({ nonBlocking: true });
    try {
      bindUnix(fd, path, 0o600);
      listenSocket(fd, 1);
      return new CprListener(fd, path, options);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  private constructor(fd: number, path: string, options: ChannelOptions) {
    this.fd = fd;
    this.path = path;
    this.options = options;
    this.inode = lstatSync(path).ino;
    this.wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }

  /** The next connection as a channel, waiting up to `timeoutMs` (Infinity = forever); close() ends the wait. */
  async accept(timeoutMs: number): Promise<CprChannel> {
    if (this.fd < 0 || this.closeRequested)
      throw new CprChannelError('closed', `the listener on ${this.path} is closed`);
    if (this.waiting) throw new Error('cpr channel: accept() is already waiting on this listener');
    const deadline = monotonicMs() + timeoutMs;
    try {
      for (;;) {
        const fd = acceptConnection(this.fd, { nonBlocking: true });
        if (fd !== null) {
          try {
            return CprChannel.fromFd(fd, this.options);
          } catch (e) {
            close(fd);
            throw e;
          }
        }
        const left = deadline - monotonicMs();
        if (left <= 0) throw new CprChannelError('timeout', `nobody connected to ${this.path} within ${timeoutMs} ms`);
        this.waiting = true;
        try {
          await pollAsync(
            [
              { fd: this.fd, events: POLLIN },
              { fd: this.wakeFd, events: POLLIN },
            ],
            left,
          );
        } finally {
          this.waiting = false;
        }
        if (this.closeRequested)
          throw new CprChannelError('closed', `the listener on ${this.path} was closed while waiting`);
      }
    } finally {
      if (this.closeRequested) this.release();
    }
  }

  /** Stops listening and removes the socket file (only if it is still ours). Wakes a waiting accept(). */
  close(): void {
    if (this.fd < 0 || this.closeRequested) return;
    this.closeRequested = true;
    try {
      if (lstatSync(this.path).ino === this.inode) unlinkSync(this.path);
    } catch {
      /* already gone */
    }
    if (this.waiting) write(this.wakeFd, new BigUint64Array([1n]));
    else this.release();
  }

  private release(): void {
    if (this.fd < 0) return;
    closeAll([this.fd, this.wakeFd]);
    this.fd = -1;
  }
}
