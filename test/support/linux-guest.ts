// The Linux test guest: Debian's generic kernel (the one the rig boots, test/rig/kernel.ts: it has ACPI sleep, the
// button driver and pvpanic's ACPI front end, which the cloud flavour lacks) as a bzImage and as the vmlinux
// extracted from it (entered through PVH), with an initramfs made by `tsvmm initramfs` whose /init runs a scripted
// scenario. Used by the Linux scenario tests (src/machine/linux-*.test.ts) and benches (bench/).
//
//   const k = linuxGuestKernel();                                   // or a one-line reason to skip with
//   buildLinuxGuestInitramfs(join(dir, 'initrd.img'), k.kernel, scenarioInit(['say hello']));
//   … run a VMM with -kernel k.kernel.bzImage -initrd … -append linuxGuestCmdline() …
//   assert.equal(kernelWarnings(serial), []);
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cc.js';
import { cliPath } from './tsvmm.js';
import { withDirLock } from './dir-lock.js';
import { extractVmlinux } from './linux-kernel.js';
import { rigKernel } from '../rig/kernel.js';
import { resolveKernelModules } from '../../src/images/kernel-modules.js';

export interface LinuxGuestKernel {
  /** e.g. linux-image-6.1.0-57-amd64 */
  package: string;
  /** e.g. 6.1.0-57-amd64 */
  release: string;
  bzImage: string;
  /** The uncompressed ELF vmlinux (PVH entry), extracted once into build/linux-generic/. */
  vmlinux: string;
  /** lib/modules/RELEASE of the unpacked package. */
  modulesDir: string;
}

export type LinuxGuestKernelOrReason = { kernel: LinuxGuestKernel; reason: null } | { kernel: null; reason: string };

const BUILD_DIR = join(repoRoot, 'build', 'linux-generic');

/**
 * The modules every scenario loads, dependencies added by the builder: the virtio transport and devices, the ACPI
 * power button (the guest sees QMP system_powerdown) and pvpanic's ACPI driver (a panic reaches the VMM).
 */
export const LINUX_GUEST_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_net',
  'virtio_console',
  'virtio-rng',
  'button',
  'pvpanic-mmio',
] as const;

let memo: LinuxGuestKernelOrReason | null = null;

/** Debian's generic kernel, its extracted vmlinux and its modules; or why they cannot be had here. */
export function linuxGuestKernel(): LinuxGuestKernelOrReason {
  if (memo) return memo;
  try {
    const k = rigKernel();
    mkdirSync(BUILD_DIR, { recursive: true });
    const vmlinux = join(BUILD_DIR, `vmlinux-${k.release}`);
    if (!existsSync(vmlinux)) {
      withDirLock(join(BUILD_DIR, '.lock'), () => {
        if (existsSync(vmlinux)) return;
        writeFileSync(`${vmlinux}.tmp-${process.pid}`, extractVmlinux(readFileSync(k.bzImage)).vmlinux);
        renameSync(`${vmlinux}.tmp-${process.pid}`, vmlinux);
      });
    }
    memo = {
      kernel: { package: k.package, release: k.release, bzImage: k.bzImage, vmlinux, modulesDir: k.modulesDir },
      reason: null,
    };
  } catch (e) {
    memo = { kernel: null, reason: `no Debian generic kernel: ${(e as Error).message.split('\n')[0]}` };
  }
  return memo;
}

/** Single-quotes `s` for /bin/sh. */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Every line a scenario prints starts with this, so the VMM-independent part of the output can be picked out. */
export const SCENARIO_PREFIX = 'scenario:';

/**
 * A /init: mounts proc, sysfs and devtmpfs, quiets the console to errors (so kernel info lines do not split ours),
 * loads the modules (`/init` is given them by `tsvmm initramfs`: see buildLinuxGuestInitramfs), then runs `body`.
 * The body has `say TEXT` (a `scenario: TEXT` line on ttyS0), `fail TEXT` (says FAILED and powers off) and
 * `wait_for PATH` (a device a driver creates asynchronously; 60 s hang guard).
 */
export function scenarioInit(body: readonly string[], modulePaths: readonly string[]): string {
  return [
    '#!/bin/sh',
    "# /init of tsvmm's Linux scenario guest (test/support/linux-guest.ts).",
    'export PATH=/sbin:/bin:/usr/sbin:/usr/bin',
    `say() { echo "${SCENARIO_PREFIX} $*"; }`,
    `fail() { echo "${SCENARIO_PREFIX} FAILED $*"; poweroff -f; sleep 10; }`,
    'wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e "$1" ]; }',
    'mount -t proc proc /proc || fail "mount /proc"',
    'echo 4 > /proc/sys/kernel/printk',
    'mount -t sysfs sysfs /sys || fail "mount /sys"',
    'mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"',
    ...modulePaths.map((m) => `insmod ${shq(`/${m}`)} || fail ${shq(`insmod /${m}`)}`),
    ...body,
    '',
  ].join('\n');
}

export interface LinuxGuestImage {
  path: string;
  /** Archive paths of the modules, in load order. */
  modules: string[];
}

/**
 * Builds the initramfs at `path` with the `tsvmm initramfs` command: busybox, the modules with their dependencies,
 * and `init(modulePaths)` as /init (module paths in load order, dependencies first, as the builder resolves them).
 * `files` are extra HOST=GUEST copies.
 */
export function buildLinuxGuestInitramfs(
  path: string,
  kernel: LinuxGuestKernel,
  init: (modulePaths: readonly string[]) => string,
  o: { modules?: readonly string[]; files?: readonly string[] } = {},
): LinuxGuestImage {
  const wanted = o.modules ?? LINUX_GUEST_MODULES;
  const modules = resolveKernelModules(kernel.modulesDir, wanted).modules.map((m) => m.path);
  const initFile = `${path}.init-${process.pid}`;
  writeFileSync(initFile, init(modules), { mode: 0o755 });
  try {
    const args = ['initramfs', '-o', path, '--modules-dir', kernel.modulesDir, '--no-load-modules', '--init', initFile];
    for (const m of wanted) args.push('--module', m);
    for (const f of o.files ?? []) args.push('--file', f);
    const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tsvmm ${args.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
  } finally {
    rmSync(initFile, { force: true });
  }
  return { path, modules };
}

/** The kernel command line every scenario boots with: ttyS0 console, and `extra`. */
export function linuxGuestCmdline(extra = ''): string {
  return `console=ttyS0 panic=-1${extra ? ` ${extra}` : ''}`;
}

/**
 * Kernel log lines that mean trouble (the issue's list): any one is a failure. As an ERE for the guest's
 * `dmesg | grep -E` (the console shows only errors once /init runs: warnings are read from dmesg) and as a RegExp.
 */
export const KERNEL_WARNING_ERE = 'WARNING:|BUG:|rcu: INFO|soft lockup|clocksource .*unstable|Oops|Kernel panic';
const WARNING = new RegExp(KERNEL_WARNING_ERE);

/** The lines of a kernel log that mean trouble. */
export function kernelWarnings(log: string): string[] {
  return log
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => WARNING.test(l));
}
