// A busybox initramfs for Linux test guests, built in-process: the archive's entries are collected here (standard
// directories, /dev/console and /dev/null nodes, a static busybox with a symlink per applet, /init, kernel modules,
// the user's files), sorted by name, written as newc cpio (cpio-newc.ts) and gzip-compressed. Every entry has
// uid/gid 0 and the same mtime, and node's zlib is deterministic, so the same inputs give the same bytes.
import { readFileSync, renameSync, statSync, writeFileSync, rmSync, type Stats } from 'node:fs';
import { gunzipSync, gzipSync, constants as zlibConstants } from 'node:zlib';
import { archivePath, parentsOf } from './archive-path.js';
import { BUSYBOX_INSTALL_HINT, BusyboxError, busyboxApplets, findBusybox, readStaticBusybox } from './busybox.js';
import { readCpioNewc, writeCpioNewc, type CpioEntry, type CpioEntryType } from './cpio-newc.js';
import { modulePathFromSource, type InitramfsModule } from './kernel-modules.js';

export type { InitramfsModule } from './kernel-modules.js';

/** An extra archive member: exactly one of `data`, `source`, `symlink`, `directory`. */
export interface InitramfsFile {
  /** Path in the archive ("etc/hosts" or "/etc/hosts"); missing parent directories are created (0755). */
  path: string;
  /** Contents (a string is written as UTF-8). */
  data?: string | Uint8Array;
  /** A host file to copy. */
  source?: string;
  /** Make a symbolic link pointing at this target. */
  symlink?: string;
  /** Make a directory. */
  directory?: boolean;
  /** Permission bits (e.g. 0o755); default: the source file's, else 0o644 (0o755 for a directory). */
  mode?: number;
}

export interface InitramfsOptions {
  /** The /init script's text (must start with "#!"). Default: `defaultInit(…)`. */
  init?: string;
  /** Or a host file to use as /init (a script starting with "#!" or an ELF executable). */
  initFile?: string;
  /** Extra files, links and directories. They replace generated entries of the same path (e.g. an applet link). */
  files?: InitramfsFile[];
  /** Kernel modules, dependencies first (`resolveKernelModules` gives that order); the default init insmods them. */
  modules?: InitramfsModule[];
  /** With the default init: load `modules` at boot (default true). */
  loadModules?: boolean;
  /** With the default init: shell commands to run after the report, before power-off. */
  commands?: string[];
  /** Path of a statically linked busybox (default: the host's /usr/bin/busybox), or false for none. */
  busybox?: string | false;
  /** The applet links to make ("bin/sh", "sbin/poweroff", …); default: what `busybox --list-full` prints. */
  applets?: string[];
  /** mtime of every entry, in seconds (default 0). */
  mtime?: number;
  /** gzip the archive (default true); false gives the plain cpio archive. */
  gzip?: boolean;
}

/** The default init prints this line first: proof that the kernel reached user space. */
export const INIT_BANNER = 'tsvmm-initramfs: init started';
/** …and this one last, just before `poweroff -f`. */
export const INIT_POWEROFF = 'tsvmm-initramfs: powering off';

export class InitramfsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InitramfsError';
  }
}

/** Directories every initramfs has, with their modes (/tmp sticky and world-writable, /root private). */
const BASE_DIRS: [string, number][] = [
  ['bin', 0o755],
  ['dev', 0o755],
  ['etc', 0o755],
  ['mnt', 0o755],
  ['proc', 0o755],
  ['root', 0o700],
  ['sbin', 0o755],
  ['sys', 0o755],
  ['tmp', 0o1777],
  ['usr', 0o755],
  ['usr/bin', 0o755],
  ['usr/sbin', 0o755],
];
/** Device nodes the kernel needs before devtmpfs is mounted: it opens /dev/console for init's stdio. */
const BASE_NODES: { name: string; perm: number; major: number; minor: number }[] = [
  { name: 'dev/console', perm: 0o600, major: 5, minor: 1 }, // TTYAUX_MAJOR 5, minor 1: the system console
  { name: 'dev/null', perm: 0o666, major: 1, minor: 3 }, // MEM_MAJOR 1, minor 3: null
];
const BUSYBOX_PATH = 'bin/busybox';

/** Quotes `s` for /bin/sh: single quotes, with embedded ones spelled '\''. */
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The default /init: mount proc, sysfs and devtmpfs, print the banner, load `modules` in order, print the kernel
 * version, command line, virtio block devices and network interfaces (also a line on hvc0 when a virtio console
 * is there), run `commands`, and power off at once (`poweroff -f`: no init system to stop).
 */
