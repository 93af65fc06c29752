// Assembling tiny flat guests at test time (GNU as + ld → raw binary), cached in <repo>/build/asm/ by a hash of
// the source. For tests that need one precise instruction sequence (a triple fault, an instruction the emulator
// rejects); full test guests live in examples/guests/.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cc.js';

export const asmBuildDir = join(repoRoot, 'build', 'asm');

/**
 * Returns the path of a raw binary assembled from `source` (AT&T syntax; start it with `.code16`/`.code32`/
 * `.code64` as needed), linked to run at `org`.
 */
export function assembleFlat(source: string, org = 0x1000): string {
  const hash = createHash('sha256').update(`${org}\0${source}`).digest('hex').slice(0, 16);
  const bin = join(asmBuildDir, `${hash}.bin`);
  if (existsSync(bin)) return bin;
  mkdirSync(asmBuildDir, { recursive: true });
  const base = join(asmBuildDir, `${hash}.${process.pid}`);
  writeFileSync(`${base}.S`, source);
  try {
    execFileSync('as', ['--64', '-o', `${base}.o`, `${base}.S`], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync(
      'ld',
      ['-m', 'elf_x86_64', `-Ttext=0x${org.toString(16)}`, '--oformat', 'binary', '-o', `${base}.bin`, `${base}.o`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    renameSync(`${base}.bin`, bin);
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`asm: assembling failed:\n${err.stderr?.toString() ?? err.message}`);
  } finally {
    for (const ext of ['S', 'o', 'bin']) rmSync(`${base}.${ext}`, { force: true });
  }
  return bin;
}
