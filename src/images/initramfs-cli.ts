// `tsvmm initramfs`: build a busybox initramfs from the command line, or list one. The CLI's main dispatches
// here with the arguments after the word `initramfs`; this module turns them into `buildInitramfs` options.
import { readFileSync } from 'node:fs';
import { writeInitramfs, readInitramfs, type InitramfsFile, type InitramfsOptions } from './initramfs.js';
import { modulePathFromSource, resolveKernelModules, type InitramfsModule } from './kernel-modules.js';
import type { CpioEntry } from './cpio-newc.js';

/** Exit statuses: as cpio(1) and tsvmm run (2 = bad usage). */
export const InitramfsExit = { ok: 0, failed: 1, usage: 2 } as const;

export const INITRAMFS_USAGE = `usage: tsvmm initramfs -o FILE [options]   build a busybox initramfs (gzip-compressed newc cpio)
       tsvmm initramfs --list FILE          list the entries of an initramfs (gzip or plain cpio)

Without --init, /init mounts /proc, /sys and devtmpfs, prints "tsvmm-initramfs: init started", loads the
modules, prints uname -a, the kernel command line, /dev/vd* and /sys/class/net, runs the --run commands and
powers off (poweroff -f).

options:
  -o, --output FILE         write the image to FILE (required to build)
  --init FILE               use FILE as /init (a "#!" script or a static ELF) instead of the default init
  --run CMD                 default init: run the shell command CMD before powering off (repeatable)
  --file HOST=GUEST         copy the host file HOST to GUEST in the image, keeping its mode (repeatable)
  --modules-dir DIR         a kernel's modules: lib/modules/VERSION, or a directory with one lib/modules/VERSION
                            (e.g. an unpacked linux-image-*.deb)
  --module NAME|FILE.ko     add a kernel module: NAME is looked up in --modules-dir with its dependencies;
                            FILE.ko is taken as it is, to lib/modules/… of its own path (repeatable, load order)
  --no-load-modules         default init: include the modules but do not insmod them
  --busybox PATH            the busybox to include (default: /usr/bin/busybox from Debian's busybox-static;
                            it must be statically linked)
  --no-busybox              no busybox at all (needs --init)
  --no-gzip                 write the plain cpio archive
  -h, --help                show this help

exit status: 0 done, 1 the image could not be built (a missing file, an unknown module, …), 2 bad usage.`;

export class InitramfsUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InitramfsUsageError';
  }
}

export interface InitramfsCommand {
  help: boolean;
  list?: string;
  output?: string;
  initFile?: string;
  commands: string[];
  files: InitramfsFile[];
  modulesDir?: string;
  /** Module names (looked up in modulesDir) and .ko files, in command-line order. */
  modules: string[];
  loadModules: boolean;
  busybox?: string | false;
  gzip: boolean;
}

const VALUE_FLAGS = new Set(['o', 'output', 'list', 'init', 'run', 'file', 'modules-dir', 'module', 'busybox']);
const BOOL_FLAGS = new Set(['h', 'help', 'no-load-modules', 'no-busybox', 'no-gzip']);

