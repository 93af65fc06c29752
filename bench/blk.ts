// bench/blk: 4 KiB virtio-blk request throughput (IOPS) of the same C guest (examples/guests/virtio-blk-bench.c)
// under tsvmm and under QEMU, per phase: sequential and random writes and reads at queue depth 1, sequential reads
// at queue depth 16. The guest polls the used ring (no interrupts) and only prints a marker line before and after
// each phase; this process stamps every COM1 line as it arrives through the pipe and times a phase from the end of
// its "start" line to the first byte of its "done" line — the same method for both VMMs. See docs/bench.md.
// `node dist/bench/blk.js` (or `node dist/bench/run.js blk`)
//
// Environment: TSVMM_BENCH_BLK_COUNT (requests per phase, default 2000), TSVMM_BENCH_BLK_RUNS (runs per VMM case,
// default 5), TSVMM_BENCH_BLK_MIB (disk size, default 16), TSVMM_BENCH_BLK_QD (depth of the last phase, default 16),
// TSVMM_BENCH_BLK_DIR (where the disk image goes, default /dev/shm: tmpfs, so the host's disk is not measured),
// TSVMM_BENCH_BLK_CLI (the tsvmm command, default dist/tsvmm.mjs if built), TSVMM_QEMU (the QEMU binary).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildGuest } from '../examples/guests/build.js';
import { QEMU_BINARY, qemuAccel } from '../examples/guests/qemu-runner.js';
import { repoRoot } from '../test/support/cc.js';
import { envInt } from './lib/env.js';
import { benchOutputDir, removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, rigDefault } from './lib/where.js';
import { summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { cliPath, GUEST_EXIT_OK } from './lib/tsvmm.js';

const BLOCK_BYTES = 4096;
const RAM = '64M';
const RUN_TIMEOUT_S = 600;
/** tmpfs: a write to an ext4 image can wait for the host's own writeback (stable pages), which is not the VMM. */
const DEFAULT_IMAGE_DIR = '/dev/shm';
const GUEST_PREFIX = 'blk-bench: ';

/** The guest's phases in the order it runs them (the last one's depth comes from qd=). */
export const PHASES = ['seq-write qd1', 'seq-read qd1', 'rand-read qd1', 'rand-write qd1', 'seq-read qdN'] as const;

export type Vmm = 'qemu' | 'tsvmm';

export interface BlkCase {
  /** Column label. */
  label: string;
  vmm: Vmm;
  /** QEMU's -drive cache= mode; tsvmm always goes through the page cache (pread/pwrite on a plain fd). */
  cache?: 'writeback' | 'none';
  /** false: `ioeventfd=off`, every queue kick exits to the VMM (how much the in-kernel notification saves). */
  ioeventfd?: boolean;
}

/** One COM1 line: when its first byte and its newline arrived (process.hrtime, ns). */
interface StampedLine {
  text: string;
  firstNs: bigint;
  endNs: bigint;
}

export interface PhaseResult {
  name: string;
  requests: number;
  seconds: number;
  iops: number;
}

export interface BlkRun {
  phases: PhaseResult[];
  wallMs: number;
  header: string;
}

/** A raw image of `blocks` 4 KiB blocks, block b stamped with b (u32 LE) in its first 4 bytes, as the guest checks. */
export function writeStampedImage(path: string, blocks: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(256 * BLOCK_BYTES);
    const perChunk = chunk.length / BLOCK_BYTES;
    for (let b = 0; b < blocks; b += perChunk) {
      chunk.fill(0);
      const n = Math.min(perChunk, blocks - b);
      for (let i = 0; i < n; i++) chunk.writeUInt32LE(b + i, i * BLOCK_BYTES);
      writeSync(fd, chunk, 0, n * BLOCK_BYTES, b * BLOCK_BYTES);
    }
  } finally {
    closeSync(fd);
  }
}

