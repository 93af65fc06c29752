// AF_UNIX sockets through libc, for what Node's `net` cannot do: pass file descriptors (SCM_RIGHTS) between
// processes. cpr/flows/channel.ts carries CPR state over these. socket/bind/listen/accept4/connect/shutdown, sendmsg and
// recvmsg with an fd-carrying control message, and poll(2) either blocking (for the tight pause window) or on a
// libuv thread-pool thread (so the event loop keeps running while we wait for a peer).
//
// Every number below and every struct layout is checked against <sys/socket.h>, <sys/un.h> and <poll.h> by
// src/sys/socket-abi.test.ts (a C program compiled at test time).
//
// Memory the kernel reads through embedded pointers (msghdr → iovec → data, msghdr → control) is either one
// module-level ArrayBuffer created with `new ArrayBuffer` (V8 keeps such backing stores off the JS heap and never
// moves them; its address is taken once) or the caller's Uint8Arrays, whose address koffi resolves right before the
// synchronous call (typed-array backing stores do not move either; koffi's address includes the view's byteOffset).
// Nothing keeps a pointer after the call returns.
import { lstatSync, chmodSync, fchmodSync, readFileSync, unlinkSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { socketCalls as sys, addressOf, close, monotonicMs } from './libc.js';
import { SysError, Errno } from './errno.js';
import { struct, array, layoutOf, type Layout } from './c-layout.js';

// ---- constants (x86-64 Linux, glibc) ----------------------------------------------------------------------------

/** Local (Unix-domain) sockets. */
export const AF_UNIX = 1;
/** Reliable byte stream: what the CPR channel uses. */
export const SOCK_STREAM = 1;
/** Reliable, message-boundary-preserving sockets (each sendmsg is one record). */
export const SOCK_SEQPACKET = 5;
/** socket()/accept4() flag: the new fd is non-blocking. */
export const SOCK_NONBLOCK = 0o4000;
/** socket()/accept4() flag: the new fd is closed on exec. */
export const SOCK_CLOEXEC = 0o2000000;

/** setsockopt/getsockopt level and cmsg_level of socket-layer control messages. */
export const SOL_SOCKET = 1;
/** Control message type: the data is an array of int file descriptors. */
export const SCM_RIGHTS = 1;
/** Socket option: the peer's pid, uid and gid as captured at connect (struct ucred). */
export const SO_PEERCRED = 17;
/** Socket option: send buffer size in bytes (int). */
export const SO_SNDBUF = 7;
/** Socket option: receive buffer size in bytes (int). */
export const SO_RCVBUF = 8;

/** recvmsg result flag: control data was cut off for lack of space (some fds were lost). */
export const MSG_CTRUNC = 0x8;
/** recvmsg result flag: a datagram/record was longer than the buffer. */
export const MSG_TRUNC = 0x20;
/** Per-call non-blocking. */
export const MSG_DONTWAIT = 0x40;
/** Do not raise SIGPIPE when the peer has gone; return EPIPE instead. */
export const MSG_NOSIGNAL = 0x4000;
/** Set FD_CLOEXEC on every fd received through SCM_RIGHTS, atomically. */
export const MSG_CMSG_CLOEXEC = 0x40000000;

/** shutdown(2): no more receptions / transmissions / both. */
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/** poll(2) events: readable, writable, error, hang-up, fd not open. */
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

/** Most fds one SCM_RIGHTS message may carry (the kernel's SCM_MAX_FD, not exported by the headers). */
export const SCM_MAX_FD = 253;

// ---- structures -------------------------------------------------------------------------------------------------
// Pointers and size_t are u64 on x86-64; short is declared as u16 (we only store small flag values in it).

const u16 = 'u16',
  u32 = 'u32',
  s32 = 's32',
  u64 = 'u64',
  char = 'char';

const sockaddr_un = struct('sockaddr_un', [
  ['sun_family', u16],
  ['sun_path', array(char, 108)],
]);
const iovec = struct('iovec', [
  ['iov_base', u64],
  ['iov_len', u64],
]);
const msghdr = struct('msghdr', [
  ['msg_name', u64],
  ['msg_namelen', u32],
  ['msg_iov', u64],
  ['msg_iovlen', u64],
  ['msg_control', u64],
  ['msg_controllen', u64],
  ['msg_flags', s32],
]);
const cmsghdr = struct('cmsghdr', [
  ['cmsg_len', u64],
  ['cmsg_level', s32],
  ['cmsg_type', s32],
]);
const pollfd = struct('pollfd', [
  ['fd', s32],
  ['events', u16],
  ['revents', u16],
]);
const ucred = struct('ucred', [
  ['pid', s32],
  ['uid', u32],
  ['gid', u32],
]);

export type SocketStructName = 'sockaddr_un' | 'iovec' | 'msghdr' | 'cmsghdr' | 'pollfd' | 'ucred';

/** The layout table (struct → size, field → offset/size) that this module reads and the abi test checks. */
export const SOCKET_LAYOUTS: Readonly<Record<SocketStructName, Layout>> = Object.freeze(
  Object.fromEntries(
    [sockaddr_un, iovec, msghdr, cmsghdr, pollfd, ucred].map((d) => {
      const l = layoutOf(d);
      return [l.name, l];
    }),
  ) as Record<SocketStructName, Layout>,
);

function off(name: SocketStructName, field: string): number {
  const f = SOCKET_LAYOUTS[name].fields[field];
  if (!f) throw new Error(`socket: ${name} has no field ${field}`);
  return f.offset;
}

const SUN_FAMILY = off('sockaddr_un', 'sun_family');
const SUN_PATH = off('sockaddr_un', 'sun_path');
/** sun_path holds 108 bytes including the terminating NUL. */
export const UNIX_PATH_MAX = SOCKET_LAYOUTS.sockaddr_un.fields.sun_path.size;

const IOV_BASE = off('iovec', 'iov_base');
const IOV_LEN = off('iovec', 'iov_len');
const IOVEC_SIZE = SOCKET_LAYOUTS.iovec.size;
const MSG_NAME = off('msghdr', 'msg_name');
const MSG_NAMELEN = off('msghdr', 'msg_namelen');
const MSG_IOV = off('msghdr', 'msg_iov');
const MSG_IOVLEN = off('msghdr', 'msg_iovlen');
const MSG_CONTROL = off('msghdr', 'msg_control');
const MSG_CONTROLLEN = off('msghdr', 'msg_controllen');
const MSG_FLAGS = off('msghdr', 'msg_flags');
const CMSG_LEN_FIELD = off('cmsghdr', 'cmsg_len');
const CMSG_LEVEL = off('cmsghdr', 'cmsg_level');
const CMSG_TYPE = off('cmsghdr', 'cmsg_type');
const POLLFD_SIZE = SOCKET_LAYOUTS.pollfd.size;
const POLL_FD = off('pollfd', 'fd');
const POLL_EVENTS = off('pollfd', 'events');
const POLL_REVENTS = off('pollfd', 'revents');

// The CMSG_* macros of <sys/socket.h>: control messages are aligned to size_t.
/** CMSG_ALIGN(n): rounds up to the alignment of size_t. */
export function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}
/** CMSG_LEN(n): cmsg_len of a message carrying n data bytes. */
export function cmsgLen(n: number): number {
  return cmsgAlign(SOCKET_LAYOUTS.cmsghdr.size) + n;
}
/** CMSG_SPACE(n): bytes of control buffer that a message carrying n data bytes occupies. */
export function cmsgSpace(n: number): number {
  return cmsgAlign(SOCKET_LAYOUTS.cmsghdr.size) + cmsgAlign(n);
}
/** CMSG_DATA(c) - c: where the data starts inside a control message. */
export const CMSG_DATA_OFFSET = cmsgAlign(SOCKET_LAYOUTS.cmsghdr.size);

