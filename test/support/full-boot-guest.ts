// The full Linux boot guest: Debian's cloud kernel with a busybox initramfs (built by tsvmm's own image builder,
// src/images/) whose /init does one thing per step and says so on ttyS0 — mount /proc and /sys, load the virtio
// modules, read a line the host put on the virtio-blk disk, write one back (read again past the page cache), bring
// up eth0 and ping the host end of a tap, power off. One set of expectations (fullBootProblems) judges any VMM's
// serial output: QEMU's (the reference) and tsvmm's. Used by src/machine/linux-full-boot.test.ts and bench/boot.ts.
//
//   const k = fullBootKernel();                       // or a one-line reason
//   const image = buildFullBootInitramfs(join(dir, 'initrd.img'), k.modulesDir);
//   writeFullBootDisk(disk, nonce);
//   … run a VMM with fullBootCmdline(nonce) and fullBootDeviceArgs({ disk, tap }) …
//   assert.equal(fullBootProblems(serial, { nonce }), []);
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { writeInitramfs, readInitramfs } from '../../src/images/initramfs.js';
import { resolveKernelModules } from '../../src/images/kernel-modules.js';
import type { CpioEntry } from '../../src/images/cpio-newc.js';
import { debianKernel as debianKernelWithModules } from '../../src/images/testing/debian-kernel.js';
import { debianKernel, type DebianKernel } from './linux-kernel.js';
import { GUEST_IP, HOST_IP, DEFAULT_GUEST_MAC, type TapNamespace } from '../../examples/guests/virtio-probe-host.js';

/** Every line the init prints starts with this. */
export const FULL_BOOT_PREFIX = 'full-boot:';
/** Modules the init loads (Debian's cloud kernel has the virtio drivers as modules); dependencies are added. */
export const FULL_BOOT_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net'] as const;
/** Busybox applets the init runs: each must have its link in the image. */
export const FULL_BOOT_APPLETS = [
  'sh',
  'mount',
  'insmod',
  'grep',
  'cut',
  'tr',
  'sort',
  'sleep',
  'cat',
  'dd',
  'head',
  'ip',
  'ping',
  'poweroff',
] as const;
/** The disk: 1 MiB of raw image; the host's line in sector 0, the guest's in sector 8. */
export const FULL_BOOT_DISK_BYTES = 1 << 20;
export const HOST_LINE_SECTOR = 0;
export const GUEST_LINE_SECTOR = 8;
const SECTOR = 512;
/** Pings the init sends to the host end of the tap. */
export const PING_COUNT = 3;
export const FULL_BOOT_MAC = DEFAULT_GUEST_MAC;
export { GUEST_IP, HOST_IP };

/** The kernel (bzImage and extracted vmlinux) and its modules, from the same Debian package; or why not. */
export type FullBootKernel =
  | { kernel: DebianKernel; modulesDir: string; reason: null }
  | { kernel: null; modulesDir: null; reason: string };

/**
 * Debian's cloud kernel for the full boot. The images come from test/support/linux-kernel.ts (build/linux/); the
 * modules from the unpacked package of src/images/testing/debian-kernel.ts (build/debian-kernel/). Both fetch
 * linux-image-cloud-amd64's current kernel; a release mismatch (one cache older than the other) is a reason too.
 */
export function fullBootKernel(): FullBootKernel {
  const images = debianKernel();
  if (images.kernel === null) return { kernel: null, modulesDir: null, reason: images.reason };
  const withModules = debianKernelWithModules();
  if (typeof withModules === 'string') return { kernel: null, modulesDir: null, reason: withModules };
  if (withModules.version !== images.kernel.release) {
    return {
      kernel: null,
      modulesDir: null,
      reason: `kernel ${images.kernel.release} (build/linux/) and modules ${withModules.version} (build/debian-kernel/) differ: remove the older cache`,
    };
  }
  return { kernel: images.kernel, modulesDir: withModules.modulesDir, reason: null };
}

/** The kernel command line: serial console, and the nonce the init reads from /proc/cmdline. */
export function fullBootCmdline(nonce: string, extra = ''): string {
  if (!/^[A-Za-z0-9_-]+$/.test(nonce)) throw new Error(`full boot: nonce '${nonce}' must be letters, digits, - and _`);
  return `console=ttyS0 fullboot.nonce=${nonce}${extra ? ` ${extra}` : ''}`;
}