/** The first block whose stamp is not its number (a write that landed in the wrong place), or null. */
export function firstBadStamp(path: string, blocks: number): number | null {
  const fd = openSync(path, 'r');
  try {
    const word = Buffer.alloc(4);
    for (let b = 0; b < blocks; b++) {
      if (readSync(fd, word, 0, 4, b * BLOCK_BYTES) !== 4 || word.readUInt32LE(0) !== b) return b;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

/** Splits a byte stream into lines, stamping each with the arrival time of its first byte and of its newline. */
class LineStamper {
  readonly lines: StampedLine[] = [];
  private text = '';
  private firstNs: bigint | null = null;

  push(chunk: string, now: bigint): void {
    for (const ch of chunk) {
      if (ch === '\r') continue;
      if (this.firstNs === null) this.firstNs = now;
      if (ch === '\n') {
        this.lines.push({ text: this.text, firstNs: this.firstNs, endNs: now });
        this.text = '';
        this.firstNs = null;
      } else {
        this.text += ch;
      }
    }
  }
}

/**
 * Phase timings from the guest's stamped lines: from the end of `phase X start` to the first byte of
 * `phase X done N requests 0 errors`. Throws on a missing or failed phase.
 */
export function phaseTimings(lines: readonly StampedLine[]): PhaseResult[] {
  const out: PhaseResult[] = [];
  let start: { name: string; endNs: bigint } | null = null;
  for (const l of lines) {
    if (!l.text.startsWith(GUEST_PREFIX)) continue;
    const rest = l.text.slice(GUEST_PREFIX.length);
    const s = /^phase (\S+ qd\d+) start$/.exec(rest);
    if (s) {
      start = { name: s[1], endNs: l.endNs };
      continue;
    }
    const d = /^phase (\S+ qd\d+) done (\d+) requests (\d+) errors$/.exec(rest);
    if (d) {
      if (!start || start.name !== d[1]) throw new Error(`guest: "${rest}" without its start line`);
      if (d[3] !== '0') throw new Error(`guest: phase ${d[1]}: ${d[3]} requests failed`);
      const seconds = Number(l.firstNs - start.endNs) / 1e9;
      const requests = Number(d[2]);
      out.push({ name: d[1], requests, seconds, iops: requests / seconds });
      start = null;
    }
  }
  return out;
}

/** The command line for one run: the same guest, disk and device options under either VMM. */
export function blkCommand(
  c: BlkCase,
  o: { kernel: string; disk: string; append: string; tsvmmCli: string },
): string[] {
  const drive = `file=${o.disk},if=none,id=d0,format=raw${c.cache ? `,cache=${c.cache}` : ''}`;
  const common = [
    '-m',
    RAM,
    '-no-reboot',
    '-serial',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel',
    o.kernel,
    '-append',
    o.append,
    '-drive',
    drive,
    '-device',
    `virtio-blk-pci,drive=d0,disable-legacy=on${c.ioeventfd === false ? ',ioeventfd=off' : ''}`,
  ];
  return c.vmm === 'qemu'
    ? [QEMU_BINARY, '-accel', qemuAccel(), '-M', 'pc', '-nodefaults', '-display', 'none', ...common]
    : [process.execPath, o.tsvmmCli, 'run', ...common, '--timeout', String(RUN_TIMEOUT_S)];
}

/** Runs the guest once; resolves with its phase timings, or rejects with what went wrong (and the output). */
export function runBlk(argv: readonly string[]): Promise<BlkRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const stamper = new LineStamper();
    let stderr = '';
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => stamper.push(d, process.hrtime.bigint()));
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (RUN_TIMEOUT_S + 30) * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const serial = stamper.lines.map((l) => l.text).join('\n');
      const why = (what: string) =>
        new Error(
          `${argv[0] === process.execPath ? 'tsvmm' : 'qemu'}: ${what}\n` +
            `command: ${argv.join(' ')}\n--- COM1 ---\n${serial}\n--- stderr ---\n${stderr.trim()}`,
        );
      if (status !== GUEST_EXIT_OK || !stamper.lines.some((l) => l.text === `${GUEST_PREFIX}all ok`)) {
        reject(why(`exit status ${status ?? signal}, expected ${GUEST_EXIT_OK} and "${GUEST_PREFIX}all ok"`));
        return;
      }
      try {
        const phases = phaseTimings(stamper.lines);
        if (phases.length !== PHASES.length)
          throw new Error(`${phases.length} phases timed, expected ${PHASES.length}`);
        const header =
          stamper.lines.find((l) => l.text.startsWith(`${GUEST_PREFIX}capacity `))?.text.slice(GUEST_PREFIX.length) ??
          '';
        resolve({ phases, wallMs, header });
      } catch (e) {
        reject(why((e as Error).message));
      }
    });
  });
}