// ---- the scratch area that sendmsg/recvmsg point into -----------------------------------------------------------
// One per thread (module instances are per isolate). Calls are synchronous, so one area serves every socket.

/** Most data segments (iovecs) one sendWithFds call gathers. */
export const MAX_IOVECS = 8;
const SCRATCH_MSGHDR = 0;
const SCRATCH_IOV = cmsgAlign(SOCKET_LAYOUTS.msghdr.size);
const SCRATCH_CONTROL = SCRATCH_IOV + MAX_IOVECS * IOVEC_SIZE;
const SCRATCH_SIZE = SCRATCH_CONTROL + cmsgSpace(4 * SCM_MAX_FD);
const scratch = new ArrayBuffer(SCRATCH_SIZE); // off-heap backing store: its address never changes
const scratchView = new DataView(scratch);
const scratchAddress = addressOf(scratch);

function setPointer(at: number, value: bigint): void {
  scratchView.setBigUint64(at, value, true);
}
function setSize(at: number, value: number): void {
  scratchView.setBigUint64(at, BigInt(value), true);
}

// ---- errors -----------------------------------------------------------------------------------------------------

/** recvmsg reported MSG_CTRUNC (fds lost for lack of control space) or MSG_TRUNC (a record cut short). */
export class TruncatedMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TruncatedMessageError';
  }
}

