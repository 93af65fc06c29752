// Guest RAM for this bench lives in /dev/shm, which is memory: every file the bench creates there is removed again
// — after each size, on failure, on Ctrl-C — and no tsvmm it started is left running.
import { readFileSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { Vmm } from './vmm.js';

export const SHM_DIR = '/dev/shm';
const GiB = 2 ** 30;

/** Free bytes in /dev/shm (what an unprivileged tmpfs user may still allocate). */
export function shmFreeBytes(): number {
  const s = statfsSync(SHM_DIR);
  return s.bavail * s.bsize;
}

/** MemAvailable from /proc/meminfo, in bytes. */
export function memAvailableBytes(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Why guest RAM of `bytes` cannot be placed in /dev/shm now, or null if it can. Room is asked for the whole size
 * (a guest may touch all of it; the touched runs do) plus 1 GiB for everything else on the host.
 */
export function shmRefusal(bytes: number): string | null {
  const margin = GiB;
  const free = shmFreeBytes();
  if (free < bytes + margin) return `/dev/shm has ${(free / GiB).toFixed(1)} GiB free, needs ${((bytes + margin) / GiB).toFixed(1)} GiB`;
  const avail = memAvailableBytes();
  if (avail < bytes + margin) return `the host has ${(avail / GiB).toFixed(1)} GiB available, needs ${((bytes + margin) / GiB).toFixed(1)} GiB`;
  return null;
}

export class Cleanup {
  private readonly files = new Set<string>();
  private readonly vmms = new Set<Vmm>();

  constructor() {
    // Last resort: whatever way this process ends, no RAM file stays behind.
    process.on('exit', () => this.removeFilesNow());
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        process.stderr.write(`bench/cpr-pause: ${signal}: killing the VMMs, removing RAM files\n`);
        for (const vmm of this.vmms) if (vmm.running) vmm.child.kill('SIGKILL');
        this.removeFilesNow();
        process.exit(130);
      });
    }
  }

  /** A path in /dev/shm owned by this run (removed by `removeFile` or at exit). */
  shmPath(name: string): string {
    const path = join(SHM_DIR, `tsvmm-cpr-pause-${process.pid}-${name}`);
    this.files.add(path);
    return path;
  }

  track(vmm: Vmm): Vmm {
    this.vmms.add(vmm);
    void vmm.exited.then(() => this.vmms.delete(vmm));
    return vmm;
  }

  /** Kills every tracked VMM that still runs and waits for them. */
  async killAll(): Promise<void> {
    await Promise.all([...this.vmms].map(v => v.kill()));
  }

  removeFile(path: string): void {
    rmSync(path, { force: true });
    this.files.delete(path);
  }

  private removeFilesNow(): void {
    for (const path of this.files) rmSync(path, { force: true });
    this.files.clear();
  }
}
