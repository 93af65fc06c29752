// The output half of a character backend, usable from any thread: a vCPU worker writes the guest's serial or
// debugcon output itself with write(2) on the backend's fd, instead of posting bytes to the main thread.
//
// The backend (main thread) owns the fd. What crosses threads is a small control block in a SharedArrayBuffer:
//
//   FD       the fd to write to, -1 when there is none (no socket client, null backend, closed)
//   USERS    how many writers are inside write(2) on FD right now
//   DROPPED  bytes dropped (no fd, write error, or a reader that stalled past the limit); wraps at 2^31
//   STALLED  the fd that last hit the stall limit: further EAGAINs on it drop at once instead of waiting again
//
// Replacing or closing the fd (a socket client leaves, the backend closes) is `OutputSlot.swap`: it stores the new
// fd, then waits until USERS is 0 before the old fd may be closed. A writer increments USERS before it loads FD,
// and all of these are sequentially consistent Atomics, so a writer either sees the new fd or is counted and waited
// for: a closed fd (whose number the kernel may reuse) is never written to.
//
// Every fd a backend hands out is non-blocking (sockets, FIFOs opened O_NONBLOCK, stdout reopened so when it is a
// pipe; regular files do not block): a writer holds the machine lock, and a write(2) that waits for a reader who
// never comes would wedge the whole VM (stop, cpr-save, quit). The bounded buffer is the kernel's (a pipe's 64 KiB,
// a socket's send buffer); once it is full, on EAGAIN the writer sleeps 1 ms (Atomics.wait) and retries, for at
// most `stallLimitMs` (100 ms by default) without progress; past that the rest is dropped and counted (DROPPED),
// and further writes to that fd are dropped at once until it takes bytes again — so a reader that stops reading
// costs the guest one short stall, then loses output, rather than freezing the VM. Short writes are continued;
// EINTR is retried at once.
import { write as sysWrite } from '../sys/libc.js';
import { Errno, SysError } from '../sys/errno.js';

const FD = 0;
const USERS = 1;
const DROPPED = 2;
const STALLED = 3;
const WORDS = 4;

/** Plain data + a SharedArrayBuffer: goes through `workerData` / postMessage as is. */
export interface CharOutTransfer {
  readonly control: SharedArrayBuffer;
  /** How long a writer waits for a non-blocking fd to take more bytes before dropping them. */
  readonly stallLimitMs: number;
  /** For messages: `stdio`, `unix:/run/vm.sock`, … */
  readonly label: string;
}

/** Short next to the 1 s a QMP stop may take: a vCPU stalled here holds the machine lock. */
export const DEFAULT_STALL_LIMIT_MS = 100;

/** Shared by every writer of this thread: the cell Atomics.wait sleeps on (never notified). */
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** A CharOut over a control block. One per thread per backend; `write` never throws. */
export class SharedFdOut {
  private readonly control: Int32Array;
  private readonly stallLimitMs: number;
  readonly label: string;

  constructor(transfer: CharOutTransfer) {
    this.control = new Int32Array(transfer.control, 0, WORDS);
    this.stallLimitMs = transfer.stallLimitMs;
    this.label = transfer.label;
  }

  write(bytes: Uint8Array): void {
    const ctl = this.control;
    const length = bytes.length;
    if (length === 0) return;
    Atomics.add(ctl, USERS, 1);
    try {
      const fd = Atomics.load(ctl, FD);
      if (fd < 0) Atomics.add(ctl, DROPPED, length);
      else this.writeAll(fd, bytes, length);
    } finally {
      if (Atomics.sub(ctl, USERS, 1) === 1) Atomics.notify(ctl, USERS);
    }
  }

  /** Bytes dropped so far by every writer of this backend. */
  get dropped(): number {
    return Atomics.load(this.control, DROPPED);
  }

  private writeAll(fd: number, bytes: Uint8Array, length: number): void {
    const ctl = this.control;
    let done = 0;
    let stallStart = -1;
    while (done < length) {
      let n: number;
      try {
        n = done === 0 ? sysWrite(fd, bytes, length) : sysWrite(fd, bytes.subarray(done), length - done);
      } catch (e) {
        // EPIPE/ECONNRESET (the peer left: the main thread will notice and swap the fd), ENOSPC, EIO, …
        if (!(e instanceof SysError)) throw e;
        Atomics.add(ctl, DROPPED, length - done);
        return;
      }
      if (n > 0) {
        done += n;
        stallStart = -1;
        if (Atomics.load(ctl, STALLED) === fd) Atomics.store(ctl, STALLED, -1);
        continue;
      }
      if (n === -Errno.EINTR) continue;
      // EAGAIN (or a zero-byte write): the reader is behind.
      if (Atomics.load(ctl, FD) !== fd || Atomics.load(ctl, STALLED) === fd) {
        Atomics.add(ctl, DROPPED, length - done);
        return;
      }
      const now = performance.now();
      if (stallStart < 0) {
        stallStart = now;
      } else if (now - stallStart >= this.stallLimitMs) {
        Atomics.store(ctl, STALLED, fd);
        Atomics.add(ctl, DROPPED, length - done);
        return;
      }
      sleepMs(1);
    }
  }
}

/** Any thread: the CharOut of a backend, from its `transferable()`. */
export function openCharOut(transfer: CharOutTransfer): SharedFdOut {
  return new SharedFdOut(transfer);
}

/** How long swap() waits for writers still inside write(2) on the old fd before giving up on closing it. */
const SWAP_WAIT_LIMIT_MS = 5000;

/** The owner's (main thread's) side of a control block. */
export class OutputSlot {
  readonly transfer: CharOutTransfer;
  private readonly control: Int32Array;

  constructor(label: string, stallLimitMs = DEFAULT_STALL_LIMIT_MS) {
    const buffer = new SharedArrayBuffer(WORDS * 4);
    this.control = new Int32Array(buffer);
    this.control[FD] = -1;
    this.control[STALLED] = -1;
    this.transfer = Object.freeze({ control: buffer, stallLimitMs, label });
  }

  get fd(): number {
    return Atomics.load(this.control, FD);
  }

  get dropped(): number {
    return Atomics.load(this.control, DROPPED);
  }

  /**
   * Make writers use `fd` (-1: none) and return the previous fd once no writer uses it any more, so the caller may
   * close it. Returns -1 if there was none — or if a writer is still blocked in write(2) on it after a long wait
   * (a blocking fd whose reader is stuck): then the old fd must be left open rather than risk its number being
   * reused under that writer.
   */
  swap(fd: number): number {
    const ctl = this.control;
    const old = Atomics.exchange(ctl, FD, fd);
    if (old === fd) return -1;
    const deadline = performance.now() + SWAP_WAIT_LIMIT_MS;
    for (let users = Atomics.load(ctl, USERS); users !== 0; users = Atomics.load(ctl, USERS)) {
      if (performance.now() >= deadline) return -1;
      Atomics.wait(ctl, USERS, users, 5);
    }
    return old;
  }
}
