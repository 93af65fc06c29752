// A QMP connection's input, read with recvmsg(2) instead of by Node: libuv reads a unix socket with read(2), and
// the kernel discards any descriptors attached to what read(2) consumes — QMP's getfd needs them (the client sends
// the fd as SCM_RIGHTS with the command, or just before it, as libvirt and QEMU's Python qemu.qmp do). Node still
// writes the replies; the server accepts connections paused (pauseOnConnect), so libuv never reads them.
//
// We read a duplicate of the socket's fd (fcntl F_DUPFD_CLOEXEC on `socket._handle.fd`, as the unix chardev does):
// its number stays ours until close(), so a connection accepted after this one closes can never be mistaken for it.
import type net from 'node:net';
import type { FdReadiness } from '../sys/fd-readiness.js';
import { close, fcntl } from '../sys/libc.js';
import { MSG_DONTWAIT, SCM_MAX_FD, receiveWithFds } from '../sys/socket.js';

const F_DUPFD_CLOEXEC = 1030; // <fcntl.h>: F_LINUX_SPECIFIC_BASE + 6
/** One recvmsg's worth; a message longer than this arrives in several chunks, as from Node. */
const READ_BYTES = 64 * 1024;
/** Reads per wake-up before other connections get their turn. */
const READS_PER_WAKE = 16;

export interface InputSink {
  /** Bytes in arrival order, with the descriptors that came with them (the sink owns those: keep or close them). */
  data(bytes: Buffer, fds: number[]): void;
  /** The client will send nothing more (it closed or half-closed its side, or the connection failed). */
  end(): void;
}

export class ConnectionInput {
  private readonly fd: number;
  private paused = false;
  private done = false;
  private readonly buffer = Buffer.allocUnsafe(READ_BYTES);

  constructor(
    socket: net.Socket,
    private readonly readiness: FdReadiness,
    private readonly sink: InputSink,
  ) {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0)
      throw new Error('cannot get the fd of a QMP connection (Node internals changed?)');
    this.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    this.readiness.watch(this.fd, () => this.readable());
  }

  /** Stops reading (the client has too many requests waiting): the kernel's buffer, then the client, wait. */
  pause(): void {
    if (this.paused || this.done) return;
    this.paused = true;
    this.readiness.unwatch(this.fd);
  }

  resume(): void {
    if (!this.paused || this.done) return;
    this.paused = false;
    this.readiness.watch(this.fd, () => this.readable());
  }

  /** No more input is wanted; closes our duplicate (the socket itself is Node's). */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.readiness.unwatch(this.fd);
    close(this.fd);
  }

  private readable(): void {
    for (let i = 0; i < READS_PER_WAKE && !this.paused && !this.done; i++) {
      let bytes: number;
      let fds: number[];
      try {
        // Room for the most fds one message can carry, so the kernel never truncates (MSG_CTRUNC) and loses bytes.
        ({ bytes, fds } = receiveWithFds(this.fd, this.buffer, SCM_MAX_FD, MSG_DONTWAIT));
      } catch {
        bytes = 0; // ECONNRESET and the like: the client is gone
        fds = [];
      }
      if (bytes < 0) return; // EAGAIN / EINTR: nothing more now
      if (bytes === 0) {
        this.readiness.unwatch(this.fd);
        this.done = true;
        close(this.fd);
        this.sink.end();
        return;
      }
      this.sink.data(Buffer.from(this.buffer.subarray(0, bytes)), fds);
    }
  }
}
