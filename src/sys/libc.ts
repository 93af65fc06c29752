// The FFI binding of libc: the only module that loads koffi. Every wrapper checks the return value, reads errno
// at once (any later call may clobber it) and throws a SysError naming the call and its argument.
import { createRequire } from 'node:module';
import { SysError, Errno } from './errno.js';
import { hex } from '../util/hex.js';

const require = createRequire(import.meta.url);
// koffi is CommonJS; loading it through require keeps start-up cheap and works the same in worker threads.
const koffi = require('koffi') as typeof import('koffi');

const libc = koffi.load('libc.so.6');

/** A raw pointer: koffi represents addresses as bigint. */
export type Pointer = bigint;
/** Anything koffi can pass as `void *`: memory we own in JS, or a raw address. */
export type Memory = ArrayBufferView | ArrayBuffer | Pointer | null;

// Fixed-arity declarations: the variadic forms work too, but are slower through koffi.
const c = {
  open: libc.func('int open(const char *path, int flags, int mode)'),
  close: libc.func('int close(int fd)'),
  ioctlValue: libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)'),
  ioctlPointer: libc.func('int ioctl(int fd, unsigned long request, void *arg)'),
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
  munmap: libc.func('int munmap(void *addr, size_t length)'),
  madvise: libc.func('int madvise(void *addr, size_t length, int advice)'),
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t length)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  read: libc.func('intptr_t read(int fd, void *buf, size_t count)'),
  write: libc.func('intptr_t write(int fd, const void *buf, size_t count)'),
  pread: libc.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)'),
  pwrite: libc.func('intptr_t pwrite(int fd, const void *buf, size_t count, int64_t offset)'),
  statx: libc.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, _Out_ uint8_t *buf)'),
  mincore: libc.func('int mincore(void *addr, size_t length, _Out_ uint8_t *vec)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, long arg)'),
  fcntlPointer: libc.func('int fcntl(int fd, int cmd, void *arg)'),
  getpid: libc.func('int getpid(void)'),
  gettid: libc.func('int gettid(void)'),
  prctl: libc.func('int prctl(int option, ...)'),
  tgkill: libc.func('int tgkill(int tgid, int tid, int sig)'),
  ptrace: libc.func('long ptrace(int request, int pid, void *addr, void *data)'),
  waitpid: libc.func('int waitpid(int pid, int *status, int options)'),
  clockGettime: libc.func('int clock_gettime(int clockid, _Out_ int64_t *ts)'),
  execve: libc.func('int execve(const char *path, const char **argv, const char **envp)'),
  fgetxattr: libc.func('intptr_t fgetxattr(int fd, const char *name, void *value, size_t size)'),
  fsetxattr: libc.func('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)'),
};

function check(call: string, argument: () => string, result: number): number {
  if (result < 0) {
    const errno = koffi.errno();
    throw new SysError(call, argument(), errno);
  }
  return result;
}

export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_NOFOLLOW = 0o400000;

export const AT_EMPTY_PATH = 0x1000;
export const STATX_BYTES = 256;

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_HUGETLB = 0x40000;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_SYNC = 0x80000;
export const MAP_FAILED = 0xffffffffffffffffn;

export const MADV_DONTFORK = 10;
export const MADV_MERGEABLE = 12;
export const MADV_HUGEPAGE = 14;

export const MFD_CLOEXEC = 0x0001;
export const MFD_ALLOW_SEALING = 0x0002;
export const MFD_HUGETLB = 0x0004;

export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;

export const SIGUSR2 = 12;

export function open(path: string, flags: number, mode = 0o600): number {
  return check('open', () => path, c.open(path, flags, mode) as number);
}

export function close(fd: number): void {
  check('close', () => String(fd), c.close(fd) as number);
}

/** ioctl with an integer argument (or none). Returns the non-negative result. */
export function ioctl(fd: number, request: number, arg: number | bigint = 0, name?: string): number {
  const result = c.ioctlValue(fd, request, arg) as number;
  if (result < 0) {
    const errno = koffi.errno();
    throw new SysError('ioctl', `${fd}, ${name ?? hex(request)}`, errno);
  }
  return result;
}

/** ioctl whose argument points at memory (a struct we own, or a raw address). */
export function ioctlPtr(fd: number, request: number, arg: Memory, name?: string): number {
  const result = c.ioctlPointer(fd, request, arg) as number;
  if (result < 0) {
    const errno = koffi.errno();
    throw new SysError('ioctl', `${fd}, ${name ?? hex(request)}`, errno);
  }
  return result;
}

/**
 * ioctl that reports EINTR/EAGAIN-style failures as a negative errno instead of throwing: the vCPU loop's KVM_RUN
 * gets EINTR on every kick, which is not an error.
 */
