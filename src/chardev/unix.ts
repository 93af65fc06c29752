// Unix-socket backends. Server (`unix:PATH,server`): tsvmm creates the socket with mode 0600 (umask 0177 around
// bind, then chmod), serves one client at a time (another connection is closed at once; Node's maxConnections),
// drops output while nobody is connected, and removes the socket file on close. A stale socket file at PATH is
// replaced, as QEMU does; any other kind of file there is an error. Client (`unix:PATH`): connects once at open;
// after the peer leaves, output is dropped.
//
// Output from any thread: the socket is Node's (the main thread reads it), and writers use a duplicate of its fd
// (fcntl F_DUPFD_CLOEXEC on `socket._handle.fd`, which Node exposes for pipe handles on Linux). Owning a duplicate
// means Node closing its fd can never leave a writer with a stale number; the duplicate goes into the shared slot
// when a client connects and is swapped out and closed (after in-flight writes finish) when it leaves. The fd is
// non-blocking (it shares Node's file description), so writers handle EAGAIN — see char-out.ts.
import net from 'node:net';
import { isMainThread } from 'node:worker_threads';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { fcntl } from '../sys/libc.js';
import { BackendBase, type CharBackendOptions } from './base.js';
import type { CharSpec } from './spec.js';

const F_DUPFD_CLOEXEC = 1030; // <fcntl.h>: F_LINUX_SPECIFIC_BASE + 6
const SOCKET_MODE = 0o600;

type UnixSpec = Extract<CharSpec, { kind: 'unix' }>;

/** The fd behind a connected Node socket, duplicated so that we own its lifetime. */
function duplicateSocketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('cannot get the fd of a connected unix socket (Node internals changed?)');
  return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

abstract class UnixBackend extends BackendBase {
  protected client: net.Socket | null = null;

  constructor(spec: UnixSpec, options: CharBackendOptions) {
    super(spec, `unix:${spec.path}`, options);
  }

  /** Make `socket` the connected peer: its input to the pump, output through a duplicate of its fd. */
  protected attach(socket: net.Socket): void {
    let fd: number;
    try {
      fd = duplicateSocketFd(socket);
    } catch (error) {
      this.log(`${this.label}: ${(error as Error).message}`);
      socket.destroy();
      return;
    }
    this.client = socket;
    this.replaceOutputFd(fd);
    socket.on('data', chunk => this.pump.push(chunk));
    socket.on('error', () => { /* ECONNRESET and the like: 'close' follows */ });
    socket.on('close', () => this.detach(socket));
    if (this.pump.pending > 0) socket.pause(); // input from an earlier client still waits for the device
  }

  protected detach(socket: net.Socket): void {
    if (this.client !== socket) return;
    this.client = null;
    this.replaceOutputFd(-1);
    if (!this.closed) this.log(`${this.label}: client disconnected`);
  }

  protected override pauseInput(): void {
    this.client?.pause();
  }

  protected override resumeInput(): void {
    this.client?.resume();
  }
}

export class UnixServerBackend extends UnixBackend {
  private readonly server = net.createServer();
  private readonly firstClient: Promise<void>;
  private resolveFirstClient!: () => void;
  private createdSocketFile = false;

  private constructor(private readonly unix: UnixSpec, options: CharBackendOptions) {
    super(unix, options);
    this.server.maxConnections = 1; // one client at a time: Node closes further connections immediately
    this.firstClient = new Promise(resolve => { this.resolveFirstClient = resolve; });
    this.server.on('connection', socket => {
      this.log(`${this.label}: client connected`);
      this.attach(socket);
      this.resolveFirstClient();
    });
  }

  static async open(spec: UnixSpec, options: CharBackendOptions): Promise<UnixServerBackend> {
    const backend = new UnixServerBackend(spec, options);
    try {
      await backend.listen();
    } catch (error) {
      await backend.close();
      throw error;
    }
    if (spec.wait) {
      backend.log(`waiting for connection on ${backend.label},server=on (add wait=off not to wait)`);
      await backend.firstClient;
    }
    return backend;
  }

  private async listen(): Promise<void> {
    const path = this.unix.path;
    removeStaleSocket(path);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      // bind(2) runs synchronously inside listen(): the umask makes the socket file 0600 from its first moment.
      const oldMask = isMainThread ? process.umask(0o177) : -1;
      try {
        this.server.listen(path, () => { this.server.off('error', reject); resolve(); });
      } finally {
        if (oldMask >= 0) process.umask(oldMask);
      }
    });
    this.createdSocketFile = true;
    chmodSync(path, SOCKET_MODE);
    this.server.on('error', error => this.log(`${this.label}: ${error.message}`));
  }

  protected async shutdown(): Promise<void> {
    this.client?.destroy();
    this.replaceOutputFd(-1);
    this.resolveFirstClient(); // an open() still waiting for its first client returns (closed)
    if (this.server.listening) await new Promise<void>(resolve => this.server.close(() => resolve()));
    if (this.createdSocketFile) {
      try {
        removeStaleSocket(this.unix.path);
      } catch (error) {
        this.log((error as Error).message); // someone replaced our socket file: leave theirs alone
      }
    }
  }
}

export class UnixClientBackend extends UnixBackend {
  static async open(spec: UnixSpec, options: CharBackendOptions): Promise<UnixClientBackend> {
    const backend = new UnixClientBackend(spec, options);
    const socket = net.createConnection(spec.path);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => { socket.off('error', reject); resolve(); });
    }).catch(async (error: Error) => {
      await backend.close();
      throw new Error(`${backend.label}: cannot connect: ${error.message}`);
    });
    backend.attach(socket);
    return backend;
  }

  protected shutdown(): void {
    this.client?.destroy();
    this.replaceOutputFd(-1);
  }
}

/** Remove a socket file left at `path` (by us or an earlier run); refuse to touch anything else. */
function removeStaleSocket(path: string): void {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) throw new Error(`unix:${path}: exists and is not a socket; refusing to replace it`);
  unlinkSync(path);
}
