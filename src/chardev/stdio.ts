// The stdio backend: guest output to fd 1, input from stdin. On a terminal, stdin goes to raw mode (keys reach the
// guest unprocessed — Ctrl-C too) and QEMU's Ctrl-a escape applies (escape.ts); the terminal is restored on
// close(), and on process exit if close() was never called. Only one backend may own stdio at a time.
import { fstatSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { fcntl, open, F_GETFL, F_SETFL, O_CLOEXEC, O_NONBLOCK, O_WRONLY } from '../sys/libc.js';
import { BackendBase, type CharBackendOptions } from './base.js';
import { EscapeFilter, ESCAPE_HELP } from './escape.js';

const STDOUT_FD = 1;
let owner: StdioBackend | null = null;

export class StdioBackend extends BackendBase {
  private readonly stdin: Readable & {
    isTTY?: boolean;
    setRawMode?: (on: boolean) => unknown;
    ref?: () => void;
    unref?: () => void;
  };
  private readonly rawTerminal: boolean;
  /** stdout reopened non-blocking (a pipe), or null when fd 1 itself is written. */
  private readonly ownOutput: number | null;
  private readonly onData: (chunk: Uint8Array) => void;
  private readonly onError: (error: Error) => void;
  private readonly restoreOnExit = () => this.restoreTerminal();

  constructor(options: CharBackendOptions) {
    super({ kind: 'stdio' }, 'stdio', options);
    if (owner !== null) throw new Error('stdio is already used by another character device');
    owner = this;
    this.ownOutput = nonBlockingStdout();
    this.replaceOutputFd(this.ownOutput ?? STDOUT_FD, false);
    this.stdin = process.stdin;
    this.rawTerminal = this.stdin.isTTY === true && typeof this.stdin.setRawMode === 'function';
    let escapeFilter: EscapeFilter | null = null;
    if (this.rawTerminal) {
      this.stdin.setRawMode!(true);
      process.on('exit', this.restoreOnExit);
      const quit =
        options.onQuit ??
        (() => {
          this.restoreTerminal();
          process.kill(process.pid, 'SIGTERM');
        });
      escapeFilter = new EscapeFilter({ quit, help: () => this.out.write(Buffer.from(ESCAPE_HELP)) });
    }
    this.onData = (chunk) => this.pump.push(escapeFilter === null ? chunk : escapeFilter.filter(chunk));
    // A closed or unreadable stdin just means no input.
    this.onError = (error) => this.log(`stdin: ${error.message}`);
    this.stdin.on('data', this.onData);
    this.stdin.on('error', this.onError);
    this.stdin.ref?.();
    this.stdin.resume();
  }

  get isRawTerminal(): boolean {
    return this.rawTerminal;
  }

  protected override pauseInput(): void {
    this.stdin.pause();
  }

  protected override resumeInput(): void {
    if (!this.closed) this.stdin.resume();
  }

  protected shutdown(): void {
    this.stdin.off('data', this.onData);
    this.stdin.off('error', this.onError);
    this.stdin.pause();
    this.stdin.unref?.(); // a paused pipe or terminal still holds the event loop open until unref'd
    this.restoreTerminal();
    process.off('exit', this.restoreOnExit);
    this.replaceOutputFd(-1, this.ownOutput !== null); // fd 1 belongs to the process; our reopened pipe is ours
    if (owner === this) owner = null;
  }

  private restoreTerminal(): void {
    if (this.rawTerminal) this.stdin.setRawMode!(false);
  }
}

/**
 * stdout as a writer holding the machine lock may use it: never blocking. A pipe gets a new open file description
 * of its own (through /proc/self/fd/1) that is non-blocking — setting O_NONBLOCK on fd 1 itself would change the
 * description the parent shell and the pipeline share. A socket (what Node's child_process gives a child for
 * 'pipe') cannot be reopened so: fd 1 itself is made non-blocking, as libuv does for any socket it writes. Null
 * (fd 1 used as it is) for a terminal or a file, which do not block for long, or when the reopen fails.
 */
function nonBlockingStdout(): number | null {
  try {
    const stat = fstatSync(STDOUT_FD);
    if (stat.isSocket()) {
      fcntl(STDOUT_FD, F_SETFL, fcntl(STDOUT_FD, F_GETFL, 0) | O_NONBLOCK);
      return null;
    }
    if (!stat.isFIFO()) return null;
    return open('/proc/self/fd/1', O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  } catch {
    return null;
  }
}