/** A short random nonce, so lines read from the disk prove this run's I/O and not an old image's. */
export function newNonce(): string {
  return `n${Date.now().toString(36)}${Math.floor(Math.random() * 0xffffff).toString(36)}`;
}

/** The host's line in sector 0 and the guest's in sector 8, as the init writes and prints them. */
export const hostLine = (nonce: string) => `host-wrote ${nonce}`;
export const guestLine = (nonce: string) => `guest-wrote ${nonce}`;

/** Single-quotes `s` for /bin/sh. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The /init script. `modulePaths` are archive paths (lib/modules/…/x.ko), dependencies first. Every step prints a
 * `full-boot: …` line; a failed step prints `full-boot: FAILED <step>` and powers off at once.
 */
export function fullBootInit(modulePaths: readonly string[]): string {
  const p = FULL_BOOT_PREFIX;
  return [
    '#!/bin/sh',
    "# /init of tsvmm's full Linux boot test (test/support/full-boot-guest.ts): one line on ttyS0 per step.",
    'export PATH=/sbin:/bin:/usr/sbin:/usr/bin',
    `say() { echo "${p} $*"; }`,
    `fail() { echo "${p} FAILED $*"; poweroff -f; sleep 10; }`,
    '# Waits for a path a driver creates (devices are probed asynchronously after insmod); 60 s is a hang guard',
    "# far above a slow nested-KVM machine's time.",
    'wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e "$1" ]; }',
    'mount -t proc proc /proc || fail "mount /proc"',
    '# From here the console shows only the kernel\'s errors and worse (and its KERN_EMERG "reboot: Power down"):',
    '# an info line (drop_caches, link up) written while the tty still drains one of ours would split it.',
    'echo 4 > /proc/sys/kernel/printk || fail "set the console log level"',
    'mount -t sysfs sysfs /sys || fail "mount /sys"',
    '# devtmpfs gives /dev/vda once virtio_blk has found the disk.',
    'mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"',
    'say "init started, pid $$"',
    "say \"mounted: $(grep -E '^(proc|sysfs|devtmpfs) ' /proc/mounts | cut -d' ' -f3 | tr '\\n' ' ')\"",
    'say "cpus: $(grep -c ^processor /proc/cpuinfo)"',
    'nonce=',
    'for w in $(cat /proc/cmdline); do case "$w" in fullboot.nonce=*) nonce="${w#fullboot.nonce=}";; esac; done',
    '[ -n "$nonce" ] || fail "no fullboot.nonce= on the command line"',
    ...modulePaths.map((m) => `insmod ${q(`/${m}`)} || fail ${q(`insmod /${m}`)}`),
    "say \"modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')\"",
    '',
    "# The disk: read the host's line, write ours, drop the page cache, read ours back from the device.",
    'wait_for /dev/vda || fail "no /dev/vda"',
    'say "disk /dev/vda: $(cat /sys/block/vda/size) sectors"',
    `say "read from disk: $(dd if=/dev/vda bs=${SECTOR} skip=${HOST_LINE_SECTOR} count=1 2>/dev/null | head -n 1)"`,
    `echo "guest-wrote $nonce" | dd of=/dev/vda bs=${SECTOR} seek=${GUEST_LINE_SECTOR} conv=notrunc,sync,fsync 2>/dev/null || fail "write /dev/vda"`,
    'say "wrote to disk: guest-wrote $nonce"',
    'echo 3 > /proc/sys/vm/drop_caches',
    `say "read back: $(dd if=/dev/vda bs=${SECTOR} skip=${GUEST_LINE_SECTOR} count=1 2>/dev/null | head -n 1)"`,
    '',
    '# The network: eth0 with a static address, then ping the host end of the tap.',
    'wait_for /sys/class/net/eth0 || fail "no eth0"',
    'ip link set lo up',
    'ip link set eth0 up || fail "ip link set eth0 up"',
    `ip addr add ${GUEST_IP}/24 dev eth0 || fail "ip addr add"`,
    "say \"eth0 up: mac $(cat /sys/class/net/eth0/address) addr $(ip -o -4 addr show dev eth0 | grep -o 'inet [0-9./]*' | cut -d' ' -f2)\"",
    `if ping -c ${PING_COUNT} -i 0.2 -W 5 ${HOST_IP} > /tmp/ping 2>&1; then`,
    `  say "ping ${HOST_IP}: $(grep -o '[0-9]* packets transmitted, [0-9]* packets received' /tmp/ping)"`,
    'else',
    '  cat /tmp/ping',
    `  fail "ping ${HOST_IP}"`,
    'fi',
    'say "powering off"',
    'poweroff -f',
    '',
  ].join('\n');
}

