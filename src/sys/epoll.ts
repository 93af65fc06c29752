// epoll(7) for the I/O thread: a small Epoll class that owns the epoll fd and a reusable event buffer (no allocation
// per wait), over libc.ts's raw epoll_create1, epoll_ctl and epoll_wait bindings.
//
// struct epoll_event is packed on x86-64 (12 bytes: u32 events at 0, u64 data at 4); src/sys/epoll-abi.test.ts
// checks every number here against <sys/epoll.h>.
import { SysError, Errno } from './errno.js';
import { close, epollCalls } from './libc.js';

/** epoll_create1 flag: close the epoll fd on exec. */
export const EPOLL_CLOEXEC = 0o2000000;
/** epoll_ctl operations. */
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
/** Event bits: readable, writable, error, hang-up, peer closed its write side. */
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
/** Report the fd once, then disarm it until EPOLL_CTL_MOD re-arms it. */
export const EPOLLONESHOT = 1 << 30;
/** Edge-triggered. */
export const EPOLLET = 1 << 31;

/** sizeof(struct epoll_event) and its members' offsets (packed on x86-64). */
export const EPOLL_EVENT_SIZE = 12;
export const EPOLL_EVENT_EVENTS_OFFSET = 0;
export const EPOLL_EVENT_DATA_OFFSET = 4;

/** One ready fd as epoll_wait reported it. */
export interface EpollEvent {
  readonly events: number;
  readonly data: number;
}

export class Epoll {
  readonly fd: number;
  private readonly buffer: Uint8Array;
  private readonly view: DataView;
  private readonly one = new Uint8Array(EPOLL_EVENT_SIZE);
  private readonly oneView = new DataView(this.one.buffer);
  private closed = false;

  constructor(readonly maxEvents = 64) {
    const fd = epollCalls.create1(EPOLL_CLOEXEC);
    if (fd < 0) throw new SysError('epoll_create1', 'EPOLL_CLOEXEC', -fd);
    this.fd = fd;
    this.buffer = new Uint8Array(maxEvents * EPOLL_EVENT_SIZE);
    this.view = new DataView(this.buffer.buffer);
  }

  private ctl(op: number, fd: number, events: number, data: number, name: string): void {
    this.oneView.setUint32(EPOLL_EVENT_EVENTS_OFFSET, events >>> 0, true);
    this.oneView.setBigUint64(EPOLL_EVENT_DATA_OFFSET, BigInt(data), true);
    const r = epollCalls.ctl(this.fd, op, fd, this.one);
    if (r < 0) throw new SysError('epoll_ctl', `${this.fd}, ${name}, ${fd}`, -r);
  }

  /** Watches `fd` for `events`; `data` comes back with each report (an index of the caller's). */
  add(fd: number, events: number, data: number): void {
    this.ctl(EPOLL_CTL_ADD, fd, events, data, 'EPOLL_CTL_ADD');
  }

  modify(fd: number, events: number, data: number): void {
    this.ctl(EPOLL_CTL_MOD, fd, events, data, 'EPOLL_CTL_MOD');
  }

  remove(fd: number): void {
    const r = epollCalls.ctl(this.fd, EPOLL_CTL_DEL, fd, this.one);
    if (r < 0) throw new SysError('epoll_ctl', `${this.fd}, EPOLL_CTL_DEL, ${fd}`, -r);
  }

  /**
   * Blocks up to `timeoutMs` (-1: forever) and returns the ready fds; an interrupted wait (EINTR) returns none.
   */
  wait(timeoutMs: number): EpollEvent[] {
    const n = epollCalls.wait(this.fd, this.buffer, this.maxEvents, timeoutMs);
    if (n < 0) {
      if (-n === Errno.EINTR) return [];
      throw new SysError('epoll_wait', String(this.fd), -n);
    }
    const out: EpollEvent[] = [];
    for (let i = 0; i < n; i++) {
      const at = i * EPOLL_EVENT_SIZE;
      out.push({
        events: this.view.getUint32(at + EPOLL_EVENT_EVENTS_OFFSET, true),
        data: Number(this.view.getBigUint64(at + EPOLL_EVENT_DATA_OFFSET, true)),
      });
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
