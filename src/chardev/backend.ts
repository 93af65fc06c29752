// Opening a host character backend (main thread): `openCharBackend('unix:/run/vm.sock,server,wait=off')`.
// The backend owns its fds and sockets and feeds host input to a handler; its output can be written from any thread
// through `openCharOut(backend.transferable())` (char-out.ts). See spec.ts for the accepted specs.
import net from 'node:net';
import { statSync, existsSync } from 'node:fs';
import {
  open as sysOpen,
  close as sysClose,
  fcntl,
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_TRUNC,
  O_CLOEXEC,
  O_NONBLOCK,
  O_NOFOLLOW,
} from '../sys/libc.js';
import { Errno, SysError } from '../sys/errno.js';
import { SetupError } from '../util/setup-error.js';
import { BackendBase, type CharBackend, type CharBackendOptions } from './base.js';
import { parseCharSpec, type CharSpec } from './spec.js';
import { StdioBackend } from './stdio.js';
import { UnixClientBackend, UnixServerBackend } from './unix.js';

const O_APPEND = 0o2000;
const F_DUPFD_CLOEXEC = 1030;
/** QEMU creates file backends with 0666 (less the umask). */
/** A guest's console log is the guest's business: its user's alone, as QEMU's own log files should be. */
const FILE_MODE = 0o600;

export async function openCharBackend(spec: string | CharSpec, options: CharBackendOptions = {}): Promise<CharBackend> {
  const parsed = typeof spec === 'string' ? parseCharSpec(spec) : spec;
  switch (parsed.kind) {
    case 'stdio':
      return new StdioBackend(options);
    case 'file':
      return new FileBackend(parsed, options);
    case 'pipe':
      return new PipeBackend(parsed, options);
    case 'unix':
      return parsed.server ? UnixServerBackend.open(parsed, options) : UnixClientBackend.open(parsed, options);
    case 'null':
    case 'none':
      return new NullBackend(parsed, options);
  }
}

/** `null` (and `none`, for a machine that creates the device anyway): output vanishes, no input. */
class NullBackend extends BackendBase {
  constructor(spec: CharSpec, options: CharBackendOptions) {
    super(spec, spec.kind, options);
  }

  protected shutdown(): void {}
}

/** `file:PATH`: output only, truncated at open (or appended, from -chardev file,append=on). */
class FileBackend extends BackendBase {
  constructor(spec: Extract<CharSpec, { kind: 'file' }>, options: CharBackendOptions) {
    super(spec, `file:${spec.path}`, options);
    // O_NOFOLLOW: a symlink planted at the path (a shared /tmp) is refused, not followed to truncate someone's file.
    const flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (spec.append ? O_APPEND : O_TRUNC);
    let fd: number;
    try {
      fd = sysOpen(spec.path, flags, FILE_MODE);
    } catch (e) {
      if (e instanceof SysError && e.errno === Errno.ELOOP)
        throw new SetupError(`file:${spec.path}: refused: the path is a symbolic link (give the file itself)`);
      throw e;
    }
    this.replaceOutputFd(fd);
  }

  protected shutdown(): void {
    this.replaceOutputFd(-1);
  }
}

/**
 * `pipe:PATH`: FIFOs made by the user (mkfifo). PATH.in (input) and PATH.out (output) when both exist, else PATH
 * both ways (QEMU's rule). Opened O_RDWR so that open never blocks and input sees no EOF when a writer leaves.
 */
class PipeBackend extends BackendBase {
  private readonly input: net.Socket;

  constructor(spec: Extract<CharSpec, { kind: 'pipe' }>, options: CharBackendOptions) {
    super(spec, `pipe:${spec.path}`, options);
    const split = existsSync(`${spec.path}.in`) && existsSync(`${spec.path}.out`);
    const inPath = split ? `${spec.path}.in` : spec.path;
    const outPath = split ? `${spec.path}.out` : spec.path;
    for (const path of new Set([inPath, outPath])) {
      if (!statSync(path).isFIFO()) throw new Error(`pipe:${spec.path}: ${path} is not a FIFO (create it with mkfifo)`);
    }
    const inFd = sysOpen(inPath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    let outFd: number;
    try {
      // Non-blocking, as inFd (which the dup shares): with nobody reading, a blocking write would hold the
      // machine lock forever once the FIFO's 64 KiB are full (see char-out.ts for what happens to the bytes).
      outFd = split ? sysOpen(outPath, O_RDWR | O_NONBLOCK | O_CLOEXEC) : fcntl(inFd, F_DUPFD_CLOEXEC, 3);
    } catch (error) {
      sysClose(inFd);
      throw error;
    }
    this.replaceOutputFd(outFd);
    // Node owns inFd from here (it closes it when the socket is destroyed).
    this.input = new net.Socket({ fd: inFd, readable: true, writable: false });
    this.input.on('data', (chunk) => this.pump.push(chunk));
    this.input.on('error', (error) => this.log(`${this.label}: ${error.message}`));
  }

  protected override pauseInput(): void {
    this.input.pause();
  }

  protected override resumeInput(): void {
    if (!this.closed) this.input.resume();
  }

  protected shutdown(): void {
    this.input.destroy();
    this.replaceOutputFd(-1);
  }
}
