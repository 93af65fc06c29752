// The host side of the virtio-probe guest (virtio-probe.c): what it must print, the disk pattern it writes, the
// network namespace with a tap for its virtio-net test, and a runner that boots it under QEMU (the reference) or
// tsvmm with the same device options — so one set of expectations judges both VMMs.
//
//   const run = await runVirtioProbe('qemu', { kernel, devices: ['blk', 'rng'], disk, serial: 'S1', workDir });
//   assert.equal(virtioProbeProblems(run.serial, { devices: ['blk', 'rng'], serial: 'S1', capacitySectors: 2048 }), []);
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { QEMU_BINARY, qemuAccel } from './qemu-runner.js';
import { hexDigits } from '../../src/util/hex.js';

export type VirtioKind = 'blk' | 'rng' | 'console' | 'net';
export const VIRTIO_KINDS: readonly VirtioKind[] = ['blk', 'rng', 'console', 'net'];

/** The guest's isa-debug-exit values (the VMM's exit status is value * 2 + 1). */
export const VIRTIO_PROBE_EXIT = {
  ok: 0,
  wantedMissing: 0x10,
  pci: 0x11,
  blk: 0x21,
  rng: 0x22,
  console: 0x23,
  net: 0x24,
  rounds: 0x25,
  exception: 0x3f,
} as const;

/** PCI identity of each modern device as QEMU (the reference) presents it: vendor 0x1af4, device 0x1040 + type. */
export const VIRTIO_PCI_IDS: Readonly<Record<VirtioKind, { device: number; classCode: number }>> = {
  net: { device: 0x1041, classCode: 0x020000 }, // network, Ethernet
  blk: { device: 0x1042, classCode: 0x010000 }, // mass storage, SCSI (QEMU's choice for virtio-blk)
  console: { device: 0x1043, classCode: 0x078000 }, // communication, other
  rng: { device: 0x1044, classCode: 0x00ff00 }, // unclassified
};

/** The blk test writes sectors 1-8 (512 bytes each) with blkPatternByte. */
export const BLK_PATTERN_FIRST_SECTOR = 1;
export const BLK_PATTERN_SECTORS = 8;
export const SECTOR_BYTES = 512;

/** Byte k (0-511) of pattern sector s: the same formula as pattern_byte() in virtio-probe.c. */
export function blkPatternByte(sector: number, k: number): number {
  return (sector * 37 + k * 13 + (k >> 8) + 0x5a) & 0xff;
}

/** Null if `image` holds the pattern in sectors 1-8, else where it first differs. */
export function blkPatternMismatch(image: Uint8Array): string | null {
  const end = (BLK_PATTERN_FIRST_SECTOR + BLK_PATTERN_SECTORS) * SECTOR_BYTES;
  if (image.length < end) return `image is ${image.length} bytes, shorter than the pattern's end (${end})`;
  for (let s = BLK_PATTERN_FIRST_SECTOR; s < BLK_PATTERN_FIRST_SECTOR + BLK_PATTERN_SECTORS; s++) {
    for (let k = 0; k < SECTOR_BYTES; k++) {
      const got = image[s * SECTOR_BYTES + k];
      const want = blkPatternByte(s, k);
      if (got !== want) return `sector ${s} byte ${k}: 0x${got.toString(16)}, expected 0x${want.toString(16)}`;
    }
  }
  return null;
}

/** With `rounds=N`, round K (1-based) writes one pattern sector: BLK_ROUNDS_FIRST_SECTOR + K - 1. */
export const BLK_ROUNDS_FIRST_SECTOR = 16;

/** Null if `image` holds the pattern in the sectors of rounds 1..`rounds`, else where it first differs. */
export function blkRoundsMismatch(image: Uint8Array, rounds: number): string | null {
  const end = (BLK_ROUNDS_FIRST_SECTOR + rounds) * SECTOR_BYTES;
  if (image.length < end) return `image is ${image.length} bytes, shorter than the last round's sector's end (${end})`;
  for (let r = 1; r <= rounds; r++) {
    const s = BLK_ROUNDS_FIRST_SECTOR + r - 1;
    for (let k = 0; k < SECTOR_BYTES; k++) {
      const got = image[s * SECTOR_BYTES + k];
      const want = blkPatternByte(s, k);
      if (got !== want)
        return `round ${r}'s sector ${s} byte ${k}: 0x${got.toString(16)}, expected 0x${want.toString(16)}`;
    }
  }
  return null;
}