function isTransient(errno: number): boolean {
  return errno === Errno.EAGAIN || errno === Errno.EINTR;
}

// ---- sockets ----------------------------------------------------------------------------------------------------

export interface SocketOptions {
  /** SOCK_STREAM (default) or SOCK_SEQPACKET. */
  type?: number;
  /** Make the fd non-blocking (the CPR channel does, and waits with poll). */
  nonBlocking?: boolean;
}

function typeFlags(options: SocketOptions): number {
  return (options.type ?? SOCK_STREAM) | SOCK_CLOEXEC | (options.nonBlocking ? SOCK_NONBLOCK : 0);
}

/** A new AF_UNIX socket (close-on-exec). */
export function unixSocket(options: SocketOptions = {}): number {
  const fd = sys.socket(AF_UNIX, typeFlags(options), 0);
  if (fd < 0) throw new SysError('socket', `AF_UNIX, type ${options.type ?? SOCK_STREAM}`, -fd);
  return fd;
}

/** A connected pair of AF_UNIX sockets (close-on-exec). */
export function socketPair(options: SocketOptions = {}): [number, number] {
  const sv = new Int32Array(2);
  const r = sys.socketpair(AF_UNIX, typeFlags(options), 0, sv);
  if (r < 0) throw new SysError('socketpair', `AF_UNIX, type ${options.type ?? SOCK_STREAM}`, -r);
  return [sv[0], sv[1]];
}

/** struct sockaddr_un for a filesystem path, and the address length to pass with it. */
export function unixAddress(path: string): { address: Uint8Array; length: number } {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length === 0 || bytes.includes(0))
    throw new RangeError(`unix socket path ${JSON.stringify(path)} is empty or holds a NUL`);
  if (bytes.length >= UNIX_PATH_MAX) {
    throw new RangeError(
      `unix socket path is ${bytes.length} bytes; at most ${UNIX_PATH_MAX - 1} fit in sun_path: ${path}`,
    );
  }
  const address = new Uint8Array(SOCKET_LAYOUTS.sockaddr_un.size); // zero-filled: the path ends with a NUL
  new DataView(address.buffer).setUint16(SUN_FAMILY, AF_UNIX, true);
  address.set(bytes, SUN_PATH);
  return { address, length: SUN_PATH + bytes.length + 1 };
}

/**
 * Is a socket listening on `path` now? Read from /proc/net/unix (side-effect free: probing with connect() would
 * hand a live listener a bogus connection). Compares the bound path as given and as an absolute path.
 */
