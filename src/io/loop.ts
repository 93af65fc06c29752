// The I/O thread's loop: epoll over the devices' watches (queue-notification eventfds, host fds) and the control
// eventfd; each batch of ready fds is handled under the machine lock, like a vCPU exit.
import * as libc from '../sys/libc.js';
import { Epoll, EPOLLIN, EPOLLONESHOT } from '../sys/epoll.js';
import type { IoWatch } from '../bus/pci-types.js';
import type { MachineLock } from '../sync/lock.js';
import { IoRequest, type IoThreadControl } from './control.js';

export interface IoLoopContext {
  readonly control: IoThreadControl;
  readonly lock: MachineLock;
  readonly watches: readonly IoWatch[];
  /** A watch's handler threw (a device model bug): report it; the loop goes on. */
  readonly onError?: (watch: IoWatch, error: unknown) => void;
}

/** How a readable watch is armed: reported once, then quiet until re-armed. */
const ARM_READ = EPOLLIN | EPOLLONESHOT;
/** epoll data value of the control eventfd (watches use their index). */
const CONTROL = 0xffffffff;

/** Runs until the main thread asks the thread to stop; parks in between while a pause is requested. */
export function runIoLoop(ctx: IoLoopContext): void {
  const { control, lock, watches } = ctx;
  const epoll = new Epoll(64);
  const counter = new BigUint64Array(1);
  // Readable watches are one-shot: after a report the fd stays quiet until re-armed (at once, or — when the handler
  // could not take everything — after the next eventfd watch of its group fires).
  const disarmed = new Set<number>();
  try {
    epoll.add(control.wakeFd, EPOLLIN, CONTROL);
    for (const [i, w] of watches.entries()) epoll.add(w.fd, w.kind === 'readable' ? ARM_READ : EPOLLIN, i);
    for (;;) {
      const request = control.request;
      if (request === IoRequest.Stop) return;
      if (request === IoRequest.Pause) {
        if (!control.park()) return;
        continue;
      }
      const events = epoll.wait(-1);
      if (events.length === 0) continue;
      lock.lock();
      try {
        for (const { data } of events) {
          if (data === CONTROL) {
            control.drainWake();
            continue;
          }
          const w = watches[data];
          if (!w) continue;
          if (w.kind === 'eventfd') libc.read(w.fd, counter);
          let tookAll = true;
          try {
            tookAll = w.ready() !== false;
          } catch (error) {
            ctx.onError?.(w, error);
          }
          if (w.kind === 'readable') {
            if (!tookAll) disarmed.add(data);
            else epoll.modify(w.fd, ARM_READ, data);
          } else if (disarmed.size) {
            for (const i of [...disarmed]) {
              if (watches[i].group !== w.group) continue;
              disarmed.delete(i);
              epoll.modify(watches[i].fd, ARM_READ, i);
            }
          }
        }
      } finally {
        lock.unlock();
      }
    }
  } finally {
    epoll.close();
  }
}
