// Where benchmark results go: <repo>/build/bench/<name>.json, with enough about the host to read them later.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../test/support/cc.js';
import { benchWhere } from './where.js';

export const benchOutputDir = join(repoRoot, 'build', 'bench');

/** Scratch files of one bench run (guest output, stamps): under build/bench/tmp/, never in the source tree. */
export function scratchDir(name: string): string {
  const dir = join(benchOutputDir, 'tmp', `${name}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Removes a scratch directory (the exits bench leaves ~20 MB of guest output in it). */
export function removeScratch(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The host facts that change what a number means. */
export function hostInfo(): Record<string, unknown> {
  const where = benchWhere();
  return {
    where: where.rig ? 'rig (nested KVM under QEMU TCG: read the ratios, not the times)' : 'native',
    node: process.version,
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kvmBackend: where.kvm === 'pvm' ? "pvm (guest code runs in KVM's instruction emulator)" : (where.kvm ?? 'unknown'),
  };
}

/** Writes the result JSON and returns its path. */
export function writeResult(name: string, result: Record<string, unknown>): string {
  mkdirSync(benchOutputDir, { recursive: true });
  const path = join(benchOutputDir, `${name}.json`);
  writeFileSync(
    path,
    `${JSON.stringify({ bench: name, date: new Date().toISOString(), host: hostInfo(), ...result }, null, 2)}\n`,
  );
  return path;
}