export function defaultInit(o: { modules?: readonly string[]; commands?: readonly string[] } = {}): string {
  const lines = [
    '#!/bin/sh',
    "# /init made by tsvmm's initramfs builder: report what the guest sees, then power off.",
    'export PATH=/sbin:/bin:/usr/sbin:/usr/bin',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    "# devtmpfs hides the archive's /dev (console, null) with the kernel's own nodes, /dev/vd* included.",
    'mount -t devtmpfs devtmpfs /dev || echo "tsvmm-initramfs: no devtmpfs; keeping the archive\'s /dev"',
    `echo ${shellQuote(INIT_BANNER)}`,
  ];
  for (const m of o.modules ?? [])
    lines.push(`insmod ${shellQuote(`/${m}`)} || echo ${shellQuote(`tsvmm-initramfs: insmod /${m} failed`)}`);
  lines.push(
    'echo "uname: $(uname -a)"',
    'echo "cmdline: $(cat /proc/cmdline)"',
    "echo \"block devices: $(ls /dev | grep '^vd' | tr '\\n' ' ')\"",
    "echo \"network interfaces: $(ls /sys/class/net | tr '\\n' ' ')\"",
    `if [ -c /dev/hvc0 ]; then echo ${shellQuote('tsvmm-initramfs: hello on hvc0')} > /dev/hvc0; fi`,
    ...(o.commands ?? []),
    `echo ${shellQuote(INIT_POWEROFF)}`,
    'poweroff -f',
    '',
  );
  return lines.join('\n');
}

type Origin = 'base' | 'implied' | 'user';
interface Collected {
  entry: CpioEntry;
  origin: Origin;
  what: string;
}

/** Entries by archive name; keeps parents before children and refuses conflicting user entries. */
class EntrySet {
  private readonly map = new Map<string, Collected>();
  constructor(private readonly mtime: number) {}

  dir(name: string, perm: number, origin: Origin, what: string): void {
    this.put({ name, type: 'dir', perm, data: new Uint8Array(0) }, origin, what);
  }

  put(
    e: { name: string; type: CpioEntryType; perm: number; data: Uint8Array; rdevMajor?: number; rdevMinor?: number },
    origin: Origin,
    what: string,
  ): void {
    for (const parent of parentsOf(e.name)) {
      const have = this.map.get(parent);
      if (!have) this.dir(parent, 0o755, 'implied', `directory '${parent}' made for ${what}`);
      else if (have.entry.type !== 'dir')
        throw new InitramfsError(
          `initramfs: ${what} would be inside '${parent}', which is a ${have.entry.type} (${have.what})`,
        );
    }
    const have = this.map.get(e.name);
    if (have) {
      if (have.origin === 'user' && origin === 'user')
        throw new InitramfsError(`initramfs: ${what} is given twice (also as ${have.what})`);
      if (have.entry.type === 'dir' && e.type !== 'dir')
        throw new InitramfsError(`initramfs: ${what} would replace a directory (${have.what})`);
    }
    const entry: CpioEntry = { uid: 0, gid: 0, mtime: this.mtime, rdevMajor: 0, rdevMinor: 0, ...e };
    this.map.set(e.name, { entry, origin: have?.origin === 'user' ? 'user' : origin, what });
  }

  sorted(): CpioEntry[] {
    // Plain code-unit order puts every directory before what it holds (a prefix sorts first).
    return [...this.map.keys()].sort().map((k) => this.map.get(k)!.entry);
  }
}

function checkPerm(mode: number | undefined, what: string): void {
  if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)) {
    throw new InitramfsError(`initramfs: ${what}: mode ${mode} is not a permission value (0 … 0o7777)`);
  }
}