export interface FullBootImage {
  path: string;
  /** The archive's entries (read back from the written file). */
  entries: CpioEntry[];
  /** Archive paths of the modules, in load order. */
  modules: string[];
  /** The /init script. */
  init: string;
}

/** Builds the full-boot initramfs at `path` from the kernel's module tree (lib/modules/VERSION or an unpacked .deb). */
export function buildFullBootInitramfs(path: string, modulesDir: string): FullBootImage {
  const { modules } = resolveKernelModules(modulesDir, FULL_BOOT_MODULES);
  const init = fullBootInit(modules.map((m) => m.path));
  writeInitramfs(path, { init, modules });
  return { path, entries: readInitramfs(readFileSync(path)), modules: modules.map((m) => m.path), init };
}

/** A sector holding `line` and a newline, zero padded. */
function sectorWith(line: string): Buffer {
  const s = Buffer.alloc(SECTOR);
  s.write(`${line}\n`, 'latin1');
  return s;
}

/** Writes the raw disk image: zeros, with the host's line in sector 0. */
export function writeFullBootDisk(path: string, nonce: string): void {
  const image = Buffer.alloc(FULL_BOOT_DISK_BYTES);
  sectorWith(hostLine(nonce)).copy(image, HOST_LINE_SECTOR * SECTOR);
  writeFileSync(path, image);
}

/** Null if the guest's line reached sector 8 of the image file, else what is there. */
export function guestLineMismatch(path: string, nonce: string): string | null {
  const image = readFileSync(path);
  const got = image.subarray(GUEST_LINE_SECTOR * SECTOR, (GUEST_LINE_SECTOR + 1) * SECTOR);
  if (got.equals(sectorWith(guestLine(nonce)))) return null;
  return `sector ${GUEST_LINE_SECTOR} holds ${JSON.stringify(got.toString('latin1').replace(/\0+$/, ''))}, expected "${guestLine(nonce)}\\n" and zeros`;
}

/** The virtio disk and NIC, spelled as QEMU spells them (tsvmm takes the same words). */
export function fullBootDeviceArgs(o: { disk: string; tap: Pick<TapNamespace, 'tap'>; mac?: string }): string[] {
  return [
    '-drive',
    `file=${o.disk},if=none,id=d0,format=raw`,
    '-device',
    'virtio-blk-pci,drive=d0,disable-legacy=on',
    '-netdev',
    `tap,id=n0,ifname=${o.tap.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=n0,disable-legacy=on,mac=${o.mac ?? FULL_BOOT_MAC}`,
  ];
}

export interface FullBootExpect {
  nonce: string;
  cpus?: number;
  mac?: string;
}

