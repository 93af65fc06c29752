// bench/cpr-file: writing a RAM-bearing checkpoint through the page cache against with O_DIRECT, side by side in
// one run. For each RAM size (256 MiB, 1 GiB, 2 GiB) and each round, the same RAM (anonymous mmap memory filled with
// random bytes, page-aligned like guest RAM, so nothing is a hole and the direct path copies nothing) is written by
// writeCheckpoint both ways, alternating which goes first: the time to a durable file (write + fdatasync + rename),
// MB/s, the file's pages left in the page cache (mincore), and the change of /proc/meminfo's Cached. No KVM needed:
// `node dist/bench/cpr-file.js` (or `node dist/bench/run.js cpr-file`).
//
// Environment: TSVMM_BENCH_FILE_SIZES (MiB, comma-separated; default 256,1024,2048), TSVMM_BENCH_FILE_ROUNDS (rounds
// per size and mode; default 3), TSVMM_BENCH_FILE_DIR (the directory to write in: its file system is what is
// measured; default build/bench/tmp, on the repository's file system).
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { jsonSection, writeCheckpoint, type RamSource, type WriteResult } from '../cpr/file/checkpoint-file.js';
import * as libc from '../src/sys/libc.js';
import { residentBytes } from '../src/sys/page-cache.js';
import { envInt } from './lib/env.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere } from './lib/where.js';
import { median } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';

const MIB = 1 << 20;
const log = (line: string) => process.stderr.write(`bench/cpr-file: ${line}\n`);

function sizesMiB(): number[] {
  const text = process.env.TSVMM_BENCH_FILE_SIZES;
  if (!text) return [256, 1024, 2048];
  return text.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`TSVMM_BENCH_FILE_SIZES=${text}: expected MiB counts`);
    return n;
  });
}

/** Page cache in use on the host (kB → bytes), as /proc/meminfo's Cached line. */
function cachedBytes(): number {
  const match = /^Cached:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) * 1024 : NaN;
}

/** `size` bytes of anonymous mapped memory, random, as the writer reads guest RAM (views, no copies). */
function guestLikeRam(size: number): { source: RamSource; release: () => void } {
  const address = libc.mmap(null, size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1);
  const bytes = new Uint8Array(libc.view(address, size));
  for (let at = 0; at < size; at += 64 * MIB) randomFillSync(bytes.subarray(at, Math.min(size, at + 64 * MIB)));
  return {
    source: { size, read: (offset, length) => bytes.subarray(offset, offset + length) },
    release: () => libc.munmap(address, size),
  };
}

interface Sample {
  ms: number;
  writeMs: number;
  fsyncMs: number;
  residentMiB: number;
  cachedDeltaMiB: number;
  ramIo: WriteResult['ramIo'];
}

function writeOnce(path: string, source: RamSource, directIo: boolean): Sample {
  rmSync(path, { force: true }); // the previous round's file and its cached pages go first
  const cachedBefore = cachedBytes();
  const t0 = process.hrtime.bigint();
  const result = writeCheckpoint(path, { sections: [jsonSection('config', 'machine', {})], ram: source }, { directIo });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const sample = {
    ms,
    writeMs: result.timings.writeNs / 1e6,
    fsyncMs: result.timings.fsyncNs / 1e6,
    residentMiB: residentBytes(path) / MIB,
    cachedDeltaMiB: (cachedBytes() - cachedBefore) / MIB,
    ramIo: result.ramIo,
  };
  rmSync(path, { force: true });
  return sample;
}

function main(): void {
  const where = benchWhere();
  const rounds = envInt('TSVMM_BENCH_FILE_ROUNDS', 3);
  const scratch = process.env.TSVMM_BENCH_FILE_DIR
    ? mkdtempSync(join(process.env.TSVMM_BENCH_FILE_DIR, 'tsvmm-bench-cpr-file-'))
    : scratchDir('cpr-file');
  const fsType = `0x${statfsSync(scratch).type.toString(16)}`;
  process.stdout.write(`${where.line}\nwriting in ${scratch} (file system magic ${fsType}), ${rounds} rounds\n`);
  const rows: Cell[][] = [];
  const results: Record<string, unknown>[] = [];
  let fallback: string | undefined;
  try {
    for (const mib of sizesMiB()) {
      const size = mib * MIB;
      log(`${mib} MiB: filling RAM`);
      const ram = guestLikeRam(size);
      const samples: Record<'buffered' | 'direct', Sample[]> = { buffered: [], direct: [] };
      try {
        for (let r = 0; r < rounds; r++) {
          const order = r % 2 === 0 ? (['buffered', 'direct'] as const) : (['direct', 'buffered'] as const);
          for (const mode of order) {
            const s = writeOnce(join(scratch, 'vm.cpr'), ram.source, mode === 'direct');
            if (mode === 'direct' && s.ramIo?.mode !== 'direct') fallback = s.ramIo?.reason;
            samples[mode].push(s);
            log(`${mib} MiB ${mode} round ${r + 1}: ${round(s.ms)} ms, ${round(s.residentMiB)} MiB resident`);
          }
        }
      } finally {
        ram.release();
      }
      for (const mode of ['buffered', 'direct'] as const) {
        const ss = samples[mode];
        const ms = median(ss.map((s) => s.ms));
        rows.push([
          `${mib} MiB`,
          mode === 'direct' && fallback ? 'direct (fell back)' : mode,
          round(size / MIB / (ms / 1000)),
          round(ms),
          round(median(ss.map((s) => s.writeMs))),
          round(median(ss.map((s) => s.fsyncMs))),
          round(median(ss.map((s) => s.residentMiB))),
          round(median(ss.map((s) => s.cachedDeltaMiB))),
        ]);
        results.push({ sizeMiB: mib, mode, samples: ss });
      }
    }
  } finally {
    if (process.env.TSVMM_BENCH_FILE_DIR) rmSync(scratch, { recursive: true, force: true });
    else removeScratch(scratch);
  }
  process.stdout.write(
    `${formatTable(
      'RAM-bearing checkpoint write, page cache against O_DIRECT (medians)',
      ['RAM', 'RAM written', 'MiB/s', 'total ms', 'write ms', 'fsync ms', 'file cached MiB', 'Cached Δ MiB'],
      rows,
    )}\n`,
  );
  if (fallback) process.stdout.write(`O_DIRECT was not used here: ${fallback}\n`);
  const path = writeResult('cpr-file', { directory: scratch, fileSystemMagic: fsType, rounds, results, fallback });
  process.stdout.write(`results: ${path}\n`);
}

main();