function qemuUnavailable(): string | null {
  const r = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${QEMU_BINARY} is not installed`;
  if (r.status !== 0) return `${QEMU_BINARY} --version failed`;
  return null;
}

interface Measured {
  cases: BlkCase[];
  runs: Map<string, BlkRun[]>;
  failures: Map<string, string>;
}

/** Runs every case `rounds` times, interleaved (one run of each per round) so drift on a shared host hits all. */
async function measure(
  cases: BlkCase[],
  rounds: number,
  disk: string,
  blocks: number,
  command: (c: BlkCase) => string[],
  log: (line: string) => void,
): Promise<Measured> {
  const runs = new Map<string, BlkRun[]>(cases.map((c) => [c.label, []]));
  const failures = new Map<string, string>();
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      if (failures.has(c.label)) continue;
      try {
        const r = await runBlk(command(c));
        const bad = firstBadStamp(disk, blocks);
        if (bad !== null) throw new Error(`after the run, block ${bad}'s stamp is wrong (a write went astray)`);
        runs.get(c.label)!.push(r);
        log(
          `${c.label} run ${round + 1}/${rounds}: ${r.phases.map((p) => `${p.name} ${Math.round(p.iops)}`).join(', ')} IOPS (${(r.wallMs / 1000).toFixed(1)} s)`,
        );
      } catch (e) {
        failures.set(c.label, (e as Error).message);
        log(`${c.label} failed: ${(e as Error).message}`);
        writeStampedImage(disk, blocks); // whatever it did, the next case starts from the prepared image
      }
    }
  }
  return { cases, runs, failures };
}

const RATIO_BASE = 'QEMU writeback';

/** The table (median IOPS per phase and case, tsvmm's ratio to QEMU writeback) and the JSON per case. */
function report(m: Measured, phaseNames: readonly string[], title: string) {
  const iops = (label: string, i: number): Summary | null => {
    const rs = m.runs.get(label) ?? [];
    return rs.length ? summarize(rs.map((r) => r.phases[i].iops)) : null;
  };
  const rows: Cell[][] = phaseNames.map((name, i) => {
    const t = iops('tsvmm', i);
    const q = iops(RATIO_BASE, i);
    return [
      name,
      ...m.cases.map((c) => iops(c.label, i)?.median ?? null).map((v) => (v === null ? null : round(v))),
      t && q ? round(t.median / q.median) : null,
      t ? round(1e6 / t.median) : null,
      q ? round(1e6 / q.median) : null,
    ];
  });
  const header = [
    'phase (4 KiB)',
    ...m.cases.map((c) => `${c.label} IOPS`),
    `tsvmm/${RATIO_BASE}`,
    'tsvmm µs/req',
    'QEMU wb µs/req',
  ];
  const json = m.cases.map((c) => ({
    ...c,
    failure: m.failures.get(c.label) ?? null,
    phases: phaseNames.map((name, i) => ({ name, iops: iops(c.label, i) })),
    wallMs: (m.runs.get(c.label) ?? []).map((r) => r.wallMs),
  }));
  return { table: formatTable(title, header, rows), json };
}

