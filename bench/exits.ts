// bench/exits: port-I/O exits per second, tsvmm against a minimal C VMM running the same guest binary, and where
// device handlers should run (see docs/bench.md for the method). `node dist/bench/exits.js`
//
// Environment: TSVMM_BENCH_EXITS (OUTs per run, default 500000), TSVMM_BENCH_FORWARD_EXITS (OUTs per run of the
// forwarding prototypes, default 50000: a forwarded exit is ~10x slower), TSVMM_BENCH_RUNS (runs per case, default 3).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { envInt } from './lib/env.js';
import { median, summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, rigDefault } from './lib/where.js';
import { runTimed, expectStatus, type TimedRun } from './lib/spawn.js';
import { runTsvmm } from './lib/tsvmm.js';
import { LOAD_ADDRESS, outloopImage, smpOutloopImage, cReference, type CResult } from './exits/guests.js';
import { runPlacement, PLACEMENT_MODES, type PlacementMode } from './exits/placement.js';

const DEBUGCON_PORT = 0xe9;
const COM1_THR = 0x3f8;
/** The POST-code port: nothing in tsvmm claims it, so this is the bus's unclaimed-port path. */
const UNCLAIMED_PORT = 0x80;
const ADDR = `0x${LOAD_ADDRESS.toString(16)}`;

/** One way of running the outloop guest under the tsvmm CLI, and what the C reference does for the same port. */
interface CliCase {
  id: string;
  label: string;
  port: number;
  /** Device flags; `dir` is the scratch directory for output files. */
  args: (dir: string) => string[];
  /** Which C reference run this compares to: exits ignored, or each byte written to a file. */
  c: 'ignore' | 'sink';
  /** How the tsvmm rate is measured (see docs/bench.md). */
  method: 'differential' | 'stamps';
  /** A file in the scratch directory that must hold at least N bytes afterwards: proof that the device ran. */
  outputFile?: string;
}

const CLI_CASES: CliCase[] = [
  {
    id: 'unclaimed',
    label: 'unclaimed port 0x80',
    port: UNCLAIMED_PORT,
    c: 'ignore',
    method: 'differential',
    args: () => ['-serial', 'null'],
  },
  {
    id: 'debugcon-null',
    label: 'isa-debugcon 0xe9 -> null',
    port: DEBUGCON_PORT,
    c: 'ignore',
    method: 'differential',
    args: () => ['-serial', 'null', '-debugcon', 'null'],
  },
  {
    id: 'debugcon-file',
    label: 'isa-debugcon 0xe9 -> file',
    port: DEBUGCON_PORT,
    c: 'sink',
    method: 'differential',
    args: (dir) => ['-serial', 'null', '-debugcon', `file:${join(dir, 'debugcon.out')}`],
    outputFile: 'debugcon.out',
  },
  {
    id: 'serial-file',
    label: '16550 THR 0x3f8 -> file',
    port: COM1_THR,
    c: 'sink',
    method: 'differential',
    args: (dir) => ['-serial', `file:${join(dir, 'serial.out')}`],
    outputFile: 'serial.out',
  },
  {
    id: 'debugcon-stamps',
    label: 'isa-debugcon 0xe9 -> file, timestamps=on',
    port: DEBUGCON_PORT,
    c: 'sink',
    method: 'stamps',
    args: (dir) => [
      '-serial',
      'null',
      '-device',
      'isa-debugcon,chardev=stamps,timestamps=on',
      '-chardev',
      `file,id=stamps,path=${join(dir, 'stamps.txt')}`,
    ],
  },
];

function tsvmmArgs(image: string, extra: string[], smp = 1): string[] {
  return [
    '-m',
    '64M',
    '-smp',
    String(smp),
    '-device',
    'isa-debug-exit',
    '-device',
    `loader,file=${image},addr=${ADDR}`,
    ...extra,
  ];
}

async function runC(
  exe: string,
  image: string,
  port: number,
  cpus: number,
  sink?: string,
): Promise<{ result: CResult; run: TimedRun }> {
  const args = [image, ADDR, `0x${port.toString(16)}`, String(cpus), ...(sink ? [sink] : [])];
  const run = expectStatus(await runTimed(exe, args), 0, `kvm-exit-loop ${args.join(' ')}`);
  const result = JSON.parse(run.stdout.trim()) as CResult;
  if (result.exitStatus !== 0) throw new Error(`kvm-exit-loop: guest exited with value ${result.exitStatus}`);
  return { result, run };
}

