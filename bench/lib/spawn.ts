// Running a program to time it: wall time from just before spawn() to the child's exit, the child's output, and
// (optionally) when its first stdout byte arrived. Times are CLOCK_REALTIME nanoseconds from the same clock the
// tsvmm debugcon stamps use, so "spawned at" and "the guest wrote at" can be subtracted.
import { spawn } from 'node:child_process';
import { clockNs, CLOCK_REALTIME } from '../../src/sys/libc.js';
import { guardMs } from './where.js';

export interface TimedRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** CLOCK_REALTIME ns taken immediately before spawn(). */
  spawnNs: bigint;
  /** CLOCK_REALTIME ns when the parent learned of the child's exit. */
  exitNs: bigint;
  /** CLOCK_REALTIME ns when the first stdout chunk reached the parent, if any. */
  firstStdoutNs: bigint | null;
  /** exitNs - spawnNs, in milliseconds. */
  ms: number;
}

export interface TimedOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Called once the child is running (e.g. to sample /proc/PID); may kill it. */
  whileRunning?: (pid: number, firstStdout: Promise<void>) => Promise<void> | void;
}

export function realtimeNs(): bigint {
  return clockNs(CLOCK_REALTIME);
}

export function runTimed(command: string, args: readonly string[], options: TimedOptions = {}): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let firstStdoutNs: bigint | null = null;
    let gotStdout!: () => void;
    const firstStdout = new Promise<void>((r) => {
      gotStdout = r;
    });
    const spawnNs = realtimeNs();
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    // A hang guard: inside the rig a run of the exits bench takes minutes (an exit costs ~0.3 ms there).
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? guardMs(120_000));
    child.stdout.on('data', (d: Buffer) => {
      if (firstStdoutNs === null) {
        firstStdoutNs = realtimeNs();
        gotStdout();
      }
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    let exitNs = 0n;
    child.on('exit', () => {
      exitNs = realtimeNs();
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (exitNs === 0n) exitNs = realtimeNs();
      resolve({ status, signal, stdout, stderr, spawnNs, exitNs, firstStdoutNs, ms: Number(exitNs - spawnNs) / 1e6 });
    });
    if (options.whileRunning && child.pid !== undefined) {
      Promise.resolve(options.whileRunning(child.pid, firstStdout)).catch((e) => {
        child.kill('SIGKILL');
        reject(e);
      });
    }
  });
}

/** Throws with the child's stderr unless it exited with `expected`. */
export function expectStatus(run: TimedRun, expected: number, what: string): TimedRun {
  if (run.status !== expected) {
    throw new Error(`${what}: exit status ${run.status ?? run.signal} (expected ${expected})\n${run.stderr.trim()}`);
  }
  return run;
}