/** Null when files in `dir` open with O_DIRECT (QEMU's cache=none), else why not (tmpfs before Linux 6.6: EINVAL). */
function directIoRefused(dir: string): string | null {
  const probe = join(dir, `tsvmm-bench-blk-odirect-${process.pid}`);
  try {
    closeSync(openSync(probe, constants.O_CREAT | constants.O_RDWR | constants.O_DIRECT, 0o600));
    return null;
  } catch (e) {
    return `${dir} refuses O_DIRECT (${(e as NodeJS.ErrnoException).code})`;
  } finally {
    rmSync(probe, { force: true });
  }
}

export async function benchBlk(): Promise<void> {
  const COUNT = envInt('TSVMM_BENCH_BLK_COUNT', 2000);
  const RUNS = envInt('TSVMM_BENCH_BLK_RUNS', rigDefault(5, 3));
  const MIB = envInt('TSVMM_BENCH_BLK_MIB', 16);
  const QD = envInt('TSVMM_BENCH_BLK_QD', 16);
  const bundle = join(repoRoot, 'dist', 'tsvmm.mjs');
  const tsvmmCli = process.env.TSVMM_BENCH_BLK_CLI || (existsSync(bundle) ? bundle : cliPath);
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/blk [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  const guest = await buildGuest('virtio-blk-bench');
  const imageDir =
    process.env.TSVMM_BENCH_BLK_DIR || (existsSync(DEFAULT_IMAGE_DIR) ? DEFAULT_IMAGE_DIR : scratchDir('blk'));
  const disk = join(imageDir, `tsvmm-bench-blk-${process.pid}.img`);
  const blocks = MIB * 256;
  const append = `count=${COUNT} qd=${QD}`;
  const noQemu = qemuUnavailable();
  if (noQemu) log(`QEMU columns skipped: ${noQemu}`);
  const noDirect = noQemu ?? directIoRefused(imageDir);
  if (!noQemu && noDirect) log(`QEMU cache=none column skipped: ${noDirect}`);
  const cases: BlkCase[] = [
    ...(noQemu ? [] : ([{ label: RATIO_BASE, vmm: 'qemu', cache: 'writeback' }] as BlkCase[])),
    ...(noDirect ? [] : ([{ label: 'QEMU cache=none', vmm: 'qemu', cache: 'none' }] as BlkCase[])),
    { label: 'tsvmm', vmm: 'tsvmm' },
    { label: 'tsvmm ioeventfd=off', vmm: 'tsvmm', ioeventfd: false },
  ];
  let measured: Measured;
  try {
    writeStampedImage(disk, blocks);
    measured = await measure(
      cases,
      RUNS,
      disk,
      blocks,
      (c) => blkCommand(c, { kernel: guest.path, disk, append, tsvmmCli }),
      log,
    );
  } finally {
    rmSync(disk, { force: true });
    removeScratch(join(benchOutputDir, 'tmp', `blk-${process.pid}`));
  }

  const first = cases.map((c) => measured.runs.get(c.label)![0]).find((r) => r);
  const phaseNames = first ? first.phases.map((p) => p.name) : PHASES.map((p) => p.replace('qdN', `qd${QD}`));
  const title =
    `virtio-blk, ${COUNT} requests per phase, ${MIB} MiB disk in ${imageDir}, median of ${RUNS} runs ` +
    `(QEMU: ${noQemu ? 'not run' : `-accel ${qemuAccel()}`}; the guest polls, no interrupts)`;
  const { table, json } = report(measured, phaseNames, title);
  process.stdout.write(`${table}\n`);
  if (first) process.stdout.write(`guest: ${first.header}\n`);
  for (const [label, message] of measured.failures)
    process.stdout.write(`${label}: FAILED (${message.split('\n')[0]})\n`);
  const path = writeResult('blk', {
    requestsPerPhase: COUNT,
    runs: RUNS,
    diskMiB: MIB,
    imageDir,
    depth: QD,
    qemuAccel: noQemu ? null : qemuAccel(),
    tsvmmCli,
    guest: first?.header ?? null,
    cases: json,
    table,
  });
  log(`wrote ${path}`);
  if (measured.failures.size) process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchBlk();
}