/** Aggregate exits/s over all vCPUs, first exit of any to last exit of any (CLOCK_MONOTONIC in the C program). */
function cRate(r: CResult, expected: number): number {
  const count = r.cpus.reduce((n, c) => n + c.count, 0);
  if (count < expected) throw new Error(`kvm-exit-loop counted ${count} exits, expected ${expected}`);
  const first = Math.min(...r.cpus.map((c) => c.firstNs));
  const last = Math.max(...r.cpus.map((c) => c.lastNs));
  return (count - r.cpus.length) / ((last - first) / 1e9);
}

/** exits/s from the stamps file: (lines - 1) / (last stamp - first stamp). */
function stampsRate(path: string, expected: number): number {
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  if (lines.length !== expected) throw new Error(`${path}: ${lines.length} stamped bytes, expected ${expected}`);
  const stamp = (line: string) => BigInt(line.slice(0, line.indexOf(' ')));
  return (lines.length - 1) / (Number(stamp(lines[lines.length - 1]) - stamp(lines[0])) / 1e9);
}

const fmtRate = (s: Summary) => round(s.median);
const usPerExit = (rate: number) => round(1e6 / rate);
const spread = (s: Summary) => `${round(s.min / 1000)}k-${round(s.max / 1000)}k`;

export async function benchExits(): Promise<void> {
  const N = envInt('TSVMM_BENCH_EXITS', rigDefault(500_000, 50_000));
  const NF = envInt('TSVMM_BENCH_FORWARD_EXITS', rigDefault(50_000, 5_000));
  const RUNS = envInt('TSVMM_BENCH_RUNS', rigDefault(3, 1));
  const dir = scratchDir('exits');
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/exits [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  log(`building guests and the C reference (${N.toLocaleString('en-US')} OUTs per run, ${RUNS} runs per case)`);
  const cExe = cReference();
  const images = new Map<number, { full: string; empty: string }>();
  for (const port of new Set(CLI_CASES.map((c) => c.port))) {
    images.set(port, { full: await outloopImage(N, port), empty: await outloopImage(0, port) });
  }
  const forwardImage = await outloopImage(NF, DEBUGCON_PORT);
  const smp = {
    one: { full: await smpOutloopImage(N, DEBUGCON_PORT, 1), empty: await smpOutloopImage(0, DEBUGCON_PORT, 1) },
    two: { full: await smpOutloopImage(N, DEBUGCON_PORT, 2), empty: await smpOutloopImage(0, DEBUGCON_PORT, 2) },
  };
  const cSink = join(dir, 'c-sink.out');

  // Samples, filled round by round: every case runs once per round, so slow drift of the host hits all alike.
  const tsvmmMs = new Map<string, number[]>(); // case id → wall ms of full runs
  const tsvmmBaseMs = new Map<string, number[]>(); // case id → wall ms of 0-iteration runs
  const stampRates: number[] = [];
  const cRates = { ignore: [] as number[], sink: [] as number[], smp1: [] as number[], smp2: [] as number[] };
  const cWall = { full: [] as number[], empty: [] as number[] };
  const placement = new Map<PlacementMode, number[]>();
  const push = <K>(m: Map<K, number[]>, k: K, v: number) => {
    m.set(k, [...(m.get(k) ?? []), v]);
  };

  const smpCases = [
    { id: 'smp1', smp: 1, images: smp.one },
    { id: 'smp2', smp: 2, images: smp.two },
  ];

  for (let round = 1; round <= RUNS; round++) {
    log(`round ${round}/${RUNS}: C reference`);
    {
      const ignore = await runC(cExe, images.get(UNCLAIMED_PORT)!.full, UNCLAIMED_PORT, 1);
      cRates.ignore.push(cRate(ignore.result, N));
      cWall.full.push(ignore.run.ms);
      const empty = await runC(cExe, images.get(UNCLAIMED_PORT)!.empty, UNCLAIMED_PORT, 1);
      cWall.empty.push(empty.run.ms);
      cRates.sink.push(cRate((await runC(cExe, images.get(DEBUGCON_PORT)!.full, DEBUGCON_PORT, 1, cSink)).result, N));
      if (statSync(cSink).size < N) throw new Error('kvm-exit-loop: sink file shorter than the loop');
      cRates.smp1.push(cRate((await runC(cExe, smp.one.full, DEBUGCON_PORT, 1)).result, N));
      cRates.smp2.push(cRate((await runC(cExe, smp.two.full, DEBUGCON_PORT, 2)).result, 2 * N));
    }
    for (const c of CLI_CASES) {
      log(`round ${round}/${RUNS}: tsvmm ${c.label}`);
      const img = images.get(c.port)!;
      if (c.method === 'stamps') {
        await runTsvmm(tsvmmArgs(img.full, c.args(dir)));
        stampRates.push(stampsRate(join(dir, 'stamps.txt'), N));
        continue;
      }
      push(tsvmmBaseMs, c.id, (await runTsvmm(tsvmmArgs(img.empty, c.args(dir)))).ms);
      push(tsvmmMs, c.id, (await runTsvmm(tsvmmArgs(img.full, c.args(dir)))).ms);
      const out = c.outputFile && join(dir, c.outputFile);
      if (out && statSync(out).size < N) throw new Error(`${c.label}: ${out} holds fewer than ${N} bytes`);
    }
    for (const s of smpCases) {
      log(`round ${round}/${RUNS}: tsvmm smp-outloop, ${s.smp} vCPU(s)`);
      const args = ['-serial', 'null', '-debugcon', 'null'];
      push(tsvmmBaseMs, s.id, (await runTsvmm(tsvmmArgs(s.images.empty, args, s.smp))).ms);
      push(tsvmmMs, s.id, (await runTsvmm(tsvmmArgs(s.images.full, args, s.smp))).ms);
    }
    for (const mode of PLACEMENT_MODES) {
      log(`round ${round}/${RUNS}: placement prototype, ${mode}`);
      // The sleeping forward modes are ~10x slower per exit: they run the shorter loop.
      const slow = mode === 'forward-async' || mode === 'forward-sync';
      const image = slow ? forwardImage : images.get(DEBUGCON_PORT)!.full;
      const expected = slow ? NF : N;
      const r = await runPlacement(mode, image, DEBUGCON_PORT);
      if (r.count !== expected) throw new Error(`placement ${mode}: counted ${r.count} exits, expected ${expected}`);
      push(placement, mode, (r.count - 1) / ((r.lastMs - r.firstMs) / 1e3));
    }
  }

  /** Differential rate per full run: exits / (wall time - median wall time of the same command with no loop). */
  const differential = (id: string, exits: number) => {
    const base = median(tsvmmBaseMs.get(id)!);
    return summarize(tsvmmMs.get(id)!.map((ms) => exits / ((ms - base) / 1e3)));
  };

  const c = {
    ignore: summarize(cRates.ignore),
    sink: summarize(cRates.sink),
    smp1: summarize(cRates.smp1),
    smp2: summarize(cRates.smp2),
    differential: summarize(cWall.full.map((ms) => N / ((ms - median(cWall.empty)) / 1e3))),
  };
  const cli = new Map<string, Summary>();
  for (const k of CLI_CASES) cli.set(k.id, k.method === 'stamps' ? summarize(stampRates) : differential(k.id, N));
  const smp1 = differential('smp1', N);
  const smp2 = differential('smp2', 2 * N);
  const place = new Map([...placement].map(([k, v]) => [k, summarize(v)]));

  // ---- tables ---------------------------------------------------------------------------------------------------
  const out: string[] = [];
  const rowsVsC: Cell[][] = CLI_CASES.map((k) => {
    const t = cli.get(k.id)!;
    const ref = c[k.c];
    return [
      `${k.label} (C: ${k.c === 'ignore' ? 'count only' : 'write(2) to a file'})`,
      fmtRate(t),
      fmtRate(ref),
      round(t.median / ref.median),
      usPerExit(t.median),
      usPerExit(ref.median),
      round(1e6 / t.median - 1e6 / ref.median),
      spread(t),
    ];
  });
  out.push(
    formatTable(
      `exits: tsvmm CLI vs C, outloop (real mode at 0x7c00, 1 vCPU, ${N.toLocaleString('en-US')} OUTs), median of ${RUNS}`,
      [
        'tsvmm case (C reference)',
        'tsvmm exits/s',
        'C exits/s',
        'tsvmm/C',
        'tsvmm us/exit',
        'C us/exit',
        'added us/exit',
        'tsvmm range',
      ],
      rowsVsC,
    ),
  );
  out.push(
    formatTable(
      'method check: the C reference timed in-process vs by the differential method used for tsvmm',
      ['C reference, outloop 0x80', 'exits/s', 'range'],
      [
        ['in-process CLOCK_MONOTONIC, first to last loop exit', fmtRate(c.ignore), spread(c.ignore)],
        ['differential wall time (N OUTs minus 0 OUTs)', fmtRate(c.differential), spread(c.differential)],
      ],
    ),
  );

  const a = cli.get('debugcon-null')!;
  const placeRows: [string, Summary, number][] = [
    ['C reference, 1 vCPU (no device model, no lock)', c.ignore, 1],
    ['(a) tsvmm CLI: handler on the vCPU thread under the machine lock', a, 1],
    ['(a) prototype: the same design in the prototype harness', place.get('local')!, 1],
    ['(b) prototype: forward to main thread, Atomics.waitAsync', place.get('forward-async')!, 1],
    ["(b') prototype: forward, main thread blocks in Atomics.wait", place.get('forward-sync')!, 1],
    ["(b'') prototype: forward, both threads spin (no sleeping)", place.get('forward-spin')!, 1],
    ['(c) tsvmm CLI, 2 vCPUs looping at once: aggregate', smp2, 1],
    ['(c) tsvmm CLI, 2 vCPUs: per vCPU', smp2, 2],
    ['C reference, 2 vCPUs: aggregate', c.smp2, 1],
  ];
  out.push(
    formatTable(
      `where handlers run: isa-debugcon 0xe9 -> null (${N.toLocaleString('en-US')} OUTs; sleeping forward modes ${NF.toLocaleString('en-US')}), median of ${RUNS}`,
      ['design', 'exits/s', 'us/exit', 'vs C', 'vs (a) CLI'],
      placeRows.map(([label, s, per]) => {
        const rate = s.median / per;
        return [label, round(rate), usPerExit(rate), round(rate / c.ignore.median), round(rate / a.median)];
      }),
    ),
  );
  out.push(
    formatTable(
      `2 vCPUs (smp-outloop, 32-bit, isa-debugcon 0xe9 -> null, ${N.toLocaleString('en-US')} OUTs per vCPU), median of ${RUNS}`,
      ['vCPUs looping', 'C exits/s', 'tsvmm exits/s', 'tsvmm/C'],
      [
        ['1', fmtRate(c.smp1), fmtRate(smp1), round(smp1.median / c.smp1.median)],
        ['2 (aggregate)', fmtRate(c.smp2), fmtRate(smp2), round(smp2.median / c.smp2.median)],
        ['scaling 2 vs 1', round(c.smp2.median / c.smp1.median), round(smp2.median / smp1.median), null],
      ],
    ),
  );
  const text = out.join('\n\n');
  process.stdout.write(`${text}\n`);

  const path = writeResult('exits', {
    parameters: {
      exits: N,
      forwardExits: NF,
      runs: RUNS,
      ramMiB: 64,
      guest: 'examples/guests/outloop.S (patched), bench/exits/smp-outloop.S',
    },
    c,
    tsvmm: Object.fromEntries(
      [...cli].map(([k, v]) => [k, { ...v, baselineMs: tsvmmBaseMs.get(k) ?? null, runMs: tsvmmMs.get(k) ?? null }]),
    ),
    placement: Object.fromEntries(place),
    smp: { c1: c.smp1, c2: c.smp2, tsvmm1: smp1, tsvmm2: smp2 },
    ratios: {
      ...Object.fromEntries(CLI_CASES.map((k) => [`${k.id}/C`, round(cli.get(k.id)!.median / c[k.c].median)])),
      'forward-async/local-prototype': round(place.get('forward-async')!.median / place.get('local')!.median),
      'smp2/smp1 tsvmm': round(smp2.median / smp1.median),
      'smp2/smp1 C': round(c.smp2.median / c.smp1.median),
    },
    tables: text,
  });
  removeScratch(dir);
  log(`wrote ${path}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchExits();
}