/** Addresses of the net test: the guest asks "who has HOST_IP, tell GUEST_IP"; the host's tap answers. */
export const GUEST_IP = '10.0.2.15';
export const HOST_IP = '10.0.2.2';
export const DEFAULT_GUEST_MAC = '52:54:00:12:34:56';
/** The tap's own MAC (set by createTapNamespace): the ARP reply comes from it. Locally administered. */
export const DEFAULT_HOST_MAC = '02:54:00:00:00:02';

const macBytes = (mac: string) => mac.split(':').map((h) => parseInt(h, 16));
const ipBytes = (ip: string) => ip.split('.').map(Number);

/** RFC 1071 checksum of the ARP reply's 28-byte payload the guest prints (`sum 0x…`); zero padding does not change it. */
export function arpReplyChecksum(hostMac: string, guestMac: string): number {
  const p = [
    0,
    1,
    0x08,
    0x00,
    6,
    4,
    0,
    2,
    ...macBytes(hostMac),
    ...ipBytes(HOST_IP),
    ...macBytes(guestMac),
    ...ipBytes(GUEST_IP),
  ];
  let sum = 0;
  for (let i = 0; i < p.length; i += 2) sum += (p[i] << 8) | (p[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface VirtioProbeExpect {
  /** Devices that were attached; each must be found and pass. */
  devices: readonly VirtioKind[];
  /** Disk size in sectors, if the blk line's capacity is to be checked. */
  capacitySectors?: number;
  /** blk serial (`-device virtio-blk-pci,serial=…`); absent: "(none)". */
  serial?: string;
  /** The line the host wrote to the console; null or absent: the guest must report "no input". */
  consoleInput?: string | null;
  guestMac?: string;
  /** The tap's MAC: checks the ARP reply and its checksum. */
  hostMac?: string;
  /** ecam= was given: type-1 and ECAM must agree. */
  ecam?: boolean;
  /** Expected exit value (default 0 = every test passed). */
  exitValue?: number;
  /** rounds=N was given: `virtio-probe: round K ok` for K = 1..N, each once and in order, then `N rounds ok`. */
  rounds?: number;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Everything wrong with the guest's COM1 output against `expect`; empty means it is right. */
export function virtioProbeProblems(out: string, expect: VirtioProbeExpect): string[] {
  const lines = out.replace(/\r/g, '').split('\n');
  const problems: string[] = [];
  const has = (line: string) => lines.includes(line);
  const need = (line: string) => {
    if (!has(line)) problems.push(`missing line: ${line}`);
  };
  const needRe = (re: RegExp, what: string) => {
    if (!lines.some((l) => re.test(l))) problems.push(`missing line: ${what} (${re})`);
  };
  const exitValue = expect.exitValue ?? VIRTIO_PROBE_EXIT.ok;

  need('virtio-probe: start');
  needRe(/^pci 00:00\.0 [0-9a-f]{4}:[0-9a-f]{4} class 0600[0-9a-f]{2}$/, 'a host bridge at 00:00.0');
  for (const kind of expect.devices) {
    const id = VIRTIO_PCI_IDS[kind];
    needRe(
      new RegExp(`^pci 00:[0-9a-f]{2}\\.[0-7] 1af4:${hexDigits(id.device, 4)} class ${hexDigits(id.classCode, 6)}$`),
      `virtio-${kind} enumerated`,
    );
    needRe(
      new RegExp(`^virtio-${kind}: msi-x( q\\d+ vector 0x[0-9a-f]{2} \\d+ irqs/\\d+ used)+$`),
      `virtio-${kind} MSI-X summary`,
    );
    if (lines.some((l) => new RegExp(`^virtio-${kind}: msi-x.* 0 irqs/[1-9]`).test(l)))
      problems.push(`virtio-${kind}: a queue completed requests without an MSI-X interrupt`);
  }
  if (expect.ecam) need('pci: type-1 and ECAM agree on bus 0');
  if (expect.devices.includes('blk')) {
    const capacity = expect.capacitySectors === undefined ? '\\d+' : String(expect.capacitySectors);
    needRe(
      new RegExp(
        `^virtio-blk: capacity ${capacity}, write/read ok, flush ok, id ${escapeRe(expect.serial ?? '(none)')}, oob ioerr$`,
      ),
      'the blk result',
    );
  }
  if (expect.devices.includes('rng')) need('virtio-rng: ok');
  if (expect.devices.includes('console')) {
    need('virtio-console: hello sent');
    need(expect.consoleInput ? `virtio-console: received "${expect.consoleInput}"` : 'virtio-console: no input');
  }
  if (expect.devices.includes('net')) {
    const guestMac = (expect.guestMac ?? DEFAULT_GUEST_MAC).toLowerCase();
    need(`virtio-net: mac ${guestMac}`);
    need(`virtio-net: sent arp who-has ${HOST_IP} tell ${GUEST_IP}`);
    if (expect.hostMac) {
      const sum = hexDigits(arpReplyChecksum(expect.hostMac, guestMac), 4);
      needRe(new RegExp(`^virtio-net: rx ethertype 0x0806 len (4[2-9]|5\\d|60) sum 0x${sum}$`), 'the ARP reply frame');
      need(`virtio-net: arp reply ${HOST_IP} is-at ${expect.hostMac.toLowerCase()}`);
    } else {
      needRe(/^virtio-net: rx ethertype 0x0806 len \d+ sum 0x[0-9a-f]{4}$/, 'the ARP reply frame');
    }
  }
  if (expect.rounds) {
    const done = lines.flatMap((l) => /^virtio-probe: round (\d+) ok$/.exec(l)?.[1] ?? []).map(Number);
    const want = Array.from({ length: expect.rounds }, (_, i) => i + 1);
    if (done.join(',') !== want.join(','))
      problems.push(`rounds reported ${done.join(',') || 'none'}, expected ${want.join(',')}`);
    need(`virtio-probe: ${expect.rounds} rounds ok`);
  }
  if (exitValue === VIRTIO_PROBE_EXIT.ok) {
    for (const l of lines) if (/FAILED|exception/.test(l)) problems.push(`failure reported: ${l}`);
    need('virtio-probe: all ok');
  } else {
    need(`virtio-probe: FAILED (exit 0x${exitValue.toString(16)})`);
  }
  return problems;
}

/**
 * The lines that must read the same under every VMM for the same devices and options (the per-device results):
 * compare QEMU's with tsvmm's. PCI slots, BAR addresses, feature words and interrupt counts are left out.
 */
export function comparableLines(out: string): string[] {
  const keep =
    /^(virtio-blk: capacity |virtio-rng: ok$|virtio-console: (hello sent|received |no input)|virtio-net: (mac |sent arp |rx ethertype |arp reply )|virtio-probe: (all ok|FAILED)|pci: type-1 and ECAM agree)/;
  return out
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => keep.test(l));
}

/**
 * With `reassign=1 mmio=BASE mmio_size=SIZE` the guest places every virtio BAR itself: what is wrong with the BAR
 * lines it printed (fewer than `atLeast`, or one outside [base, base + size)). Empty when all is well.
 */
export function barsOutsideWindow(out: string, base: number, size: number, atLeast = 4): string[] {
  const bars = [...out.matchAll(/bar(\d) 0x([0-9a-f]{8}) \((\d+) KiB/g)];
  const problems = bars.length >= atLeast ? [] : [`${bars.length} BAR lines, expected at least ${atLeast}`];
  for (const [, index, addr] of bars) {
    const a = parseInt(addr, 16);
    if (a < base || a >= base + size)
      problems.push(`BAR ${index} at 0x${addr} is outside 0x${base.toString(16)}+0x${size.toString(16)}`);
  }
  return problems;
}

// ---- A network namespace with a tap: the host end of virtio-net ----

export interface TapNamespace {
  /** Namespace name; run the VMM inside it with `ip netns exec <ns> …`. */
  ns: string;
  /** The tap's name inside the namespace (`-netdev tap,ifname=<tap>,script=no,downscript=no`). */
  tap: string;
  hostMac: string;
  hostIp: string;
  /** The tap's counters: rx = frames the guest sent, tx = frames the host sent to the guest. */
  stats(): { rxPackets: number; txPackets: number };
  /** Deletes the namespace (and the tap with it). Idempotent. */
  close(): void;
}

function ip(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) return { ok: false, out: `ip: ${r.error.message}` };
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * A fresh namespace with a persistent tap (MAC `hostMac`, address HOST_IP/24, IPv6 off so the only frames the
 * guest sees are answers), which the kernel itself answers ARP on. Throws with the failing command's message.
 */
export function createTapNamespace(
  name = `tsvmm-vp-${process.pid}-${Date.now() % 100000}`,
  hostMac = DEFAULT_HOST_MAC,
): TapNamespace {
  const tap = 'vp0';
  const steps: string[][] = [
    ['netns', 'add', name],
    ['-n', name, 'tuntap', 'add', 'dev', tap, 'mode', 'tap'],
    [
      'netns',
      'exec',
      name,
      'sysctl',
      '-qw',
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
    ],
    ['-n', name, 'link', 'set', tap, 'address', hostMac],
    ['-n', name, 'addr', 'add', `${HOST_IP}/24`, 'dev', tap],
    ['-n', name, 'link', 'set', tap, 'up'],
  ];
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    ip(['netns', 'del', name]);
  };
  for (const step of steps) {
    const r = ip(step);
    if (!r.ok) {
      close();
      throw new Error(`ip ${step.join(' ')} failed: ${r.out}`);
    }
  }
  const stats = () => {
    const r = ip(['-n', name, '-s', '-j', 'link', 'show', tap]);
    if (!r.ok) throw new Error(`reading ${tap}'s counters failed: ${r.out}`);
    const s = JSON.parse(r.out)[0]?.stats64 ?? {};
    return { rxPackets: Number(s.rx?.packets ?? 0), txPackets: Number(s.tx?.packets ?? 0) };
  };
  return { ns: name, tap, hostMac, hostIp: HOST_IP, stats, close };
}

/** Null if a tap in a new network namespace can be made here (root, /dev/net/tun, iproute2), else why not. */
export function tapUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'creating a network namespace and a tap needs root';
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return '/dev/net/tun is not usable';
  }
  try {
    createTapNamespace(`tsvmm-vp-check-${process.pid}`).close();
    return null;
  } catch (e) {
    return `cannot set up a tap in a network namespace: ${(e as Error).message.split('\n')[0]}`;
  }
}

// ---- Running the guest ----

export interface VirtioProbeOptions {
  /** The built guest (buildGuest('virtio-probe').path). */
  kernel: string;
  /** Devices to attach (in this PCI order). */
  devices: readonly VirtioKind[];
  /** What the guest must find (want=); default: `devices`. */
  want?: readonly VirtioKind[];
  /** QEMU machine type (tsvmm: ignored, it is a pc). */
  machine?: 'pc' | 'q35';
  /** More words for the guest's command line (ecam=…, reassign=1, …). */
  append?: string;
  /** Raw disk image for blk. */
  disk?: string;
  /** Appended to every virtio -device option list (e.g. ',ioeventfd=off'): both VMMs take QEMU's spelling. */
  deviceOptions?: string;
  readOnlyDisk?: boolean;
  /** blk serial. */
  serial?: string;
  /** Guest MAC (default DEFAULT_GUEST_MAC). */
  mac?: string;
  /** Required for net: the VMM runs inside this namespace and uses its tap. */
  tap?: TapNamespace;
  /** Sent on the console (with a newline) once the guest's hello arrives there. */
  consoleInput?: string;
  /** A short directory for the console socket (unix socket paths are limited to 107 bytes). */
  socketDir: string;
  /** rounds=N: after the tests, N more rounds on blk and rng, devices kept as they are (0 or absent: none). */
  rounds?: number;
  /** round_delay_ms=MS: the guest halts this long after each round (its default: 100). */
  roundDelayMs?: number;
  /** hold_after=K: after round K the guest waits for a byte on COM1 (the VMM's stdin with -serial stdio). */
  holdAfter?: number;
  /** QEMU only: more options (e.g. a device with a huge BAR that pushes 64-bit BARs above 4 GiB). */
  qemuArgs?: string[];
  /** tsvmm only: the bundled CLI (default: dist/tsvmm.mjs relative to the working directory). */
  tsvmmCli?: string;
  timeoutMs?: number;
}

export interface VirtioProbeRun {
  /** Process exit status: (guest's exit value << 1) | 1 when it used isa-debug-exit; null if killed. */
  status: number | null;
  /** COM1. */
  serial: string;
  /** What the guest sent on the virtio console. */
  console: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
  /** The full command line that was run. */
  argv: string[];
}

/** The guest's command line for these options. */
export function virtioProbeCmdline(o: VirtioProbeOptions): string {
  const words = [`want=${(o.want ?? o.devices).join(',')}`];
  // The guest stops waiting as soon as the host's line arrives: the bound only ends a wait for input never sent.
  if (o.devices.includes('console')) words.push(`console_wait=${o.consoleInput ? 20000 : 0}`);
  if (o.rounds) words.push(`rounds=${o.rounds}`);
  if (o.roundDelayMs !== undefined) words.push(`round_delay_ms=${o.roundDelayMs}`);
  if (o.holdAfter) words.push(`hold_after=${o.holdAfter}`);
  if (o.append) words.push(o.append);
  return words.join(' ');
}

/** `-drive`/`-device`/`-netdev`/`-chardev` options, spelled as QEMU spells them (tsvmm accepts the same). */
export function virtioProbeDeviceArgs(o: VirtioProbeOptions): string[] {
  const args: string[] = [];
  for (const kind of o.devices) {
    switch (kind) {
      case 'blk':
        if (!o.disk) throw new Error('virtio-probe: blk needs a disk image');
        args.push(
          '-drive',
          `file=${o.disk},if=none,id=vpdisk,format=raw${o.readOnlyDisk ? ',readonly=on' : ''}`,
          '-device',
          `virtio-blk-pci,disable-legacy=on,drive=vpdisk${o.serial ? `,serial=${o.serial}` : ''}${o.deviceOptions ?? ''}`,
        );
        break;
      case 'rng':
        args.push('-device', `virtio-rng-pci,disable-legacy=on${o.deviceOptions ?? ''}`);
        break;
      case 'console':
        args.push(
          '-chardev',
          `socket,id=vpcon,path=${join(o.socketDir, 'console.sock')},server=on,wait=on`,
          '-device',
          'virtio-serial-pci,disable-legacy=on',
          '-device',
          'virtconsole,chardev=vpcon',
        );
        break;
      case 'net':
        if (!o.tap) throw new Error('virtio-probe: net needs a tap namespace');
        args.push(
          '-netdev',
          `tap,id=vpnet,ifname=${o.tap.tap},script=no,downscript=no`,
          '-device',
          `virtio-net-pci,disable-legacy=on,netdev=vpnet,mac=${o.mac ?? DEFAULT_GUEST_MAC}${o.deviceOptions ?? ''}`,
        );
        break;
    }
  }
  return args;
}

/** The VMM options both VMMs take alike: RAM, COM1 on stdout, isa-debug-exit, the guest and its devices. */
export function virtioProbeCommonArgs(o: VirtioProbeOptions): string[] {
  return [
    '-m',
    '64M',
    '-no-reboot',
    '-serial',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel',
    o.kernel,
    '-append',
    virtioProbeCmdline(o),
    ...virtioProbeDeviceArgs(o),
  ];
}

/** The whole command for `vmm` (program first), wrapped in `ip netns exec` when a tap is used. */
export function virtioProbeCommand(vmm: 'qemu' | 'tsvmm', o: VirtioProbeOptions): string[] {
  const timeoutS = Math.ceil((o.timeoutMs ?? 30_000) / 1000);
  const common = virtioProbeCommonArgs(o);
  const argv =
    vmm === 'qemu'
      ? [
          QEMU_BINARY,
          '-accel',
          qemuAccel(),
          '-M',
          o.machine ?? 'pc',
          '-nodefaults',
          '-display',
          'none',
          ...common,
          ...(o.qemuArgs ?? []),
        ]
      : [process.execPath, o.tsvmmCli ?? 'dist/tsvmm.mjs', 'run', ...common, '--timeout', String(timeoutS)];
  return o.tap ? ['ip', 'netns', 'exec', o.tap.ns, ...argv] : argv;
}

/** Connects to the VMM's console socket once it exists (the VMM waits for us: server=on,wait=on). */
async function connectConsole(path: string, deadline: number, alive: () => boolean): Promise<Socket | null> {
  while (Date.now() < deadline && alive()) {
    if (existsSync(path)) {
      const sock = await new Promise<Socket | null>((resolve) => {
        const s = createConnection(path);
        s.once('connect', () => resolve(s));
        s.once('error', () => {
          s.destroy();
          resolve(null);
        });
      });
      if (sock) return sock;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

/** Boots virtio-probe under QEMU or tsvmm with `options`' devices and collects COM1, the console and the status. */
export async function runVirtioProbe(vmm: 'qemu' | 'tsvmm', options: VirtioProbeOptions): Promise<VirtioProbeRun> {
  const argv = virtioProbeCommand(vmm, options);
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  let stderr = '';
  let consoleOut = '';
  let exited = false;
  let timedOut = false;
  child.stdout.setEncoding('latin1');
  child.stdout.on('data', (d) => {
    serial += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const closed = new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      stderr += `spawn ${argv[0]}: ${e.message}\n`;
    });
    child.on('close', (status) => {
      exited = true;
      resolve(status);
    });
  });
  let sock: Socket | null = null;
  if (options.devices.includes('console')) {
    sock = await connectConsole(join(options.socketDir, 'console.sock'), started + timeoutMs, () => !exited);
    if (sock) {
      let sent = false;
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        consoleOut += d;
        if (!sent && options.consoleInput !== undefined && consoleOut.includes('virtio-console: hello\n')) {
          sent = true;
          sock!.write(`${options.consoleInput}\n`);
        }
      });
      sock.on('error', () => {
        /* the VMM went away */
      });
    }
  }
  const status = await closed;
  clearTimeout(timer);
  sock?.destroy();
  return { status, serial, console: consoleOut, stderr, timedOut, ms: Date.now() - started, argv };
}
