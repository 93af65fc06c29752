// Guest RAM for this bench lives in /dev/shm, which is memory: every file the bench creates there is removed again
// — after each size, on failure, on Ctrl-C — and no tsvmm it started is left running.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Vmm } from './vmm.js';

export const SHM_DIR = '/dev/shm';

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
    await Promise.all([...this.vmms].map((v) => v.kill()));
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