export function ioctlRaw(fd: number, request: number, arg: number | bigint = 0): number {
  const result = c.ioctlValue(fd, request, arg) as number;
  return result < 0 ? -koffi.errno() : result;
}

export function mmap(
  addr: Pointer | null,
  length: number,
  prot: number,
  flags: number,
  fd: number,
  offset = 0,
): Pointer {
  const result = c.mmap(addr, length, prot, flags, fd, offset) as Pointer | null;
  if (result === null || result === MAP_FAILED) {
    const errno = koffi.errno();
    throw new SysError('mmap', `length ${length}, fd ${fd}, offset ${offset}`, errno);
  }
  return result;
}

export function munmap(addr: Pointer, length: number): void {
  check('munmap', () => `${hex(addr)}, ${length}`, c.munmap(addr, length) as number);
}

export function madvise(addr: Pointer, length: number, advice: number): void {
  check('madvise', () => `${hex(addr)}, ${length}, ${advice}`, c.madvise(addr, length, advice) as number);
}

export function memfdCreate(name: string, flags: number): number {
  return check('memfd_create', () => name, c.memfdCreate(name, flags) as number);
}

export function ftruncate(fd: number, length: number): void {
  check('ftruncate', () => `${fd}, ${length}`, c.ftruncate(fd, length) as number);
}

export function fallocate(fd: number, mode: number, offset: number, length: number): void {
  check('fallocate', () => `${fd}, ${offset}, ${length}`, c.fallocate(fd, mode, offset, length) as number);
}

export function eventfd(initval: number, flags: number): number {
  return check('eventfd', () => `${initval}, ${flags}`, c.eventfd(initval, flags) as number);
}

/** read(2) into a buffer we own; returns bytes read, or -errno for EAGAIN/EINTR so pollers can tell "nothing yet". */
export function read(fd: number, buffer: ArrayBufferView, length = buffer.byteLength): number {
  if (length > buffer.byteLength) throw new RangeError(`read: length ${length} exceeds buffer ${buffer.byteLength}`);
  const result = Number(c.read(fd, buffer, length));
  if (result < 0) {
    const errno = koffi.errno();
    if (errno === Errno.EAGAIN || errno === Errno.EINTR) return -errno;
    throw new SysError('read', `${fd}, ${length}`, errno);
  }
  return result;
}

/** write(2) from a buffer we own; returns bytes written, or -errno for EAGAIN/EINTR. */
export function write(fd: number, buffer: ArrayBufferView, length = buffer.byteLength): number {
  if (length > buffer.byteLength) throw new RangeError(`write: length ${length} exceeds buffer ${buffer.byteLength}`);
  const result = Number(c.write(fd, buffer, length));
  if (result < 0) {
    const errno = koffi.errno();
    if (errno === Errno.EAGAIN || errno === Errno.EINTR) return -errno;
    throw new SysError('write', `${fd}, ${length}`, errno);
  }
  return result;
}

/** pread(2) at a file offset (a VFIO region is an offset range of the device fd); returns bytes read, EINTR retried. */
export function pread(fd: number, buffer: ArrayBufferView, offset: number, length = buffer.byteLength): number {
  if (length > buffer.byteLength) throw new RangeError(`pread: length ${length} exceeds buffer ${buffer.byteLength}`);
  for (;;) {
    const result = Number(c.pread(fd, buffer, length, offset));
    if (result >= 0) return result;
    const errno = koffi.errno();
    if (errno !== Errno.EINTR) throw new SysError('pread', `${fd}, ${length}, ${hex(offset)}`, errno);
  }
}

/** pwrite(2) at a file offset; returns bytes written, EINTR retried. */
export function pwrite(fd: number, buffer: ArrayBufferView, offset: number, length = buffer.byteLength): number {
  if (length > buffer.byteLength) throw new RangeError(`pwrite: length ${length} exceeds buffer ${buffer.byteLength}`);
  for (;;) {
    const result = Number(c.pwrite(fd, buffer, length, offset));
    if (result >= 0) return result;
    const errno = koffi.errno();
    if (errno !== Errno.EINTR) throw new SysError('pwrite', `${fd}, ${length}, ${hex(offset)}`, errno);
  }
}

/** statx(2) of an open file (AT_EMPTY_PATH) into `buffer` (struct statx, 256 bytes); fields outside `mask` may be 0. */
export function statxFd(fd: number, mask: number, buffer: Uint8Array): void {
  if (buffer.byteLength < STATX_BYTES) throw new RangeError(`statx: buffer of ${buffer.byteLength} < ${STATX_BYTES}`);
  check('statx', () => `${fd}, mask ${hex(mask)}`, c.statx(fd, '', AT_EMPTY_PATH, mask, buffer) as number);
}

