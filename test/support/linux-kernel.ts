// A real Linux kernel for tests: Debian's linux-image-cloud-amd64, fetched with `apt-get download` (never installed)
// into <repo>/build/linux/ and kept there. Gives the bzImage (/boot/vmlinuz-*) and the uncompressed ELF vmlinux
// extracted from it the way the kernel's scripts/extract-vmlinux does: find a compressed payload by its magic
// (the setup header's payload_offset first), decompress it with the system tool, keep the result if it is a whole
// ELF file. Debian's cloud kernel is LZ4; gzip, xz, zstd, bzip2 and lzma are handled the same way.
//
// When apt, the network or a decompressor is missing, debianKernel() returns a one-line reason instead (for
// test/support/skip.ts testIf). Test files run in parallel: one process fetches under a lock, the others wait.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cc.js';
import { LockTimeoutError, withDirLock } from './dir-lock.js';
import { parseSetupHeader } from '../../src/boot/linux/setup-header.js';

export const linuxBuildDir = join(repoRoot, 'build', 'linux');
const META_PACKAGE = 'linux-image-cloud-amd64';
const CACHE_FILE = join(linuxBuildDir, 'kernel.json');
const LOCK_DIR = join(linuxBuildDir, '.lock');
const LOCK_WAIT_MS = 300_000;

export interface DebianKernel {
  /** The bzImage as Debian ships it (/boot/vmlinuz-<release>). */
  bzImage: string;
  /** The uncompressed ELF vmlinux extracted from it. */
  vmlinux: string;
  /** e.g. "6.1.0-56-cloud-amd64". */
  release: string;
  /** The package it came from, e.g. "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb". */
  package: string;
}

export type KernelOrReason = { kernel: DebianKernel; reason: null } | { kernel: null; reason: string };

class Unavailable extends Error {}

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    const last =
      `${r.stderr ?? ''}${r.error?.message ?? ''}`
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('W: '))
        .pop() ?? '';
    throw new Unavailable(`${cmd} ${args.join(' ')} failed${last ? `: ${last}` : ''}`);
  }
  return r.stdout;
}

/** `apt-get download pkg` into `dir` (one `apt-get update` retry when the package lists are missing or old). */
function aptDownload(pkg: string, dir: string): string {
  try {
    run('apt-get', ['download', '-q', pkg], dir);
  } catch {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    run('apt-get', ['download', '-q', pkg], dir);
  }
  const deb = readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new Unavailable(`apt-get download ${pkg} left no .deb`);
  return join(dir, deb);
}

interface Format {
  name: string;
  magic: number[];
  tool: string;
  args: string[];
  pkg: string;
}

/** Compressed-payload magics, as scripts/extract-vmlinux searches for them. */
const FORMATS: Format[] = [
  { name: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18], tool: 'lz4', args: ['-dc'], pkg: 'lz4' },
  { name: 'gzip', magic: [0x1f, 0x8b, 0x08], tool: 'gzip', args: ['-dc'], pkg: 'gzip' },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: 'xz', args: ['-dc'], pkg: 'xz-utils' },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd], tool: 'zstd', args: ['-dc'], pkg: 'zstd' },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68], tool: 'bzip2', args: ['-dc'], pkg: 'bzip2' },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00, 0x00], tool: 'xz', args: ['--format=lzma', '-dc'], pkg: 'xz-utils' },
];

function startsWith(bytes: Uint8Array, at: number, magic: number[]): boolean {
  return at + magic.length <= bytes.length && magic.every((b, i) => bytes[at + i] === b);
}

/** True if `bytes` is a complete ELF64 file: magic, and the section header table inside the file. */
function isWholeElf(bytes: Buffer): boolean {
  if (bytes.length < 64 || !startsWith(bytes, 0, [0x7f, 0x45, 0x4c, 0x46]) || bytes[4] !== 2) return false;
  const shoff = Number(bytes.readBigUInt64LE(40));
  return shoff + bytes.readUInt16LE(60) * bytes.readUInt16LE(58) <= bytes.length;
}

function ensureTool(f: Format): void {
  if (hasCommand(f.tool)) return;
  // The decompressor is a small Debian package; install it once rather than skip (lz4 is not there by default).
  spawnSync('apt-get', ['install', '-y', '-qq', f.pkg], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!hasCommand(f.tool))
    throw new Unavailable(
      `the kernel payload is ${f.name}-compressed and '${f.tool}' is not installed (apt-get install ${f.pkg})`,
    );
}

/**
 * The uncompressed ELF vmlinux inside a bzImage, like scripts/extract-vmlinux: try the payload the setup header
 * points at, then every offset where a known compression magic occurs, until one decompresses to a whole ELF.
 */