function listeningOn(path: string): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return false;
  }
  const wanted = new Set([path, resolvePath(path)]);
  const SO_ACCEPTCON = 0x10000; // Flags column: the socket is listening
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8) continue;
    if ((parseInt(cols[3], 16) & SO_ACCEPTCON) !== 0 && wanted.has(cols.slice(7).join(' '))) return true;
  }
  return false;
}

/**
 * bind(2) to a filesystem path with the file's mode `mode` (0600 by default) from its first moment: on Linux the
 * socket inode's mode, set with fchmod before bind, is the mode bind creates the file with (less the umask), so
 * no process-wide umask change is needed (that would race with other threads creating files); a chmod after bind
 * restores bits a strict umask removed. A stale socket file at `path` is unlinked first; a socket somebody is
 * listening on, or a file that is not a socket, is refused and left alone.
 */
export function bindUnix(fd: number, path: string, mode = 0o600): void {
  const { address, length } = unixAddress(path);
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing) {
    if (!existing.isSocket()) throw new Error(`bind: refusing to replace ${path}: it exists and is not a socket`);
    if (listeningOn(path)) throw new SysError('bind', `${path}: a socket is listening there`, Errno.EADDRINUSE);
    unlinkSync(path);
  }
  fchmodSync(fd, mode);
  const r = sys.bind(fd, address, length);
  if (r < 0) throw new SysError('bind', path, -r);
  chmodSync(path, mode);
}

export function listenSocket(fd: number, backlog = 1): void {
  const r = sys.listen(fd, backlog);
  if (r < 0) throw new SysError('listen', `${fd}, ${backlog}`, -r);
}

/**
 * accept4(2) with SOCK_CLOEXEC (and SOCK_NONBLOCK when asked): the new fd, or null when no connection is pending on
 * a non-blocking listener.
 */
export function acceptConnection(fd: number, options: { nonBlocking?: boolean } = {}): number | null {
  for (;;) {
    const r = sys.accept4(fd, SOCK_CLOEXEC | (options.nonBlocking ? SOCK_NONBLOCK : 0));
    if (r >= 0) return r;
    if (-r === Errno.EINTR || -r === Errno.ECONNABORTED) continue; // a connection that died in the queue
    if (-r === Errno.EAGAIN) return null;
    throw new SysError('accept4', String(fd), -r);
  }
}

/**
 * connect(2) to a filesystem path. Returns false when a non-blocking connect found the listener's backlog full
 * (EAGAIN: try again later); throws SysError naming the path for everything else (ENOENT: nobody bound it,
 * ECONNREFUSED: a stale socket file, EACCES: its mode).
 */
export function connectUnix(fd: number, path: string): boolean {
  const { address, length } = unixAddress(path);
  for (;;) {
    const r = sys.connect(fd, address, length);
    if (r >= 0) return true;
    if (-r === Errno.EINTR) continue;
    if (-r === Errno.EAGAIN) return false;
    throw new SysError('connect', path, -r);
  }
}

export function shutdownSocket(fd: number, how = SHUT_RDWR): void {
  const r = sys.shutdown(fd, how);
  if (r < 0 && -r !== Errno.ENOTCONN) throw new SysError('shutdown', `${fd}, ${how}`, -r);
}

/** The peer's credentials as the kernel captured them at connect (SO_PEERCRED). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const value = new ArrayBuffer(SOCKET_LAYOUTS.ucred.size);
  const length = new Uint32Array([value.byteLength]);
  const r = sys.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, length);
  if (r < 0) throw new SysError('getsockopt', `${fd}, SO_PEERCRED`, -r);
  const v = new DataView(value);
  return {
    pid: v.getInt32(off('ucred', 'pid'), true),
    uid: v.getUint32(off('ucred', 'uid'), true),
    gid: v.getUint32(off('ucred', 'gid'), true),
  };
}

/** An int-valued socket option (SO_SNDBUF, SO_RCVBUF, …). */
export function socketOption(fd: number, level: number, name: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  const r = sys.getsockopt(fd, level, name, value, length);
  if (r < 0) throw new SysError('getsockopt', `${fd}, ${level}, ${name}`, -r);
  return value[0];
}