/** mincore(2): one byte per page of the mapping at `addr`, bit 0 set when the page is resident. */
export function mincore(addr: Pointer, length: number, vec: Uint8Array): void {
  check('mincore', () => `${hex(addr)}, ${length}`, c.mincore(addr, length, vec) as number);
}

export function fcntl(fd: number, cmd: number, arg = 0): number {
  return check('fcntl', () => `${fd}, ${cmd}, ${arg}`, c.fcntl(fd, cmd, arg) as number);
}

/** fcntl with a pointer argument (struct flock for the record locks). */
export function fcntlPtr(fd: number, cmd: number, arg: Memory): number {
  return check('fcntl', () => `${fd}, ${cmd}`, c.fcntlPointer(fd, cmd, arg) as number);
}

export function getpid(): number {
  return c.getpid() as number;
}

export function gettid(): number {
  return c.gettid() as number;
}

const PR_SET_NAME = 15;

/**
 * Names the calling thread (prctl PR_SET_NAME; at most 15 bytes are kept), as QEMU names its vCPU threads
 * `CPU n/KVM`: what ps, top and /proc/PID/task/TID/comm show.
 */
export function setThreadName(name: string): void {
  check('prctl', () => `PR_SET_NAME, ${name}`, c.prctl(PR_SET_NAME, 'const char *', name.slice(0, 15)) as number);
}

/**
 * execve(2): replaces this process's image (same pid; every other thread dies; fds without FD_CLOEXEC stay open).
 * Returns only on failure, with the errno (the caller decides how to recover: nothing of the process has changed).
 */
export function execve(path: string, argv: readonly string[], envp: readonly string[]): number {
  c.execve(path, [...argv, null], [...envp, null]);
  return koffi.errno();
}

export function tgkill(tgid: number, tid: number, signal: number): void {
  check('tgkill', () => `${tgid}, ${tid}, ${signal}`, c.tgkill(tgid, tid, signal) as number);
}

/**
 * Stops one thread of another process and lets it go again, the rest of the process running on: what tests use to
 * make a thread that cannot get to its next instruction — a vCPU that cannot park (ptrace(2): PTRACE_SEIZE, then
 * PTRACE_INTERRUPT, waitpid(__WALL) for the stop; PTRACE_DETACH resumes it). Needs CAP_SYS_PTRACE or a child.
 */
export function stopThread(tid: number): { resume(): void } {
  const PTRACE_SEIZE = 0x4206;
  const PTRACE_INTERRUPT = 0x4207;
  const PTRACE_DETACH = 17;
  const WALL = 0x40000000;
  check('ptrace', () => `PTRACE_SEIZE, ${tid}`, Number(c.ptrace(PTRACE_SEIZE, tid, null, null)));
  try {
    check('ptrace', () => `PTRACE_INTERRUPT, ${tid}`, Number(c.ptrace(PTRACE_INTERRUPT, tid, null, null)));
    const status = new Int32Array(1);
    check('waitpid', () => `${tid}, __WALL`, c.waitpid(tid, status, WALL) as number);
  } catch (e) {
    c.ptrace(PTRACE_DETACH, tid, null, null);
    throw e;
  }
  return {
    resume: () => void check('ptrace', () => `PTRACE_DETACH, ${tid}`, Number(c.ptrace(PTRACE_DETACH, tid, null, null))),
  };
}

/**
 * A zero-copy ArrayBuffer over mapped memory. Creating one costs ~25 µs per MiB, so create it once per mapping,
 * and drop every view before the mapping is unmapped: touching a view after munmap kills the process.
 */
export function view(address: Pointer, length: number): ArrayBuffer {
  return koffi.view(address, length);
}

/** Address of the memory behind a JS buffer (for structs that embed pointers to other structs). */
export function addressOf(buffer: ArrayBufferView | ArrayBuffer): Pointer {
  return koffi.address(buffer);
}

export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;

const timespec = new BigInt64Array(2);
/** clock_gettime(2) in nanoseconds: CLOCK_REALTIME for wall-clock stamps, CLOCK_MONOTONIC for intervals. */
export function clockNs(clock: number = CLOCK_MONOTONIC): bigint {
  check('clock_gettime', () => String(clock), c.clockGettime(clock, timespec) as number);
  return timespec[0] * 1_000_000_000n + timespec[1];
}

/** CLOCK_MONOTONIC in (fractional) milliseconds: for deadlines and timeouts. */
export function monotonicMs(): number {
  return Number(clockNs(CLOCK_MONOTONIC)) / 1e6;
}

