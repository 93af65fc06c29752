// Moving a checkpoint file's bytes over a stream: to or from an fd (a pipe, a socket or a file a client passed with
// getfd, or an inherited fd number) or a command's stdin/stdout (exec:). The stream carries exactly the bytes of a
// file: checkpoint; both ends keep a verified file on the host:
// - outgoing, the checkpoint is written as for file: (temp + fsync + rename, into a private directory) and then
//   copied to the stream; the guest stays stopped until the stream is complete, and resumes here if it fails.
// - incoming, the stream is copied into a private file, at most `maxBytes`, and loaded from there: the whole
//   checkpoint is verified (its checksum is at the end) before anything of the VM changes, which a stream read
//   once, in order, could not give.
// Every stream here is asynchronous: the event loop (QMP included) runs while a slow reader or writer takes its time.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, fstatSync } from 'node:fs';
import net from 'node:net';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CprError } from './cpr-error.js';

/** The far end: an fd we own (closed when done, whatever happens), or a command run for this one stream. */
export type StreamEnd =
  | { readonly kind: 'fd'; readonly fd: number; readonly label: string }
  | { readonly kind: 'exec'; readonly argv: readonly string[]; readonly label: string };

/** How long a command may take to exit once its stream is done before it is killed (SIGKILL) and refused. */
const EXIT_GRACE_MS = 30_000;
/** After a broken stream: how long to wait for the command's own status, which says more than EPIPE. */
const FAILED_EXIT_GRACE_MS = 1000;

/** The stream was given up by request (QMP migrate_cancel): the command, if any, was killed. */
export class StreamCancelled extends CprError {}

const cancelled = (label: string) => new StreamCancelled(`${label}: cancelled (migrate_cancel)`);

/**
 * Copies the file at `path` to `to`; resolves once every byte was taken and (exec:) the command exited with 0.
 * `signal` gives up at once, however stuck the peer is (StreamCancelled).
 */
export async function sendFile(path: string, to: StreamEnd, signal?: AbortSignal): Promise<number> {
  const child = to.kind === 'exec' ? run(to.argv, ['pipe', 'ignore', 'inherit'], to.label) : undefined;
  const sink = child ? (child.process.stdin as Writable) : fdWritable(to as Extract<StreamEnd, { kind: 'fd' }>);
  let sent = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(path), counter, sink, { signal });
  } catch (e) {
    destroyQuietly(sink);
    if (signal?.aborted) {
      child?.kill();
      throw cancelled(to.label);
    }
    // A command that exited early says more by its status than the broken pipe does.
    if (child) await child.exited(FAILED_EXIT_GRACE_MS, false).then(assertSuccess(to.label), () => {});
    throw new CprError(`${to.label}: the stream broke after ${sent} bytes: ${(e as Error).message}`, { cause: e });
  } finally {
    if (!child) destroyQuietly(sink); // closes the fd
  }
  if (child) assertSuccess(to.label)(await child.exited(EXIT_GRACE_MS, false, signal));
  return sent;
}

/**
 * Copies what `from` gives, up to its end, into a new file at `path` (0600, O_EXCL); refuses a stream that is
 * empty, longer than `maxBytes`, or (exec:) whose command fails.
 */