/** Everything missing or wrong in a full boot's serial output; empty means every step was seen, in order. */
export function fullBootProblems(serial: string, expect: FullBootExpect): string[] {
  const lines = serial
    .replace(/\r/g, '')
    .split('\n')
    .map((l) => l.trimEnd());
  const p = FULL_BOOT_PREFIX;
  const problems: string[] = [];
  for (const l of lines) if (l.startsWith(`${p} FAILED`)) problems.push(`the guest reported: ${l}`);
  const modules = (list: string) => FULL_BOOT_MODULES.every((m) => list.split(' ').includes(m));
  const steps: [string, (l: string) => boolean][] = [
    ['the kernel banner', (l) => /Linux version \d+\.\d+/.test(l)],
    ['the kernel ran /init', (l) => /Run \/init as init process/.test(l)],
    [`${p} init started, pid 1`, (l) => l === `${p} init started, pid 1`],
    [`${p} mounted: proc sysfs devtmpfs`, (l) => l === `${p} mounted: proc sysfs devtmpfs`],
    ...(expect.cpus === undefined
      ? []
      : [
          [`${p} cpus: ${expect.cpus}`, (l: string) => l === `${p} cpus: ${expect.cpus}`] as [
            string,
            (l: string) => boolean,
          ],
        ]),
    [
      `${p} modules: … ${FULL_BOOT_MODULES.join(' ')} …`,
      (l) => l.startsWith(`${p} modules: `) && modules(l.slice(`${p} modules: `.length)),
    ],
    [
      `${p} disk /dev/vda: ${FULL_BOOT_DISK_BYTES / SECTOR} sectors`,
      (l) => l === `${p} disk /dev/vda: ${FULL_BOOT_DISK_BYTES / SECTOR} sectors`,
    ],
    [`${p} read from disk: ${hostLine(expect.nonce)}`, (l) => l === `${p} read from disk: ${hostLine(expect.nonce)}`],
    [`${p} wrote to disk: ${guestLine(expect.nonce)}`, (l) => l === `${p} wrote to disk: ${guestLine(expect.nonce)}`],
    [`${p} read back: ${guestLine(expect.nonce)}`, (l) => l === `${p} read back: ${guestLine(expect.nonce)}`],
    [
      `${p} eth0 up: mac ${expect.mac ?? FULL_BOOT_MAC} addr ${GUEST_IP}/24`,
      (l) => l === `${p} eth0 up: mac ${(expect.mac ?? FULL_BOOT_MAC).toLowerCase()} addr ${GUEST_IP}/24`,
    ],
    [
      `${p} ping ${HOST_IP}: ${PING_COUNT} packets transmitted, ${PING_COUNT} packets received`,
      (l) => l === `${p} ping ${HOST_IP}: ${PING_COUNT} packets transmitted, ${PING_COUNT} packets received`,
    ],
    [`${p} powering off`, (l) => l === `${p} powering off`],
    ['the kernel powered down (reboot: Power down)', (l) => /reboot: Power down/.test(l)],
  ];
  let at = 0;
  for (const [what, matches] of steps) {
    const found = lines.findIndex((l, i) => i >= at && matches(l));
    if (found < 0) {
      const anywhere = lines.some(matches);
      problems.push(`${anywhere ? 'out of order' : 'missing'}: ${what}`);
    } else {
      at = found + 1;
    }
  }
  return problems;
}

export interface VmmRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  /** ttyS0 (the VMM's stdout). */
  serial: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
  argv: string[];
}

/** Runs a VMM command line (program first), inside the tap's network namespace when one is given. */
export function runVmm(
  argv: readonly string[],
  o: {
    tap?: Pick<TapNamespace, 'ns'> | null;
    timeoutMs: number;
    /** Called once the VMM runs (`ip netns exec` execs it: the pid is the VMM's); `exited` resolves at its end. */
    whileRunning?: (pid: number, exited: Promise<void>) => Promise<void>;
  },
): Promise<VmmRun> {
  const full = o.tap ? ['ip', 'netns', 'exec', o.tap.ns, ...argv] : [...argv];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      serial += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', (e) => {
      stderr += `spawn ${full[0]}: ${e.message}\n`;
    });
    let ended!: () => void;
    const exited = new Promise<void>((r) => {
      ended = r;
    });
    child.on('exit', () => ended());
    const watching =
      o.whileRunning && child.pid !== undefined
        ? o.whileRunning(child.pid, exited).catch((e) => {
            stderr += `[whileRunning] ${(e as Error).message}\n`;
          })
        : Promise.resolve();
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      ended();
      void watching.then(() =>
        resolve({ status, signal, serial, stderr, timedOut, ms: Date.now() - started, argv: full }),
      );
    });
  });
}

/** What a running process has open: regular-file paths, and the interface of each /dev/net/tun fd (fdinfo iff:). */
export function openFiles(pid: number): { paths: string[]; taps: string[] } {
  const paths: string[] = [];
  const taps: string[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return { paths, taps };
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target === '/dev/net/tun') {
        const iff = /^iff:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
        if (iff) taps.push(iff);
      } else if (target.startsWith('/')) {
        paths.push(target);
      }
    } catch {
      /* closed meanwhile */
    }
  }
  return { paths, taps };
}