// ---- sockets and poll (src/sys/socket.ts builds on these) -------------------------------------------------------
// Raw bindings: each returns the call's result, or -errno on failure, and never throws. On a non-blocking socket
// EAGAIN, EINTR and EINPROGRESS are expected outcomes, not errors; src/sys/socket.ts decides which ones are and
// throws SysError for the rest. Structures (sockaddr_un, msghdr, pollfd, …) are laid out by socket.ts and passed
// as memory we own.
const s = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  socketpair: libc.func('int socketpair(int domain, int type, int protocol, void *sv)'),
  bind: libc.func('int bind(int fd, const void *addr, unsigned int len)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  accept4: libc.func('int accept4(int fd, void *addr, void *addrlen, int flags)'),
  connect: libc.func('int connect(int fd, const void *addr, unsigned int len)'),
  shutdown: libc.func('int shutdown(int fd, int how)'),
  sendmsg: libc.func('intptr_t sendmsg(int fd, const void *msg, int flags)'),
  recvmsg: libc.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, void *length)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
};

function raw(result: number | bigint): number {
  const n = Number(result);
  return n < 0 ? -koffi.errno() : n;
}

/** socket(2), socketpair(2), bind, listen, accept4, connect, shutdown, sendmsg, recvmsg, getsockopt, poll: -errno on failure. */
export const socketCalls = {
  socket: (domain: number, type: number, protocol: number): number => raw(s.socket(domain, type, protocol)),
  /** `sv` receives the two fds (an Int32Array of length 2). */
  socketpair: (domain: number, type: number, protocol: number, sv: Int32Array): number =>
    raw(s.socketpair(domain, type, protocol, sv)),
  bind: (fd: number, addr: Memory, length: number): number => raw(s.bind(fd, addr, length)),
  listen: (fd: number, backlog: number): number => raw(s.listen(fd, backlog)),
  accept4: (fd: number, flags: number): number => raw(s.accept4(fd, null, null, flags)),
  connect: (fd: number, addr: Memory, length: number): number => raw(s.connect(fd, addr, length)),
  shutdown: (fd: number, how: number): number => raw(s.shutdown(fd, how)),
  /** `msg` is a struct msghdr whose embedded pointers must stay valid for the call (see socket.ts). */
  sendmsg: (fd: number, msg: Memory, flags: number): number => raw(s.sendmsg(fd, msg, flags)),
  /** The kernel writes msg_controllen and msg_flags back into `msg`: pass memory we own, never a copy. */
  recvmsg: (fd: number, msg: Memory, flags: number): number => raw(s.recvmsg(fd, msg, flags)),
  /** `length` is a socklen_t in/out (a Uint32Array of length 1). */
  getsockopt: (fd: number, level: number, name: number, value: Memory, length: Uint32Array): number =>
    raw(s.getsockopt(fd, level, name, value, length)),
  /** `fds` is an array of struct pollfd; revents are written back into it. */
  poll: (fds: Memory, count: number, timeoutMs: number): number => raw(s.poll(fds, count, timeoutMs)),
  /**
   * poll(2) on one of libuv's thread-pool threads (koffi's async call): the event loop keeps running while it
   * waits. The pool is shared with fs and crypto work (4 threads by default), so a caller that may wait long
   * should include a wake-up fd (an eventfd) in `fds` to end the wait early. Resolves to the count or -errno.
   */
  pollAsync: (fds: Memory, count: number, timeoutMs: number): Promise<number> =>
    new Promise((resolve, reject) => {
      s.poll.async(fds, count, timeoutMs, (err: unknown, result: number) => {
        if (err) reject(err);
        else resolve(result < 0 ? -koffi.errno() : result);
      });
    }),
};

// ---- epoll (src/sys/epoll.ts builds on these) -------------------------------------------------------------------
// Raw bindings as for sockets: the call's result, or -errno. struct epoll_event's layout and the flags are in epoll.ts.
const ep = {
  create1: libc.func('int epoll_create1(int flags)'),
  ctl: libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)'),
  wait: libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
};

/** epoll_create1(2), epoll_ctl(2), epoll_wait(2): -errno on failure. */
export const epollCalls = {
  create1: (flags: number): number => raw(ep.create1(flags)),
  ctl: (epfd: number, op: number, fd: number, event: Uint8Array | null): number => raw(ep.ctl(epfd, op, fd, event)),
  wait: (epfd: number, events: Uint8Array, maxEvents: number, timeoutMs: number): number =>
    raw(ep.wait(epfd, events, maxEvents, timeoutMs)),
};

/** An extended attribute's value into `buffer`; returns its length. */
export function fgetxattr(fd: number, name: string, buffer: Uint8Array): number {
  return check('fgetxattr', () => `${fd}, ${name}`, Number(c.fgetxattr(fd, name, buffer, buffer.byteLength)));
}

/** Sets an extended attribute (created or replaced). */
export function fsetxattr(fd: number, name: string, value: Uint8Array): void {
  check('fsetxattr', () => `${fd}, ${name}`, c.fsetxattr(fd, name, value, value.byteLength, 0) as number);
}