// ---- sendmsg / recvmsg with fds ---------------------------------------------------------------------------------

/**
 * sendmsg(2) of `chunks` (gathered, at most MAX_IOVECS) with `fds` attached as one SCM_RIGHTS control message.
 * Returns the bytes sent — on a stream socket possibly fewer than offered; the fds go with the first byte — or
 * -EAGAIN / -EINTR when nothing could be sent now (nothing was sent, fds included). Other failures throw SysError
 * (EPIPE when the peer has gone: MSG_NOSIGNAL is always set, so no SIGPIPE).
 */
export function sendWithFds(fd: number, chunks: readonly Uint8Array[], fds: readonly number[] = [], flags = 0): number {
  if (fds.length > SCM_MAX_FD)
    throw new RangeError(`sendmsg: ${fds.length} fds; at most ${SCM_MAX_FD} fit in one message`);
  let iovCount = 0;
  let total = 0;
  for (const chunk of chunks) {
    if (chunk.byteLength === 0) continue;
    if (iovCount === MAX_IOVECS) throw new RangeError(`sendmsg: more than ${MAX_IOVECS} non-empty chunks`);
    const at = SCRATCH_IOV + iovCount * IOVEC_SIZE;
    setPointer(at + IOV_BASE, addressOf(chunk));
    setSize(at + IOV_LEN, chunk.byteLength);
    iovCount++;
    total += chunk.byteLength;
  }
  setPointer(SCRATCH_MSGHDR + MSG_NAME, 0n);
  scratchView.setUint32(SCRATCH_MSGHDR + MSG_NAMELEN, 0, true);
  setPointer(SCRATCH_MSGHDR + MSG_IOV, scratchAddress + BigInt(SCRATCH_IOV));
  setSize(SCRATCH_MSGHDR + MSG_IOVLEN, iovCount);
  scratchView.setInt32(SCRATCH_MSGHDR + MSG_FLAGS, 0, true);
  if (fds.length > 0) {
    const c = SCRATCH_CONTROL;
    new Uint8Array(scratch, c, cmsgSpace(4 * fds.length)).fill(0);
    setSize(c + CMSG_LEN_FIELD, cmsgLen(4 * fds.length));
    scratchView.setInt32(c + CMSG_LEVEL, SOL_SOCKET, true);
    scratchView.setInt32(c + CMSG_TYPE, SCM_RIGHTS, true);
    fds.forEach((f, i) => {
      if (!Number.isInteger(f) || f < 0 || f > 0x7fffffff)
        throw new RangeError(`sendmsg: fd ${f} is not a file descriptor`);
      scratchView.setInt32(c + CMSG_DATA_OFFSET + 4 * i, f, true);
    });
    setPointer(SCRATCH_MSGHDR + MSG_CONTROL, scratchAddress + BigInt(c));
    setSize(SCRATCH_MSGHDR + MSG_CONTROLLEN, cmsgSpace(4 * fds.length));
  } else {
    setPointer(SCRATCH_MSGHDR + MSG_CONTROL, 0n);
    setSize(SCRATCH_MSGHDR + MSG_CONTROLLEN, 0);
  }
  const r = sys.sendmsg(fd, scratchAddress + BigInt(SCRATCH_MSGHDR), flags | MSG_NOSIGNAL);
  if (r < 0 && !isTransient(-r)) throw new SysError('sendmsg', `${fd}, ${total} bytes, ${fds.length} fds`, -r);
  return r;
}