export function extractVmlinux(bzImage: Uint8Array): { vmlinux: Buffer; format: string; offset: number } {
  const candidates: { at: number; f: Format }[] = [];
  try {
    const h = parseSetupHeader(bzImage);
    const at = h.setupSize + h.payloadOffset;
    const f = h.payloadLength ? FORMATS.find((x) => startsWith(bzImage, at, x.magic)) : undefined;
    if (f) candidates.push({ at, f });
  } catch {
    /* not a valid header: scan only */
  }
  for (const f of FORMATS) {
    let found = 0;
    for (let at = 0; at + f.magic.length <= bzImage.length && found < 4; at++) {
      if (bzImage[at] === f.magic[0] && startsWith(bzImage, at, f.magic)) {
        candidates.push({ at, f });
        found++;
      }
    }
  }
  const tried: string[] = [];
  for (const { at, f } of candidates) {
    ensureTool(f);
    // Like extract-vmlinux, ignore the tool's status: trailing bytes after the stream (the size word a kernel
    // appends, padding, a signature) make some tools complain after writing everything.
    const r = spawnSync(f.tool, f.args, { input: bzImage.subarray(at), maxBuffer: 1 << 30 });
    if (r.stdout && isWholeElf(r.stdout)) return { vmlinux: r.stdout, format: f.name, offset: at };
    tried.push(`${f.name}@0x${at.toString(16)}`);
  }
  throw new Unavailable(
    `no compressed payload in the bzImage decompressed to an ELF vmlinux (tried ${tried.join(', ') || 'nothing'})`,
  );
}

function readCache(): DebianKernel | null {
  try {
    const k = JSON.parse(readFileSync(CACHE_FILE, 'utf8')) as DebianKernel;
    return existsSync(k.bzImage) && existsSync(k.vmlinux) ? k : null;
  } catch {
    return null;
  }
}

function fetchKernel(): DebianKernel {
  for (const cmd of ['apt-get', 'dpkg-deb'])
    if (!hasCommand(cmd)) throw new Unavailable(`${cmd} is not available (not a Debian host)`);
  const tmp = join(linuxBuildDir, `tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    // The meta package only depends on the versioned image package, which holds the kernel.
    const meta = aptDownload(META_PACKAGE, tmp);
    const depends = run('dpkg-deb', ['-f', meta, 'Depends']);
    const real = /linux-image-[A-Za-z0-9.+~-]+/.exec(depends)?.[0];
    if (!real) throw new Unavailable(`${META_PACKAGE} depends on no linux-image package ("${depends.trim()}")`);
    const deb = aptDownload(real, tmp);
    const root = join(tmp, 'root');
    run('dpkg-deb', ['-x', deb, root]);
    const vmlinuz = readdirSync(join(root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Unavailable(`${real} has no /boot/vmlinuz-*`);
    const release = vmlinuz.slice('vmlinuz-'.length);
    const bzImage = join(linuxBuildDir, vmlinuz);
    const vmlinux = join(linuxBuildDir, `vmlinux-${release}`);
    const bzBytes = readFileSync(join(root, 'boot', vmlinuz));
    const { vmlinux: elf } = extractVmlinux(bzBytes);
    copyFileSync(join(root, 'boot', vmlinuz), `${bzImage}.tmp`);
    renameSync(`${bzImage}.tmp`, bzImage);
    writeFileSync(`${vmlinux}.tmp`, elf);
    renameSync(`${vmlinux}.tmp`, vmlinux);
    const pkgName = deb.slice(tmp.length + 1);
    const kernel: DebianKernel = { bzImage, vmlinux, release, package: pkgName };
    writeFileSync(`${CACHE_FILE}.tmp`, JSON.stringify(kernel, null, 2));
    renameSync(`${CACHE_FILE}.tmp`, CACHE_FILE);
    return kernel;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

let memo: KernelOrReason | null = null;

/**
 * The Debian cloud kernel (bzImage and extracted vmlinux), fetched once into build/linux/ and reused; or, when it
 * cannot be had here, a one-line reason to skip with.
 */
export function debianKernel(): KernelOrReason {
  if (memo) return memo;
  const cached = readCache();
  if (cached) {
    memo = { kernel: cached, reason: null };
    return memo;
  }
  try {
    mkdirSync(linuxBuildDir, { recursive: true });
    const kernel = withDirLock(LOCK_DIR, () => readCache() ?? fetchKernel(), LOCK_WAIT_MS);
    memo = { kernel, reason: null };
  } catch (e) {
    if (!(e instanceof Unavailable || e instanceof LockTimeoutError)) throw e;
    memo = { kernel: null, reason: `no Debian kernel: ${e.message}` };
  }
  return memo;
}

/** The kernel's bytes: { bzImage, vmlinux } read into memory (for loader tests). */
export function readDebianKernel(k: DebianKernel): { bzImage: Uint8Array; vmlinux: Uint8Array } {
  // Plain Uint8Arrays (not Buffers), so they compare equal to bytes read back from guest memory.
  const plain = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return { bzImage: plain(readFileSync(k.bzImage)), vmlinux: plain(readFileSync(k.vmlinux)) };
}