function readSource(source: string, what: string): { data: Buffer; perm: number } {
  let st: Stats;
  try {
    st = statSync(source);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InitramfsError(
      `initramfs: ${what}: source '${source}' ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (e as Error).message})`}`,
    );
  }
  if (!st.isFile()) throw new InitramfsError(`initramfs: ${what}: source '${source}' is not a regular file`);
  try {
    return { data: readFileSync(source), perm: st.mode & 0o7777 };
  } catch (e) {
    throw new InitramfsError(`initramfs: ${what}: cannot read source '${source}': ${(e as Error).message}`);
  }
}

function initBytes(o: InitramfsOptions, moduleNames: string[], haveBusybox: boolean): Buffer {
  if (o.init !== undefined && o.initFile !== undefined)
    throw new InitramfsError('initramfs: give init or initFile, not both');
  const custom = o.init !== undefined || o.initFile !== undefined;
  if (custom && o.commands?.length)
    throw new InitramfsError('initramfs: commands are run by the default init only; put them in your init script');
  if (!custom) {
    if (!haveBusybox)
      throw new InitramfsError(
        'initramfs: the default init is a busybox shell script: give an init of your own, or keep busybox',
      );
    return Buffer.from(defaultInit({ modules: o.loadModules === false ? [] : moduleNames, commands: o.commands }));
  }
  const bytes = o.init !== undefined ? Buffer.from(o.init) : readSource(o.initFile!, 'init file').data;
  const isScript = bytes.subarray(0, 2).toString('latin1') === '#!';
  const isElf = bytes.length >= 4 && bytes.readUInt32BE(0) === 0x7f454c46;
  if (!isScript && !isElf) {
    throw new InitramfsError(
      `initramfs: ${o.initFile ? `init file '${o.initFile}'` : 'init'} starts with neither "#!" nor an ELF header: the kernel could not run it`,
    );
  }
  return bytes;
}

/** The archive's entries, sorted (what `buildInitramfs` serialises). */
export function initramfsEntries(o: InitramfsOptions = {}): CpioEntry[] {
  const mtime = o.mtime ?? 0;
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > 0xffff_ffff)
    throw new InitramfsError(`initramfs: mtime ${mtime} out of range`);
  const set = new EntrySet(mtime);
  for (const [name, perm] of BASE_DIRS) set.dir(name, perm, 'base', `standard directory '${name}'`);
  for (const n of BASE_NODES)
    set.put(
      { name: n.name, type: 'chardev', perm: n.perm, data: new Uint8Array(0), rdevMajor: n.major, rdevMinor: n.minor },
      'base',
      `device node '${n.name}'`,
    );

  let busyboxPath: string | null = null;
  if (o.busybox !== false) {
    busyboxPath = o.busybox ?? findBusybox();
    if (busyboxPath === null) throw new BusyboxError(`initramfs: no busybox found; ${BUSYBOX_INSTALL_HINT}`);
    set.put({ name: BUSYBOX_PATH, type: 'file', perm: 0o755, data: readStaticBusybox(busyboxPath) }, 'base', 'busybox');
    const target = Buffer.from(`/${BUSYBOX_PATH}`);
    for (const applet of o.applets ?? busyboxApplets(busyboxPath)) {
      const name = archivePath(applet, 'busybox applet');
      if (name === BUSYBOX_PATH) continue;
      set.put({ name, type: 'symlink', perm: 0o777, data: target }, 'base', `busybox applet '${name}'`);
    }
  }

  const moduleNames: string[] = [];
  (o.modules ?? []).forEach((m, i) => {
    const what = `module ${i + 1}`;
    if ((m.source === undefined) === (m.data === undefined))
      throw new InitramfsError(`initramfs: ${what}: give exactly one of source and data`);
    const target = m.path ?? (m.source !== undefined ? modulePathFromSource(m.source) : null);
    if (target === null) {
      throw new InitramfsError(
        m.source === undefined
          ? `initramfs: ${what}: a module given as data needs a path (lib/modules/VERSION/…/name.ko)`
          : `initramfs: ${what}: no path given and '${m.source}' has no lib/modules/… part to take it from`,
      );
    }
    const name = archivePath(target, `${what} path`);
    if (!name.endsWith('.ko'))
      throw new InitramfsError(
        `initramfs: ${what} '${name}' does not end in .ko (compressed modules are not supported: decompress first)`,
      );
    const data = m.data ?? readSource(m.source!, `${what} '${name}'`).data;
    set.put({ name, type: 'file', perm: 0o644, data }, 'user', `${what} '${name}'`);
    moduleNames.push(name);
  });

  set.put(
    { name: 'init', type: 'file', perm: 0o755, data: initBytes(o, moduleNames, busyboxPath !== null) },
    'user',
    '/init',
  );

  (o.files ?? []).forEach((f, i) => {
    const name = archivePath(f.path, `file ${i + 1} path`);
    const what = `file '${name}'`;
    checkPerm(f.mode, what);
    const kinds = [f.data !== undefined, f.source !== undefined, f.symlink !== undefined, f.directory === true].filter(
      Boolean,
    ).length;
    if (kinds !== 1)
      throw new InitramfsError(`initramfs: ${what}: give exactly one of data, source, symlink and directory`);
    if (f.directory) set.dir(name, f.mode ?? 0o755, 'user', what);
    else if (f.symlink !== undefined) {
      if (f.symlink === '' || f.symlink.includes('\0'))
        throw new InitramfsError(`initramfs: ${what}: bad symlink target ${JSON.stringify(f.symlink)}`);
      set.put({ name, type: 'symlink', perm: 0o777, data: Buffer.from(f.symlink) }, 'user', what);
    } else if (f.source !== undefined) {
      const src = readSource(f.source, what);
      set.put({ name, type: 'file', perm: f.mode ?? src.perm, data: src.data }, 'user', what);
    } else {
      const data = typeof f.data === 'string' ? Buffer.from(f.data) : f.data!;
      set.put({ name, type: 'file', perm: f.mode ?? 0o644, data }, 'user', what);
    }
  });
  return set.sorted();
}

/** Builds the initramfs (gzip-compressed newc cpio unless `gzip: false`). */
export function buildInitramfs(o: InitramfsOptions = {}): Buffer {
  const cpio = writeCpioNewc(initramfsEntries(o));
  return o.gzip === false ? cpio : gzipSync(cpio, { level: zlibConstants.Z_BEST_COMPRESSION });
}

/** Builds the initramfs and writes it to `path` (through a temporary file, so a reader never sees half of it). */
export function writeInitramfs(path: string, o: InitramfsOptions = {}): Buffer {
  const bytes = buildInitramfs(o);
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
  return bytes;
}

/** gzip's first two bytes. */
const GZIP_MAGIC = 0x1f8b;

/** The entries of an initramfs image, gzip-compressed or plain newc cpio. */
export function readInitramfs(bytes: Uint8Array): CpioEntry[] {
  const gz = bytes.length >= 2 && ((bytes[0] << 8) | bytes[1]) === GZIP_MAGIC;
  return readCpioNewc(gz ? gunzipSync(bytes) : bytes);
}
