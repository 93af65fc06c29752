// Debian's cloud kernel for tests, fetched once into <repo>/build/debian-kernel/: `apt-get download` of the
// package that linux-image-cloud-amd64 points at (the meta package itself holds no kernel), unpacked with
// dpkg-deb -x. Nothing is installed on the host. Tests that cannot fetch it skip with the reason this returns.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../../test/support/cc.js';

const META_PACKAGE = 'linux-image-cloud-amd64';
export const debianKernelDir = join(repoRoot, 'build', 'debian-kernel');

export interface DebianKernel {
  /** e.g. 6.1.0-56-cloud-amd64 */
  version: string;
  /** The bzImage. */
  vmlinuz: string;
  /** lib/modules/VERSION of the unpacked package. */
  modulesDir: string;
  /** The kernel's .config. */
  config: string;
}

function sh(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
}

/** The concrete kernel package the meta package depends on (linux-image-6.1.0-NN-cloud-amd64). */
function kernelPackage(): string {
  const find = (): string | undefined =>
    /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(sh('apt-cache', ['depends', META_PACKAGE]))?.[1];
  let pkg: string | undefined;
  try {
    pkg = find();
  } catch {
    pkg = undefined;
  }
  if (!pkg) {
    sh('apt-get', ['update', '-qq']);
    pkg = find();
  }
  if (!pkg) throw new Error(`apt-cache knows no ${META_PACKAGE}`);
  return pkg;
}

function unpacked(): DebianKernel | null {
  const root = join(debianKernelDir, 'root');
  const modulesRoot = join(root, 'lib', 'modules');
  if (!existsSync(modulesRoot)) return null;
  const [version] = readdirSync(modulesRoot);
  const vmlinuz = join(root, 'boot', `vmlinuz-${version}`);
  if (!version || !existsSync(vmlinuz)) return null;
  return { version, vmlinuz, modulesDir: join(modulesRoot, version), config: join(root, 'boot', `config-${version}`) };
}

/** The unpacked Debian cloud kernel, fetching it on first use; a string says why it cannot be had. */
export function debianKernel(): DebianKernel | string {
  const have = unpacked();
  if (have) return have;
  try {
    const pkg = kernelPackage();
    // Parallel test files may fetch at the same time: each works in its own directory, the first rename wins.
    const work = join(debianKernelDir, `fetch-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    try {
      sh('apt-get', ['download', '-qq', pkg], work);
      const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
      if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
      sh('dpkg-deb', ['-x', join(work, deb), join(work, 'root')]);
      rmSync(join(work, deb));
      try {
        renameSync(join(work, 'root'), join(debianKernelDir, 'root'));
      } catch {
        /* another process won */
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    return unpacked() ?? 'the Debian kernel package unpacked to an unexpected layout';
  } catch (e) {
    return `cannot fetch Debian's ${META_PACKAGE}: ${(e as Error).message.split('\n')[0]}`;
  }
}
