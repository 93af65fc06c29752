// Read readiness of fds that Node's event loop must not read itself: a QMP connection is read with recvmsg(2), so
// that descriptors a client attaches (SCM_RIGHTS, for getfd) arrive instead of being dropped by libuv's read(2).
// Node has no public "tell me when this fd is readable", so one poll(2) waits for all of them on a libuv pool
// thread (src/sys/socket.ts pollAsync), woken through an eventfd whenever the set changes. However many fds are
// watched, one pool thread is held, and only while at least one is.
import { close, eventfd, read, write, EFD_CLOEXEC, EFD_NONBLOCK } from './libc.js';
import { pollAsync, POLLERR, POLLHUP, POLLIN, POLLNVAL } from './socket.js';

/** Called when `fd` may be read without blocking (or has hung up / failed): read it until EAGAIN, or unwatch it. */
export type OnReadable = () => void;

export class FdReadiness {
  private readonly watched = new Map<number, OnReadable>();
  private wakeFd = -1;
  private polling = false;

  /** Starts (or replaces) the watch on `fd`. Level-triggered: `onReadable` is called again while input remains. */
  watch(fd: number, onReadable: OnReadable): void {
    this.watched.set(fd, onReadable);
    this.kick();
  }

  /** Ends the watch on `fd` (before it is closed: the number may be reused). Unknown fds are ignored. */
  unwatch(fd: number): void {
    if (this.watched.delete(fd)) this.kick();
  }

  get size(): number {
    return this.watched.size;
  }

  /** Makes the poll loop (re)read the set: starts it if idle, wakes it if it waits on the old set. */
  private kick(): void {
    if (this.polling) {
      write(this.wakeFd, new BigUint64Array([1n]));
      return;
    }
    if (this.watched.size === 0) return;
    if (this.wakeFd < 0) this.wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    this.polling = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.watched.size > 0) {
        const fds = [...this.watched.keys()];
        const revents = await pollAsync(
          [{ fd: this.wakeFd, events: POLLIN }, ...fds.map((fd) => ({ fd, events: POLLIN }))],
          Infinity,
        );
        if (revents[0]) read(this.wakeFd, new BigUint64Array(1)); // a non-blocking eventfd: -EAGAIN if raced
        fds.forEach((fd, i) => {
          if (!(revents[i + 1] & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) return;
          // Looked up again: an earlier callback of this round may have ended this watch.
          const onReadable = this.watched.get(fd);
          if (onReadable === undefined) return;
          if (revents[i + 1] & POLLNVAL) this.watched.delete(fd); // closed under us: nothing will ever come
          try {
            onReadable();
          } catch {
            this.watched.delete(fd); // a reader that fails would fail again on every round
          }
        });
      }
    } finally {
      this.polling = false;
      if (this.wakeFd >= 0) {
        close(this.wakeFd);
        this.wakeFd = -1;
      }
      // A watch added while the last round was being handled (after the size check) starts a new loop.
      if (this.watched.size > 0) this.kick();
    }
  }
}
