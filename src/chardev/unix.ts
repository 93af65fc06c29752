// Unix-socket backends. Server (`unix:PATH,server`): tsvmm creates the socket file the way the QMP server does
// (src/sys/socket-file.ts: bound in a private 0700 directory, chmod 0600, renamed onto PATH), serves one client at a
// time (another connection is closed at once; Node's maxConnections), drops output while nobody is connected, and
// on close removes PATH only if it is still its own socket. A socket already at PATH is replaced, as QEMU does; any
// other kind of file there is an error. Binding elsewhere matters for checkpoint/restart: the new tsvmm starts with
// the same `-serial unix:PATH,server` while the old one still runs, and libuv's close of a listening socket unlinks
// whatever is at the path it was bound to — with a direct bind, the old process would delete the new one's socket.
// Client (`unix:PATH`): connects once at open; after the peer leaves, output is dropped.
//
// Output from any thread: the socket is Node's (the main thread reads it), and writers use a duplicate of its fd
// (fcntl F_DUPFD_CLOEXEC on `socket._handle.fd`, which Node exposes for pipe handles on Linux). Owning a duplicate
// means Node closing its fd can never leave a writer with a stale number; the duplicate goes into the shared slot
// when a client connects and is swapped out and closed (after in-flight writes finish) when it leaves. The fd is
// non-blocking (it shares Node's file description), so writers handle EAGAIN — see char-out.ts.
import net from 'node:net';
import { fcntl } from '../sys/libc.js';
import { listenSocketFile, type SocketFile } from '../sys/socket-file.js';
import { BackendBase, type CharBackendOptions } from './base.js';
import type { CharSpec } from './spec.js';

const F_DUPFD_CLOEXEC = 1030; // <fcntl.h>: F_LINUX_SPECIFIC_BASE + 6

type UnixSpec = Extract<CharSpec, { kind: 'unix' }>;

/** The fd behind a connected Node socket, duplicated so that we own its lifetime. */
function duplicateSocketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    throw new Error('cannot get the fd of a connected unix socket (Node internals changed?)');
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
    socket.on('data', (chunk) => this.pump.push(chunk));
    socket.on('error', () => {
      /* ECONNRESET and the like: 'close' follows */
    });
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
  private socketFile: SocketFile | null = null;

  private constructor(
    private readonly unix: UnixSpec,
    options: CharBackendOptions,
  ) {
    super(unix, options);
    this.server.maxConnections = 1; // one client at a time: Node closes further connections immediately
    this.firstClient = new Promise((resolve) => {
      this.resolveFirstClient = resolve;
    });
    this.server.on('connection', (socket) => {
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
    try {
      this.socketFile = await listenSocketFile(this.unix.path, this.server, this.log);
    } catch (error) {
      throw new Error(`unix:${(error as Error).message}`);
    }
    this.server.on('error', (error) => this.log(`${this.label}: ${error.message}`));
  }

  protected async shutdown(): Promise<void> {
    this.client?.destroy();
    this.replaceOutputFd(-1);
    this.resolveFirstClient(); // an open() still waiting for its first client returns (closed)
    // Stops listening; PATH is removed only while it is still our socket (a successor's is left alone).
    if (this.socketFile) await this.socketFile.close();
    else if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export class UnixClientBackend extends UnixBackend {
  static async open(spec: UnixSpec, options: CharBackendOptions): Promise<UnixClientBackend> {
    const backend = new UnixClientBackend(spec, options);
    const socket = net.createConnection(spec.path);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
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
