// Debian packages the image tests use (busybox-static, cpio), installed on first use when the test runs as root
// with apt (as CI does); otherwise the test skips with the reason returned here.
import { execFileSync } from 'node:child_process';
import { findBusybox } from '../busybox.js';

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** apt-get install PACKAGE; null when done, else why not. */
function aptInstall(pkg: string): string | null {
  if (process.getuid?.() !== 0) return `${pkg} is not installed and the test is not root (apt-get install -y ${pkg})`;
  // Test files run in parallel and may install at the same time: wait for dpkg's lock instead of failing.
  const run = (args: string[]): void => {
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=120', ...args], {
      stdio: 'ignore',
      timeout: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  };
  try {
    try {
      run(['install', '-y', '-qq', pkg]);
    } catch {
      run(['update', '-qq']);
      run(['install', '-y', '-qq', pkg]);
    }
    return null;
  } catch (e) {
    return `apt-get install ${pkg} failed: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Why the host's static busybox cannot be had, or null once it is installed. */
export function busyboxMissing(): string | null {
  if (findBusybox() !== null) return null;
  return (
    aptInstall('busybox-static') ?? (findBusybox() === null ? 'busybox-static installed no /usr/bin/busybox' : null)
  );
}

/** Why GNU cpio cannot be had, or null once it is installed. */
export function cpioMissing(): string | null {
  if (onPath('cpio')) return null;
  return aptInstall('cpio') ?? (onPath('cpio') ? null : 'cpio installed no cpio command');
}

/** Why QEMU cannot be used, or null. */
export function qemuMissing(): string | null {
  return onPath('qemu-system-x86_64') ? null : 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
}