export interface Received {
  /** Bytes received; 0 = end of stream (the peer closed); -EAGAIN / -EINTR = nothing available now. */
  readonly bytes: number;
  /** File descriptors that arrived with these bytes (close-on-exec; the caller owns them). */
  readonly fds: number[];
}

/**
 * recvmsg(2) into `buffer` (or scattered into several, at most MAX_IOVECS) with room for up to `maxFds`
 * descriptors (MSG_CMSG_CLOEXEC). When the kernel reports MSG_CTRUNC (the peer attached more fds than that; with
 * maxFds 0 any fd at all) or MSG_TRUNC (a SEQPACKET record longer than the buffer), the fds that did arrive are
 * closed and TruncatedMessageError is thrown: a message with lost fds cannot be used.
 */
export function receiveWithFds(
  fd: number,
  buffer: Uint8Array | readonly Uint8Array[],
  maxFds = SCM_MAX_FD,
  flags = 0,
): Received {
  if (!Number.isInteger(maxFds) || maxFds < 0 || maxFds > SCM_MAX_FD)
    throw new RangeError(`recvmsg: maxFds ${maxFds} not in 0..${SCM_MAX_FD}`);
  const buffers = buffer instanceof Uint8Array ? [buffer] : buffer;
  let iovCount = 0;
  let total = 0;
  for (const b of buffers) {
    if (b.byteLength === 0) continue;
    if (iovCount === MAX_IOVECS) throw new RangeError(`recvmsg: more than ${MAX_IOVECS} non-empty buffers`);
    const at = SCRATCH_IOV + iovCount * IOVEC_SIZE;
    setPointer(at + IOV_BASE, addressOf(b));
    setSize(at + IOV_LEN, b.byteLength);
    iovCount++;
    total += b.byteLength;
  }
  const controlSpace = maxFds > 0 ? cmsgSpace(4 * maxFds) : 0;
  setPointer(SCRATCH_MSGHDR + MSG_NAME, 0n);
  scratchView.setUint32(SCRATCH_MSGHDR + MSG_NAMELEN, 0, true);
  setPointer(SCRATCH_MSGHDR + MSG_IOV, scratchAddress + BigInt(SCRATCH_IOV));
  setSize(SCRATCH_MSGHDR + MSG_IOVLEN, iovCount);
  setPointer(SCRATCH_MSGHDR + MSG_CONTROL, controlSpace > 0 ? scratchAddress + BigInt(SCRATCH_CONTROL) : 0n);
  setSize(SCRATCH_MSGHDR + MSG_CONTROLLEN, controlSpace);
  scratchView.setInt32(SCRATCH_MSGHDR + MSG_FLAGS, 0, true);

  const r = sys.recvmsg(fd, scratchAddress + BigInt(SCRATCH_MSGHDR), flags | MSG_CMSG_CLOEXEC);
  if (r < 0) {
    if (isTransient(-r)) return { bytes: r, fds: [] };
    throw new SysError('recvmsg', `${fd}, ${total} bytes`, -r);
  }
  // The kernel wrote back how much control data it stored, and the result flags.
  const controlLength = Math.min(Number(scratchView.getBigUint64(SCRATCH_MSGHDR + MSG_CONTROLLEN, true)), controlSpace);
  const resultFlags = scratchView.getInt32(SCRATCH_MSGHDR + MSG_FLAGS, true);
  const fds: number[] = [];
  const header = cmsgLen(0);
  for (let at = 0; at + header <= controlLength; ) {
    // CMSG_FIRSTHDR / CMSG_NXTHDR
    const c = SCRATCH_CONTROL + at;
    const length = Number(scratchView.getBigUint64(c + CMSG_LEN_FIELD, true));
    if (length < header || at + length > controlLength) break;
    if (
      scratchView.getInt32(c + CMSG_LEVEL, true) === SOL_SOCKET &&
      scratchView.getInt32(c + CMSG_TYPE, true) === SCM_RIGHTS
    ) {
      for (let i = 0; i < Math.floor((length - header) / 4); i++)
        fds.push(scratchView.getInt32(c + CMSG_DATA_OFFSET + 4 * i, true));
    }
    at += cmsgAlign(length);
  }
  if (resultFlags & (MSG_CTRUNC | MSG_TRUNC)) {
    closeAll(fds);
    const what =
      resultFlags & MSG_CTRUNC
        ? `control data truncated (MSG_CTRUNC): the peer attached more file descriptors than this receive has room for (${maxFds})`
        : `record truncated (MSG_TRUNC): longer than the ${total}-byte buffer`;
    throw new TruncatedMessageError(`recvmsg(${fd}): ${what}; the ${fds.length} fds that did arrive were closed`);
  }
  return { bytes: r, fds };
}

