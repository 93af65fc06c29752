// One tsvmm process under the bench's control: spawned with the user's command line plus a QMP socket, stamped
// when it was spawned and when it exited, reached over QMP as soon as its socket listens.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { realtimeUs } from './clock.js';
import { Qmp } from './qmp.js';

export interface VmmSpawn {
  /** The process's name in the scratch directory (its QMP socket is DIR/NAME.qmp). */
  name: string;
  dir: string;
  /** The tsvmm command (a .js/.mjs run with this Node). */
  cli: string;
  /** `tsvmm run` arguments, without -qmp. */
  args: readonly string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
}

export class Vmm {
  readonly qmpPath: string;
  readonly child: ChildProcess;
  /** CLOCK_REALTIME µs just before and just after spawn(). */
  readonly spawnUs: number;
  readonly spawnedUs: number;
  exitUs: number | null = null;
  stderr = '';
  qmp: Qmp | null = null;
  readonly exited: Promise<number | null>;

  constructor(readonly o: VmmSpawn) {
    this.qmpPath = join(o.dir, `${o.name}.qmp`);
    const argv = [o.cli, 'run', ...o.args, '-qmp', `unix:${this.qmpPath},server=on,wait=off`];
    this.spawnUs = realtimeUs();
    this.child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...o.env },
    });
    this.spawnedUs = realtimeUs();
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code) => {
        this.exitUs = realtimeUs();
        resolve(code);
      });
      this.child.on('error', () => {
        this.exitUs ??= realtimeUs();
        resolve(null);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Why this process is no use any more, or null while it runs. */
  failure(): string | null {
    if (this.running) return null;
    return `tsvmm '${this.o.name}' exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.stderr.trim()}`;
  }

  /** Waits for the QMP socket and connects; returns the client and the µs time the connection was usable. */
  async connect(timeoutMs: number): Promise<Qmp> {
    this.qmp = await connectQmp(this.qmpPath, timeoutMs, () => this.failure());
    return this.qmp;
  }

  /** Ends the process if it still runs (SIGKILL) and waits for it. */
  async kill(): Promise<void> {
    this.qmp?.close();
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * Resolves as soon as `path` exists (inotify on its directory, plus a slow poll as a safety net); rejects when
 * `failed()` returns a reason or after `timeoutMs`.
 */
/**
 * Waits for a VMM's QMP socket to appear and connects. The socket file appears at bind(), a moment before listen():
 * a refused connect is retried (every millisecond, at most 200 times).
 */
export async function connectQmp(path: string, timeoutMs: number, failed: () => string | null): Promise<Qmp> {
  await waitForPath(path, timeoutMs, failed);
  for (let attempt = 0; ; attempt++) {
    try {
      return await Qmp.connect(path);
    } catch (e) {
      if (attempt > 200 || (e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

export function waitForPath(path: string, timeoutMs: number, failed: () => string | null = () => null): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const watcher = watch(dirname(path), (_event, name) => {
      if (name === basename(path)) check();
    });
    const poll = setInterval(() => check(), 20);
    const timer = setTimeout(() => finish(new Error(`${path} did not appear within ${timeoutMs} ms`)), timeoutMs);
    function finish(error?: Error): void {
      if (done) return;
      done = true;
      watcher.close();
      clearInterval(poll);
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    }
    function check(): void {
      if (existsSync(path)) {
        finish();
        return;
      }
      const why = failed();
      if (why) finish(new Error(why));
    }
    check();
  });
}