export async function receiveFile(
  from: StreamEnd,
  path: string,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<number> {
  const child = from.kind === 'exec' ? run(from.argv, ['ignore', 'pipe', 'inherit'], from.label) : undefined;
  const source = child ? (child.process.stdout as Readable) : fdReadable(from as Extract<StreamEnd, { kind: 'fd' }>);
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      if (received > maxBytes)
        done(
          new CprError(
            `${from.label}: the stream is longer than ${maxBytes} bytes, more than a checkpoint of this VM can be`,
          ),
        );
      else done(null, chunk);
    },
  });
  try {
    await pipeline(source, counter, createWriteStream(path, { flags: 'wx', mode: 0o600 }), { signal });
  } catch (e) {
    destroyQuietly(source);
    if (child) {
      child.kill();
      await child.exited(EXIT_GRACE_MS, true).catch(() => {});
    }
    if (signal?.aborted) throw cancelled(from.label);
    if (e instanceof CprError) throw e;
    throw new CprError(`${from.label}: reading the stream failed after ${received} bytes: ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    if (!child) destroyQuietly(source);
  }
  if (child) assertSuccess(from.label)(await child.exited(EXIT_GRACE_MS, false, signal));
  if (received === 0) throw new CprError(`${from.label}: the stream was empty (no checkpoint came)`);
  return received;
}

interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The command could not be started (spawn's error). */
  readonly error?: Error;
}

interface Running {
  readonly process: ChildProcess;
  /** SIGKILL to the command and everything it started (its own process group): a `sleep` under sh holds the pipe too. */
  kill(): void;
  /**
   * Resolves to how the command ended; after `graceMs` (at once if `kill`) it is killed and this rejects, and so
   * when `signal` aborts meanwhile (StreamCancelled).
   */
  exited(graceMs: number, kill: boolean, signal?: AbortSignal): Promise<ExitStatus>;
}

function run(
  argv: readonly string[],
  stdio: ['pipe' | 'ignore', 'pipe' | 'ignore', 'inherit'],
  label: string,
): Running {
  // No shell of our own: exec:CMD is already ['/bin/sh', '-c', CMD]. Every fd tsvmm opens is close-on-exec, so
  // the command inherits nothing but these three.
  // In a process group of its own (detached), so that a kill reaches what the shell started as well.
  const child = spawn(argv[0], argv.slice(1), { stdio, detached: true });
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL'); // the group is gone already, or never was
    }
  };
  const done = new Promise<ExitStatus>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // Errors of its pipes are reported through the pipeline; without listeners they would be thrown.
  child.stdin?.on('error', () => {});
  child.stdout?.on('error', () => {});
  return {
    process: child,
    kill: killGroup,
    exited(graceMs, kill, signal) {
      if (kill) killGroup();
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          killGroup();
          reject(new CprError(`the command did not exit within ${graceMs / 1000} s of the end of its stream`));
        }, graceMs);
        onAbort = () => {
          killGroup();
          reject(cancelled(label));
        };
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });
      return Promise.race([done, timeout]).finally(() => {
        clearTimeout(timer);
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      });
    },
  };
}

function assertSuccess(label: string) {
  return (status: ExitStatus): void => {
    if (status.error) throw new CprError(`${label}: cannot run the command: ${status.error.message}`);
    if (status.signal) throw new CprError(`${label}: the command was killed by ${status.signal}`);
    if (status.code !== 0) throw new CprError(`${label}: the command exited with status ${status.code}`);
  };
}

/** A pipe or socket goes through libuv (non-blocking: the event loop waits for it); anything else through fs. */
function isPipeOrSocket(end: Extract<StreamEnd, { kind: 'fd' }>): boolean {
  try {
    const st = fstatSync(end.fd);
    return st.isFIFO() || st.isSocket();
  } catch (e) {
    throw new CprError(`${end.label}: not an open file descriptor: ${(e as Error).message}`, { cause: e });
  }
}

function fdWritable(end: Extract<StreamEnd, { kind: 'fd' }>): Writable {
  if (isPipeOrSocket(end)) return new net.Socket({ fd: end.fd, readable: false, writable: true });
  return createWriteStream('', { fd: end.fd, autoClose: true });
}

function fdReadable(end: Extract<StreamEnd, { kind: 'fd' }>): Readable {
  if (isPipeOrSocket(end)) return new net.Socket({ fd: end.fd, readable: true, writable: false });
  return createReadStream('', { fd: end.fd, autoClose: true });
}

function destroyQuietly(stream: Readable | Writable): void {
  try {
    if (!stream.destroyed) stream.destroy();
  } catch {
    /* already failing */
  }
}