/** Closes every fd in the list, ignoring errors (used on error paths, where the first error is the one to report). */
export function closeAll(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      close(fd);
    } catch {
      /* already reported elsewhere */
    }
  }
}

// ---- waiting ----------------------------------------------------------------------------------------------------

export interface PollEntry {
  readonly fd: number;
  /** POLLIN, POLLOUT, … */
  readonly events: number;
}

/** A timeout in ms as poll(2) takes it: -1 = forever. */
function pollTimeout(ms: number): number {
  if (ms === Infinity || ms < 0) return -1;
  return Math.min(Math.ceil(ms), 0x7fffffff);
}

function pollArray(entries: readonly PollEntry[]): { memory: ArrayBuffer; view: DataView } {
  // `new ArrayBuffer` keeps the array off the JS heap, so the address koffi hands to a pool thread stays valid.
  const memory = new ArrayBuffer(entries.length * POLLFD_SIZE);
  const view = new DataView(memory);
  entries.forEach((e, i) => {
    view.setInt32(i * POLLFD_SIZE + POLL_FD, e.fd, true);
    view.setUint16(i * POLLFD_SIZE + POLL_EVENTS, e.events, true);
  });
  return { memory, view };
}

function revents(entries: readonly PollEntry[], view: DataView): number[] {
  return entries.map((_, i) => view.getUint16(i * POLLFD_SIZE + POLL_REVENTS, true));
}

/**
 * poll(2), blocking this thread for up to `timeoutMs` (Infinity = forever): the revents of each entry, all 0 on
 * timeout. EINTR is retried with the time that is left. For the pause window, where the event loop is not needed.
 */
export function pollSync(entries: readonly PollEntry[], timeoutMs: number): number[] {
  const { memory, view } = pollArray(entries);
  const deadline = monotonicMs() + timeoutMs;
  for (;;) {
    const r = sys.poll(memory, entries.length, pollTimeout(deadline - monotonicMs()));
    if (r >= 0) return revents(entries, view);
    if (-r !== Errno.EINTR) throw new SysError('poll', entries.map((e) => e.fd).join(', '), -r);
    if (monotonicMs() >= deadline) return entries.map(() => 0);
  }
}

/**
 * poll(2) on a libuv thread-pool thread: the event loop runs while it waits. One wait costs a thread hop
 * (measured in socket.test.ts); callers try the operation first and only wait when it would block. A long wait
 * holds one pool thread, so include a wake-up fd (an eventfd) when the wait must be cancellable.
 */
export async function pollAsync(entries: readonly PollEntry[], timeoutMs: number): Promise<number[]> {
  const { memory, view } = pollArray(entries);
  const deadline = monotonicMs() + timeoutMs;
  for (;;) {
    const r = await sys.pollAsync(memory, entries.length, pollTimeout(deadline - monotonicMs()));
    if (r >= 0) return revents(entries, view);
    if (-r !== Errno.EINTR) throw new SysError('poll', entries.map((e) => e.fd).join(', '), -r);
    if (monotonicMs() >= deadline) return entries.map(() => 0);
  }
}
