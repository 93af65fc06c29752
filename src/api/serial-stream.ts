// machine.serial: the guest's serial port as a Node stream in this process. The port is an ordinary
// `-serial unix:PATH` chardev (src/chardev/unix.ts, client side) and this listens at PATH, in a private 0700
// directory, for that one connection. Going through a socket rather than a pipe matters: vCPU threads write the
// port's output themselves while holding the machine lock, so a reader that stops reading must not block them for
// good — on a socket they see EAGAIN, wait up to the chardev's stall limit and then drop (char-out.ts), where a
// full pipe would block a writer while the main thread, the only reader, waits for the lock. Input written to the
// stream reaches the guest's receiver.
//
// The socket is drained as fast as data comes, into the stream's buffer, whether or not anyone reads it: the guest
// never waits for the test, and a stream nobody reads holds no handle that would keep the process alive after the
// machine ends. The cost is memory: output nobody reads stays buffered until the stream is dropped.
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, PassThrough } from 'node:stream';

/** The serial port's stream: output pushed as it arrives, input written to the port's socket. */
class SerialStream extends Duplex {
  private ended = false;

  constructor(private readonly socket: net.Socket) {
    super({ allowHalfOpen: true });
    socket.on('data', (chunk: Buffer) => {
      if (!this.ended) this.push(chunk);
    });
    const end = () => {
      if (this.ended) return;
      this.ended = true;
      this.push(null);
    };
    socket.on('end', end);
    socket.on('close', end);
    // ECONNRESET and the like when the machine closes the port: the output simply ends.
    socket.on('error', end);
  }

  override _read(): void {
    // Data is pushed as it arrives (see the file comment).
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.socket.destroyed) done();
    else this.socket.write(chunk, () => done());
  }

  override _final(done: (error?: Error | null) => void): void {
    this.socket.end();
    done();
  }
}

export class SerialListener {
  private readonly accepted: Promise<net.Socket>;

  private constructor(
    private readonly server: net.Server,
    private readonly dir: string,
    readonly path: string,
  ) {
    this.accepted = new Promise((resolve) => server.once('connection', resolve));
  }

  /** Listens in a new private directory; `spec` is what `-serial` takes to connect to it. */
  static async open(): Promise<SerialListener> {
    const dir = await mkdtemp(join(tmpdir(), 'tsvmm-serial-'));
    const path = join(dir, 'com.sock');
    const server = net.createServer({ allowHalfOpen: false });
    server.maxConnections = 1;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return new SerialListener(server, dir, path);
  }

  /** The `-serial` spec of a client connecting here (a comma in the path doubled, as QemuOpts wants). */
  get spec(): string {
    return `unix:${this.path.replaceAll(',', ',,')}`;
  }

  /**
   * The connected stream. The chardev connects while the machine is built, so this waits at most for the accept
   * to reach this side's event loop; `guardMs` only turns a missing connection into an error instead of a hang.
   */
  async stream(guardMs = 10_000): Promise<Duplex> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the serial port did not connect within ${guardMs} ms`)), guardMs);
    });
    try {
      return new SerialStream(await Promise.race([this.accepted, timeout]));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stops listening and removes the directory. Not waiting for the server's close: that waits for the connection,
   * which ends when the machine closes its port.
   */
  async close(): Promise<void> {
    this.server.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** machine.serial when no port is the stream: readable, and already at its end. */
export function endedStream(): Duplex {
  const s = new PassThrough();
  s.end();
  return s;
}
