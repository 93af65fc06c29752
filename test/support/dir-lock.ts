// A lock between processes that fill the same cache (test files run in parallel; several rigs may start at once):
// a directory made with mkdir (atomic) holding its owner's pid. A lock whose owner died is broken, so a killed
// fetch never wedges the next run.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class LockTimeoutError extends Error {
  constructor(lockDir: string, waitedMs: number) {
    super(`timed out after ${Math.round(waitedMs / 1000)} s waiting for another process holding ${lockDir}`);
    this.name = 'LockTimeoutError';
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerOf(lockDir: string): number {
  try {
    return Number(readFileSync(join(lockDir, 'pid'), 'utf8'));
  } catch {
    return 0;
  }
}

/** Takes `lockDir` (mkdir), breaking it if its owner died; false if another live process holds it. */
function tryAcquire(lockDir: string): boolean {
  try {
    mkdirSync(lockDir);
    writeFileSync(join(lockDir, 'pid'), String(process.pid));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const owner = ownerOf(lockDir);
    // An owner that has not written its pid yet reads as 0: wait for it rather than break a live lock.
    if (owner > 0 && !pidAlive(owner)) {
      rmSync(lockDir, { recursive: true, force: true });
      return tryAcquire(lockDir);
    }
    return false;
  }
}

/** Runs `fn` holding the lock `lockDir` (its parent must exist); waits up to `waitMs` for another holder. */
export function withDirLock<T>(lockDir: string, fn: () => T, waitMs = 600_000): T {
  const started = Date.now();
  while (!tryAcquire(lockDir)) {
    if (Date.now() - started > waitMs) throw new LockTimeoutError(lockDir, Date.now() - started);
    sleepSync(200);
  }
  try {
    return fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/** withDirLock for an async `fn` (the lock is held until its promise settles); waits without blocking Node. */
export async function withDirLockAsync<T>(lockDir: string, fn: () => Promise<T>, waitMs = 600_000): Promise<T> {
  const started = Date.now();
  while (!tryAcquire(lockDir)) {
    if (Date.now() - started > waitMs) throw new LockTimeoutError(lockDir, Date.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}
