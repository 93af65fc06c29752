// One file's scratch for full-boot runs (test/support/full-boot-guest.ts has the guest): the initramfs built once,
// and a fresh disk and tap namespace per boot. Used by linux-full-boot.test.ts and linux-full-boot-pvm.test.ts.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cc.js';
import {
  buildFullBootInitramfs,
  newNonce,
  writeFullBootDisk,
  type FullBootImage,
  type VmmRun,
} from './full-boot-guest.js';
import { createTapNamespace, type TapNamespace } from '../../examples/guests/virtio-probe-host.js';

export interface FullBootScratch {
  /** The directory (build/full-boot/test-PID). */
  dir: string;
  /** The initramfs, built on first use from the kernel's module tree. */
  image(): FullBootImage;
  /** A fresh disk holding a new nonce, and a tap in its own namespace; the caller closes the tap. */
  freshRun(name: string): { nonce: string; disk: string; tap: TapNamespace };
  /** Removes the scratch directory. */
  remove(): void;
}

/** A scratch directory under build/full-boot/ for this process, emptied first. */
export function fullBootScratch(modulesDir: () => string): FullBootScratch {
  const dir = join(repoRoot, 'build', 'full-boot', `test-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let built: FullBootImage | null = null;
  return {
    dir,
    image: () => (built ??= buildFullBootInitramfs(join(dir, 'initrd.img'), modulesDir())),
    freshRun: (name) => {
      const nonce = newNonce();
      const disk = join(dir, `${name}.img`);
      writeFullBootDisk(disk, nonce);
      return { nonce, disk, tap: createTapNamespace(`tsvmm-fb-${process.pid % 100000}-${name}`.slice(0, 30)) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A VMM run's status, command line, the end of its serial output and its stderr, for an assertion message. */
export function fullBootReport(run: VmmRun): string {
  return (
    `status ${run.status ?? run.signal}${run.timedOut ? ' (killed: timed out)' : ''} after ${run.ms} ms\n` +
    `$ ${run.argv.join(' ')}\n--- serial (last 4000 bytes) ---\n${run.serial.slice(-4000)}\n--- stderr ---\n${run.stderr.slice(-2000)}`
  );
}
