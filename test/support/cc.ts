// Compiling small C programs at test time (header checks, reference implementations). Executables are cached in
// <repo>/build/cc/, keyed by a hash of the source and flags, so a second run costs nothing. The repository root is
// found from this file's own location (the directory holding package.json), not hard-coded.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`cc: no package.json above ${from}`);
  }
}

export const repoRoot = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
export const ccBuildDir = join(repoRoot, 'build', 'cc');

export interface CompileOptions {
  /** A short name for the executable (letters, digits, - and _), used in the cache file name. */
  name: string;
  /** Extra compiler flags; the default is `-O0 -Wall -Werror`. */
  flags?: string[];
  /** The compiler (default `gcc`, or $CC). */
  cc?: string;
}

/** Compiles `source` (C) and returns the path of the executable; reuses a cached build of the same source+flags. */
export function compileC(source: string, options: CompileOptions): string {
  if (!/^[A-Za-z0-9_-]+$/.test(options.name)) throw new Error(`cc: bad program name ${JSON.stringify(options.name)}`);
  const cc = options.cc ?? process.env.CC ?? 'gcc';
  const flags = options.flags ?? ['-O0', '-Wall', '-Werror'];
  const hash = createHash('sha256')
    .update(cc)
    .update('\0')
    .update(flags.join('\0'))
    .update('\0')
    .update(source)
    .digest('hex')
    .slice(0, 16);
  const exe = join(ccBuildDir, `${options.name}-${hash}`);
  if (existsSync(exe)) return exe;

  mkdirSync(ccBuildDir, { recursive: true });
  // Build under a unique name and rename: test files run in parallel and may compile the same program.
  const tmp = `${exe}.${process.pid}.tmp`;
  const src = `${tmp}.c`;
  writeFileSync(src, source);
  try {
    execFileSync(cc, [...flags, '-o', tmp, src], { stdio: ['ignore', 'pipe', 'pipe'] });
    renameSync(tmp, exe);
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`cc: ${cc} failed for ${options.name}:\n${err.stderr?.toString() ?? err.message}`);
  } finally {
    rmSync(src, { force: true });
    rmSync(tmp, { force: true });
  }
  return exe;
}

/** Runs a compiled program and returns its stdout (throws with its stderr if it exits non-zero). */
export function runC(path: string, args: string[] = []): string {
  try {
    return execFileSync(path, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stderr?: string; status?: number; message: string };
    throw new Error(`cc: ${path} exited with ${err.status ?? '?'}:\n${err.stderr ?? err.message}`);
  }
}