/** Splits argv into a command; throws InitramfsUsageError for anything it does not understand. */
export function parseInitramfsArgs(argv: readonly string[]): InitramfsCommand {
  const c: InitramfsCommand = { help: false, commands: [], files: [], modules: [], loadModules: true, gzip: true };
  const once = (flag: string, key: 'list' | 'output' | 'initFile' | 'modulesDir', value: string): void => {
    if (c[key] !== undefined) throw new InitramfsUsageError(`${flag} given more than once`);
    c[key] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (!word.startsWith('-') || word === '-')
      throw new InitramfsUsageError(`unexpected argument '${word}' (see tsvmm initramfs --help)`);
    let name = word.replace(/^--?/, '');
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (word.startsWith('--') && eq > 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (BOOL_FLAGS.has(name)) {
      if (inline !== undefined) throw new InitramfsUsageError(`${word}: takes no value`);
      if (name === 'h' || name === 'help') c.help = true;
      else if (name === 'no-load-modules') c.loadModules = false;
      else if (name === 'no-busybox') {
        if (typeof c.busybox === 'string') throw new InitramfsUsageError('--busybox and --no-busybox: give one');
        c.busybox = false;
      } else c.gzip = false;
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new InitramfsUsageError(`unknown option '${word}' (see tsvmm initramfs --help)`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') throw new InitramfsUsageError(`${word} needs a value`);
    switch (name) {
      case 'o':
      case 'output':
        once(word, 'output', value);
        break;
      case 'list':
        once(word, 'list', value);
        break;
      case 'init':
        once(word, 'initFile', value);
        break;
      case 'modules-dir':
        once(word, 'modulesDir', value);
        break;
      case 'run':
        c.commands.push(value);
        break;
      case 'module':
        c.modules.push(value);
        break;
      case 'busybox':
        if (c.busybox !== undefined) throw new InitramfsUsageError('--busybox and --no-busybox: give one');
        c.busybox = value;
        break;
      case 'file': {
        const at = value.lastIndexOf('=');
        if (at <= 0 || at === value.length - 1) throw new InitramfsUsageError(`--file ${value}: expected HOST=GUEST`);
        c.files.push({ source: value.slice(0, at), path: value.slice(at + 1) });
        break;
      }
    }
  }
  if (c.help) return c;
  if (c.list !== undefined) {
    if (c.output !== undefined) throw new InitramfsUsageError('--list reads an image: drop -o');
    return c;
  }
  if (c.output === undefined) throw new InitramfsUsageError('missing -o FILE (where to write the initramfs)');
  if (c.initFile !== undefined && c.commands.length)
    throw new InitramfsUsageError('--run adds to the default init: with --init, put the commands in your script');
  return c;
}

/** A module argument that names a file rather than a module to look up. */
const isModuleFile = (m: string): boolean => m.endsWith('.ko') || m.includes('/');

/** The build options a command stands for (module names resolved against --modules-dir). */
export function initramfsOptionsFor(c: InitramfsCommand): { options: InitramfsOptions; builtin: string[] } {
  const modules: InitramfsModule[] = [];
  const builtin: string[] = [];
  const names = c.modules.filter((m) => !isModuleFile(m));
  if (names.length && c.modulesDir === undefined)
    throw new InitramfsUsageError(`--module ${names[0]}: a module name needs --modules-dir (or give the .ko file)`);
  const seen = new Set<string>();
  for (const m of c.modules) {
    let found: InitramfsModule[];
    if (isModuleFile(m)) found = [{ source: m }];
    else {
      const resolved = resolveKernelModules(c.modulesDir!, [m]);
      found = resolved.modules;
      builtin.push(...resolved.builtin);
    }
    for (const f of found) {
      const key = f.path ?? modulePathFromSource(f.source!) ?? f.source!;
      if (!seen.has(key)) {
        seen.add(key);
        modules.push(f);
      }
    }
  }
  return {
    options: {
      initFile: c.initFile,
      commands: c.commands,
      files: c.files,
      modules,
      loadModules: c.loadModules,
      busybox: c.busybox,
      gzip: c.gzip,
    },
    builtin: [...new Set(builtin)],
  };
}

const TYPE_CHAR = { file: '-', dir: 'd', symlink: 'l', chardev: 'c', blockdev: 'b' } as const;

function permString(perm: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  return (
    rwx(perm >> 6, (perm & 0o4000) !== 0, 's') +
    rwx(perm >> 3, (perm & 0o2000) !== 0, 's') +
    rwx(perm, (perm & 0o1000) !== 0, 't')
  );
}

/** One `ls -l`-like line per entry: type and mode, uid/gid, size (or major,minor), name (-> target). */
export function formatEntries(entries: readonly CpioEntry[]): string {
  return entries
    .map((e) => {
      const size =
        e.type === 'chardev' || e.type === 'blockdev' ? `${e.rdevMajor},${e.rdevMinor}` : String(e.data.length);
      const link = e.type === 'symlink' ? ` -> ${Buffer.from(e.data).toString('utf8')}` : '';
      return `${TYPE_CHAR[e.type]}${permString(e.perm)} ${e.uid}/${e.gid} ${size.padStart(9)} ${e.name}${link}`;
    })
    .join('\n');
}

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}
const processIo: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };

/** Runs `tsvmm initramfs ARGV`; returns the exit status. */
export function initramfsMain(argv: readonly string[], io: CliIo = processIo): number {
  let c: InitramfsCommand;
  try {
    c = parseInitramfsArgs(argv);
  } catch (e) {
    io.stderr(`tsvmm initramfs: ${(e as Error).message}\n`);
    return InitramfsExit.usage;
  }
  if (c.help) {
    io.stdout(`${INITRAMFS_USAGE}\n`);
    return InitramfsExit.ok;
  }
  try {
    if (c.list !== undefined) {
      io.stdout(`${formatEntries(readInitramfs(readFileSync(c.list)))}\n`);
      return InitramfsExit.ok;
    }
    const { options, builtin } = initramfsOptionsFor(c);
    const bytes = writeInitramfs(c.output!, options);
    const count = readInitramfs(bytes).length;
    const mods = options.modules?.length ? `, ${options.modules.length} kernel module(s)` : '';
    io.stdout(`tsvmm initramfs: wrote ${c.output} (${bytes.length} bytes, ${count} entries${mods})\n`);
    if (builtin.length) io.stdout(`tsvmm initramfs: built into the kernel, not added: ${builtin.join(', ')}\n`);
    return InitramfsExit.ok;
  } catch (e) {
    const status = e instanceof InitramfsUsageError ? InitramfsExit.usage : InitramfsExit.failed;
    io.stderr(`tsvmm initramfs: ${(e as Error).message.replace(/^initramfs: /, '')}\n`);
    return status;
  }
}
