// What the rig takes from Debian, fetched before it boots (there is no network inside) into a cache outside the
// repository: ~/.cache/tsvmm/rig, or $TSVMM_RIG_CACHE. Nothing is installed on the host.
//   - a kernel package, `apt-get download`ed and unpacked with `dpkg-deb -x` (the image and its modules);
//   - a newer QEMU than the host's, debootstrapped into its own tree (see qemu.ts for why).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { withDirLock } from '../support/dir-lock.js';

/** Something the rig needs from Debian could not be had; the message says what and how to get it. */
export class RigSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RigSetupError';
  }
}

/** Where the rig keeps what it fetched (not created). */
export function rigCachePath(): string {
  return process.env.TSVMM_RIG_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tsvmm', 'rig');
}

/** The rig cache, created on first use. */
export function rigCacheDir(): string {
  const dir = rigCachePath();
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

/** Runs a command to completion; a failure is a RigSetupError quoting its last line of output. */
export function runOrThrow(cmd: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: options.cwd,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: options.timeoutMs ?? 600_000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) {
    const lines = `${r.stderr ?? ''}\n${r.stdout ?? ''}\n${r.error?.message ?? ''}`.split('\n').map((l) => l.trim());
    const last = lines.filter((l) => l && !l.startsWith('W: ')).pop() ?? '';
    throw new RigSetupError(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})${last ? `: ${last}` : ''}`);
  }
  return r.stdout;
}

/** The package a meta package (e.g. linux-image-amd64) depends on now, as apt sees it. */
export function resolveMetaPackage(meta: string, pattern: RegExp): string {
  const find = (): string | undefined => {
    const r = spawnSync('apt-cache', ['depends', meta], { encoding: 'utf8' });
    return r.status === 0 ? pattern.exec(r.stdout)?.[0] : undefined;
  };
  let pkg = find();
  if (!pkg) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    pkg = find();
  }
  if (!pkg) throw new RigSetupError(`apt knows no ${meta} (run apt-get update on a Debian host)`);
  return pkg;
}

/**
 * The unpacked tree of Debian package `pkg` in the cache (downloaded and unpacked once; later calls only look).
 * Concurrent callers are serialised by a lock; a half-unpacked tree is never seen (it is renamed into place).
 */
export function unpackedPackage(pkg: string): string {
  const cache = rigCacheDir();
  const root = join(cache, pkg);
  if (existsSync(root)) return root;
  for (const cmd of ['apt-get', 'dpkg-deb']) {
    if (!hasCommand(cmd))
      throw new RigSetupError(`${cmd} is not available: the rig takes its kernel from Debian's packages`);
  }
  return withDirLock(join(cache, `.lock-${pkg}`), () => {
    if (existsSync(root)) return root;
    const work = join(cache, `.fetch-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work);
    try {
      runOrThrow('apt-get', ['download', '-q', pkg], { cwd: work });
      const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
      if (!deb) throw new RigSetupError(`apt-get download ${pkg} left no .deb`);
      runOrThrow('dpkg-deb', ['-x', join(work, deb), join(work, 'root')]);
      renameSync(join(work, 'root'), root);
      return root;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

/** Debian's mirror for debootstrap: $TSVMM_RIG_MIRROR, else the one Debian's own images use. */
function mirror(): string {
  return process.env.TSVMM_RIG_MIRROR ?? 'http://deb.debian.org/debian';
}

/**
 * A Debian `suite` tree holding `packages`, made once with debootstrap (needs root; ~1 min and ~400 MB). Used to run
 * a newer QEMU than the host's straight from the tree, through the tree's own dynamic loader.
 */
export function debootstrapTree(name: string, suite: string, packages: string[]): string {
  const cache = rigCacheDir();
  const root = join(cache, name);
  const done = join(root, '.tsvmm-complete');
  if (existsSync(done)) return root;
  if (!hasCommand('debootstrap')) throw new RigSetupError('debootstrap is not installed (apt-get install debootstrap)');
  if (process.getuid?.() !== 0) throw new RigSetupError('debootstrap needs root');
  return withDirLock(join(cache, `.lock-${name}`), () => {
    if (existsSync(done)) return root;
    const work = join(cache, `.debootstrap-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    try {
      runOrThrow('debootstrap', ['--variant=minbase', `--include=${packages.join(',')}`, suite, work, mirror()], {
        timeoutMs: 1_200_000,
      });
      rmSync(root, { recursive: true, force: true });
      renameSync(work, root);
      writeFileSync(done, `${suite} ${packages.join(' ')}\n`);
      return root;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}
