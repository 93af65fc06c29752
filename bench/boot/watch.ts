// Running a VMM and timing what its serial console prints: every stdout chunk is stamped (CLOCK_REALTIME ns, the
// clock spawnNs and the VMMs' own trace stamps use) when it reaches this process, and each named pattern gets the
// stamp of the chunk that completed its first match. The run can be stopped as soon as a pattern has been seen (on
// a PVM host the kernel never gets further than its first lines in useful time).
import { spawn } from 'node:child_process';
import { realtimeNs } from '../lib/spawn.js';

export interface WatchOptions {
  /** Named patterns to stamp; tested against everything printed so far. */
  patterns: Record<string, RegExp>;
  /** Stop the VMM with `stopSignal` once this pattern has been seen. */
  stopAt?: string;
  /** Default SIGKILL (nothing to flush); SIGTERM lets QEMU flush its trace log. */
  stopSignal?: NodeJS.Signals;
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

export interface WatchedRun {
  spawnNs: bigint;
  /** When the first stdout byte arrived, or null. */
  firstOutputNs: bigint | null;
  /** Pattern name → stamp of the chunk that completed its first match (absent: never matched). */
  seen: Map<string, bigint>;
  exitNs: bigint;
  status: number | null;
  signal: NodeJS.Signals | null;
  /** True if this process stopped it (stopAt or timeout). */
  stopped: boolean;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export function runWatched(command: string, args: readonly string[], o: WatchOptions): Promise<WatchedRun> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let firstOutputNs: bigint | null = null;
    let stopped = false;
    let timedOut = false;
    const seen = new Map<string, bigint>();
    const spawnNs = realtimeNs();
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    const stop = (signal: NodeJS.Signals) => {
      if (!stopped) {
        stopped = true;
        child.kill(signal);
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop('SIGKILL');
    }, o.timeoutMs);
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      const at = realtimeNs();
      firstOutputNs ??= at;
      stdout += d;
      for (const [name, re] of Object.entries(o.patterns)) {
        if (!seen.has(name) && re.test(stdout)) seen.set(name, at);
      }
      if (o.stopAt !== undefined && seen.has(o.stopAt)) stop(o.stopSignal ?? 'SIGKILL');
    });
    child.stderr.on('data', (d) => {
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
      resolve({ spawnNs, firstOutputNs, seen, exitNs, status, signal, stopped, timedOut, stdout, stderr });
    });
  });
}

/** ms from spawn to `ns`. */
export const sinceSpawn = (run: { spawnNs: bigint }, ns: bigint): number => Number(ns - run.spawnNs) / 1e6;
