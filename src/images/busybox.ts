// Finding a busybox that can run in an initramfs (statically linked: there is no libc in the archive) and the
// list of its applets with their usual directories, from the binary itself (`busybox --list-full`).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { hasInterpreter } from './elf64.js';

/** Where Debian's busybox-static installs (bookworm has a merged /usr, so /bin/busybox is the same file). */
const DEFAULT_LOCATIONS = ['/usr/bin/busybox', '/bin/busybox'];
export const BUSYBOX_INSTALL_HINT =
  "install Debian's busybox-static (apt-get install -y busybox-static) or pass its path";

export class BusyboxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BusyboxError';
  }
}

/** The path of the host's busybox, or null when none is installed. */
export function findBusybox(): string | null {
  for (const path of DEFAULT_LOCATIONS) if (existsSync(path)) return realpathSync(path);
  return null;
}

/** Reads a busybox binary and refuses one that is dynamically linked (Debian's plain `busybox` package is). */
export function readStaticBusybox(path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new BusyboxError(
      `initramfs: cannot read busybox '${path}': ${(e as Error).message}; ${BUSYBOX_INSTALL_HINT}`,
    );
  }
  let dynamic: boolean;
  try {
    dynamic = hasInterpreter(bytes, `busybox '${path}'`);
  } catch (e) {
    throw new BusyboxError(`initramfs: ${(e as Error).message}`);
  }
  if (dynamic)
    throw new BusyboxError(
      `initramfs: busybox '${path}' is dynamically linked and cannot run without a libc; ${BUSYBOX_INSTALL_HINT}`,
    );
  return bytes;
}

/**
 * The applets `path` was built with, as archive paths ("bin/sh", "sbin/poweroff", "usr/bin/wget", …), from
 * `busybox --list-full` (or `--list`, all put in bin/, for a busybox built without the full list). Sorted.
 */
export function busyboxApplets(path: string): string[] {
  const run = (flag: string): string | null => {
    try {
      return execFileSync(path, [flag], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    } catch {
      return null;
    }
  };
  const full = run('--list-full');
  const lines =
    full !== null ? full.split('\n') : (run('--list') ?? '').split('\n').map((name) => (name ? `bin/${name}` : ''));
  const applets = lines.map((l) => l.trim()).filter((l) => l !== '' && !l.endsWith('/busybox'));
  if (applets.length === 0)
    throw new BusyboxError(`initramfs: '${path} --list-full' listed no applets (is it a busybox for this machine?)`);
  return [...new Set(applets)].sort();
}
