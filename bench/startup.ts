// bench/startup: how long tsvmm takes from process start to the guest's first instruction and to its exit, where
// that time goes, how much memory the VMM keeps resident besides guest RAM, and the same for QEMU when it is
// installed (see docs/bench.md for the method). `node dist/bench/startup.js`
//
// Environment: TSVMM_BENCH_STARTUP_RUNS (runs per tsvmm/node case, default 10), TSVMM_BENCH_QEMU_RUNS (default 5),
// TSVMM_QEMU (the QEMU binary, default qemu-system-x86_64).
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildGuest } from '../examples/guests/build.js';
import { repoRoot } from '../test/support/cc.js';
import { envInt } from './lib/env.js';
import { median, summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, guardMs, rigDefault } from './lib/where.js';
import { runTimed, expectStatus, type TimedRun } from './lib/spawn.js';
import { runTsvmm, GUEST_EXIT_OK } from './lib/tsvmm.js';
import { firstInstructionKernel, waitingKernel } from './startup/guests.js';
import { sampleRss, type RssSplit } from './startup/smaps.js';

const RAM = '64M';
const RAM_BYTES = 64 * 1024 * 1024;
const QEMU = process.env.TSVMM_QEMU ?? 'qemu-system-x86_64';
/** How long a waiting guest's VMM is left to settle before its memory is sampled. */
const SETTLE_MS = 500;
const HELLO_LINE = 'Hello from tsvmm guest';

const ms = (ns: bigint | number) => Number(ns) / 1e6;
const sleep = (t: number) => new Promise((resolve) => setTimeout(resolve, t));

function qemuUnavailable(): string | null {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${QEMU} is not installed`;
  if (r.status !== 0) return `${QEMU} --version failed`;
  if (!existsSync('/dev/kvm')) return '/dev/kvm is missing';
  return null;
}

/** The first stamp of a timestamped debugcon file ("<ns> <hex>" per byte). */
function firstStamp(path: string): bigint {
  const text = readFileSync(path, 'utf8');
  const space = text.indexOf(' ');
  if (space <= 0) throw new Error(`${path}: no timestamped byte (the guest never ran its first instruction?)`);
  return BigInt(text.slice(0, space));
}

async function repeat<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await fn(i));
  return out;
}

/** Runs a VMM whose guest writes one byte to stdout and then idles; samples its memory; ends it with SIGTERM. */
async function rssOf(command: string, args: string[]): Promise<RssSplit> {
  let sample: RssSplit | null = null;
  await runTimed(command, args, {
    whileRunning: async (pid, firstStdout) => {
      const timeout = sleep(guardMs(30_000)).then(() => {
        throw new Error(`${command}: the guest wrote nothing within ${guardMs(30_000) / 1000} s`);
      });
      await Promise.race([firstStdout, timeout]);
      await sleep(SETTLE_MS);
      sample = sampleRss(pid, RAM_BYTES);
      process.kill(pid, 'SIGTERM');
    },
  });
  if (!sample) throw new Error(`${command}: could not sample its memory`);
  return sample;
}

export async function benchStartup(): Promise<void> {
  const RUNS = envInt('TSVMM_BENCH_STARTUP_RUNS', rigDefault(10, 3));
  const QEMU_RUNS = envInt('TSVMM_BENCH_QEMU_RUNS', rigDefault(5, 3));
  const dir = scratchDir('startup');
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/startup [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);
  const node = process.execPath;
  const dist = join(repoRoot, 'dist');
  const cli = join(dist, 'src', 'cli', 'main.js');
  const probe = fileURLToPath(new URL('./startup/probe.js', import.meta.url));

  log(`building guests (${RUNS} runs per tsvmm case, ${QEMU_RUNS} per QEMU case)`);
  const hello = (await buildGuest('hello')).path;
  const first = firstInstructionKernel();
  const wait = waitingKernel();
  const stamps = join(dir, 'stamps.txt');
  const stampArgs = [
    '-serial',
    'none',
    '-device',
    'isa-debugcon,chardev=stamps,timestamps=on',
    '-chardev',
    `file,id=stamps,path=${stamps}`,
  ];
  const base = ['-m', RAM, '-device', 'isa-debug-exit'];

  // ---- node and module loading, each in a fresh process ---------------------------------------------------------
  const importCmd = (rel: string) => [
    '--input-type=module',
    '-e',
    `await import(${JSON.stringify(pathToFileURL(join(dist, rel)).href)})`,
  ];
  const nodeCases: [string, string[]][] = [
    ['node -e 0 (Node start and exit)', ['-e', '0']],
    ['node: import src/sys/libc.js (koffi + libc binding)', importCmd('src/sys/libc.js')],
    ['node: import src/machine/machine.js (all VM code)', importCmd('src/machine/machine.js')],
    ['tsvmm --version (CLI, machine not loaded)', [cli, '--version']],
  ];
  const nodeTimes = new Map<string, Summary>();
  for (const [label, args] of nodeCases) {
    log(label);
    const runs = await repeat(RUNS, async () => expectStatus(await runTimed(node, args), 0, label));
    nodeTimes.set(label, summarize(runs.map((r) => r.ms)));
  }

  // ---- phases, from the probe (main.ts's path with marks) -------------------------------------------------------
  log('probe: phases of tsvmm run');
  const phaseNames = [
    ['spawn -> Node process origin (exec, Node binary)', 'spawn', 'nodeOrigin'],
    ['Node bootstrap -> first line of the script', 'nodeOrigin', 'scriptStart'],
    ['CLI modules (args, config; chardev and memory load koffi)', 'scriptStart', 'cliLoaded'],
    ['parse the command line', 'cliLoaded', 'configured'],
    ['machine modules (machine, kvm/, devices/, boot/)', 'configured', 'machineLoaded'],
    ['Machine.create (KVM VM, irqchip, RAM, vCPU, devices, image)', 'machineLoaded', 'created'],
    ['start() -> first guest instruction (vCPU worker start)', 'created', 'firstInstruction'],
    ['first instruction -> machine finished (guest exit, teardown)', 'firstInstruction', 'finished'],
    ['finished -> process gone', 'finished', 'exit'],
  ] as const;
  const phaseSamples = new Map<string, number[]>(phaseNames.map(([label]) => [label, []]));
  const probeTotals: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const run = expectStatus(
      await runTimed(node, [probe, ...base, '-kernel', first, ...stampArgs]),
      GUEST_EXIT_OK,
      'startup probe',
    );
    const marks = JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, number>;
    const at: Record<string, number> = {
      ...marks,
      spawn: Number(run.spawnNs),
      exit: Number(run.exitNs),
      firstInstruction: Number(firstStamp(stamps)),
    };
    for (const [label, from, to] of phaseNames) phaseSamples.get(label)!.push(ms(at[to] - at[from]));
    probeTotals.push(run.ms);
  }

  // ---- the real CLI ----------------------------------------------------------------------------------------------
  log('tsvmm: first instruction (timestamped debugcon)');
  const stamped = await repeat(RUNS, async () => {
    const run = await runTsvmm([...base, '-kernel', first, ...stampArgs]);
    return { first: ms(firstStamp(stamps) - run.spawnNs), exit: run.ms };
  });
  log('tsvmm: first instruction (debugcon on stdout)');
  const stdoutArgs = ['-serial', 'none', '-debugcon', 'stdio'];
  const viaStdout = await repeat(RUNS, async () =>
    firstByte(await runTsvmm([...base, '-kernel', first, ...stdoutArgs])),
  );
  log('tsvmm: hello');
  const helloRuns = await repeat(RUNS, async () => checkHello(await runTsvmm([...base, '-kernel', hello])));

  const t = {
    firstStamped: summarize(stamped.map((s) => s.first)),
    firstExit: summarize(stamped.map((s) => s.exit)),
    firstStdout: summarize(viaStdout),
    hello: summarize(helloRuns.map((r) => r.ms)),
  };

  // ---- QEMU ---------------------------------------------------------------------------------------------------
  const qemuMissing = qemuUnavailable();
  let q: {
    hello: Summary;
    firstStdout: Summary;
    firstExit: Summary;
    firstStdoutNodefaults: Summary;
    rss: RssSplit;
  } | null = null;
  const qemuBase = ['-accel', 'kvm', '-M', 'pc', '-m', RAM, '-device', 'isa-debug-exit,iobase=0xf4,iosize=4'];
  const qemuQuiet = ['-display', 'none', '-serial', 'none', '-monitor', 'none', '-debugcon', 'stdio'];
  if (qemuMissing) {
    log(`QEMU skipped: ${qemuMissing}`);
  } else {
    log('QEMU: hello');
    const qemuRuns = (args: string[]) =>
      repeat(QEMU_RUNS, async () =>
        expectStatus(await runTimed(QEMU, [...qemuBase, ...args]), GUEST_EXIT_OK, `${QEMU} ${args.join(' ')}`),
      );
    const qHello = (await qemuRuns(['-nographic', '-kernel', hello])).map(checkHello);
    log('QEMU: first instruction (debugcon on stdout)');
    const qFirst = await qemuRuns([...qemuQuiet, '-kernel', first]);
    log('QEMU -nodefaults: first instruction');
    const qFirstNd = await qemuRuns(['-nodefaults', ...qemuQuiet, '-kernel', first]);
    log('QEMU: memory of an idle guest');
    const qRss = await repeat(3, () => rssOf(QEMU, [...qemuBase, ...qemuQuiet, '-kernel', wait]));
    q = {
      hello: summarize(qHello.map((r) => r.ms)),
      firstStdout: summarize(qFirst.map(firstByte)),
      firstExit: summarize(qFirst.map((r) => r.ms)),
      firstStdoutNodefaults: summarize(qFirstNd.map(firstByte)),
      rss: medianRss(qRss),
    };
  }

  // ---- memory ------------------------------------------------------------------------------------------------
  log('tsvmm: memory of an idle guest');
  const tRss = medianRss(await repeat(3, () => rssOf(node, [cli, 'run', ...base, '-kernel', wait, ...stdoutArgs])));
  log('tsvmm -smp 2: memory of an idle guest');
  const tRss2 = medianRss(
    await repeat(3, () => rssOf(node, [cli, 'run', ...base, '-smp', '2', '-kernel', wait, ...stdoutArgs])),
  );
  log('node: memory of an idle script');
  const nodeRss = medianRss(
    await repeat(3, () => rssOf(node, ['-e', "process.stdout.write('x'); setInterval(() => {}, 1000)"])),
  );
  for (const [who, r] of [
    ['tsvmm', tRss],
    ['tsvmm -smp 2', tRss2],
    ['QEMU', q?.rss],
  ] as const) {
    if (r && r.guestRamMappings !== 1)
      throw new Error(`${who}: found ${r.guestRamMappings} mappings of guest RAM size in smaps (expected 1)`);
  }

  // ---- tables ---------------------------------------------------------------------------------------------------
  const out: string[] = [];
  const row = (label: string, s: Summary, qemu?: Summary): Cell[] => [
    label,
    round(s.median),
    `${round(s.min)}-${round(s.max)}`,
    qemu ? round(qemu.median) : null,
    qemu ? round(s.median / qemu.median) : null,
  ];
  out.push(
    formatTable(
      `startup: tsvmm${q ? ' vs QEMU' : ''} (-m ${RAM}), ms from spawn, median of ${RUNS} (QEMU: ${QEMU_RUNS})`,
      ['measure', 'tsvmm ms', 'tsvmm range', 'QEMU ms', 'tsvmm/QEMU'],
      [
        row('hello (multiboot -kernel): spawn -> process exit', t.hello, q?.hello),
        row('first guest instruction, timestamped debugcon', t.firstStamped),
        row('first guest instruction, debugcon byte on stdout', t.firstStdout, q?.firstStdout),
        ...(q
          ? [
              [
                ' ... QEMU with -nodefaults (no NIC option ROM)',
                null,
                null,
                round(q.firstStdoutNodefaults.median),
                null,
              ] as Cell[],
            ]
          : []),
        row('first-instruction guest: spawn -> process exit', t.firstExit, q?.firstExit),
      ],
    ),
  );
  out.push(
    formatTable(
      `startup phases: tsvmm run path with marks (bench/startup/probe.ts), ms, median of ${RUNS}`,
      ['phase', 'ms', 'range'],
      [
        ...phaseNames.map(([label]) => {
          const s = summarize(phaseSamples.get(label)!);
          return [label, round(s.median), `${round(s.min)}-${round(s.max)}`] as Cell[];
        }),
        ['total (spawn -> process gone)', round(median(probeTotals)), null],
      ],
    ),
  );
  out.push(
    formatTable(
      `startup pieces, each alone in a fresh process (spawn -> exit), ms, median of ${RUNS}`,
      ['process', 'ms', 'range'],
      nodeCases.map(([label]) => {
        const s = nodeTimes.get(label)!;
        return [label, round(s.median), `${round(s.min)}-${round(s.max)}`];
      }),
    ),
  );
  const mib = (kib: number) => round(kib / 1024);
  const rssRow = (label: string, r: RssSplit): Cell[] => [
    label,
    mib(r.totalKiB),
    mib(r.guestRamKiB),
    mib(r.outsideKiB),
    mib(r.outsideAnonymousKiB),
    mib(r.outsideFileKiB),
  ];
  out.push(
    formatTable(
      `memory: resident set of an idle VM (-m ${RAM}), MiB, /proc/PID/smaps ${SETTLE_MS} ms after the guest's first byte, median of 3`,
      ['process', 'RSS', 'guest RAM', 'outside guest RAM', 'of it anonymous', 'of it file-backed'],
      [
        rssRow('tsvmm (1 vCPU worker)', tRss),
        rssRow('tsvmm -smp 2 (2 vCPU workers)', tRss2),
        ...(q ? [rssRow('QEMU', q.rss)] : []),
        rssRow('node, idle script (no VM)', nodeRss),
      ],
    ),
  );
  const text = out.join('\n\n');
  process.stdout.write(`${text}\n`);

  const path = writeResult('startup', {
    parameters: {
      runs: RUNS,
      qemuRuns: QEMU_RUNS,
      ram: RAM,
      settleMs: SETTLE_MS,
      qemu: qemuMissing ? `skipped: ${qemuMissing}` : QEMU,
    },
    tsvmm: { ...t, rss: tRss, rssSmp2: tRss2 },
    phases: Object.fromEntries(phaseNames.map(([label]) => [label, summarize(phaseSamples.get(label)!)])),
    probeTotalMs: summarize(probeTotals),
    pieces: Object.fromEntries(nodeTimes),
    qemu: q,
    nodeIdleRss: nodeRss,
    ratios: q
      ? {
          'hello tsvmm/QEMU': round(t.hello.median / q.hello.median),
          'first instruction tsvmm/QEMU (stdout)': round(t.firstStdout.median / q.firstStdout.median),
          'RSS outside guest RAM tsvmm/QEMU': round(tRss.outsideKiB / q.rss.outsideKiB),
        }
      : null,
    tables: text,
  });
  removeScratch(dir);
  log(`wrote ${path}`);
}

/** ms from spawn to the first stdout byte. */
function firstByte(run: TimedRun): number {
  if (run.firstStdoutNs === null) throw new Error('the guest wrote nothing to stdout');
  return ms(run.firstStdoutNs - run.spawnNs);
}

function checkHello(run: TimedRun): TimedRun {
  if (!run.stdout.includes(HELLO_LINE))
    throw new Error(`hello guest: no "${HELLO_LINE}" in its output:\n${run.stdout}${run.stderr}`);
  return run;
}

/** Field-wise median of memory samples. */
function medianRss(samples: RssSplit[]): RssSplit {
  const m = (f: (r: RssSplit) => number) => median(samples.map(f));
  return {
    totalKiB: m((r) => r.totalKiB),
    guestRamKiB: m((r) => r.guestRamKiB),
    outsideKiB: m((r) => r.outsideKiB),
    outsideAnonymousKiB: m((r) => r.outsideAnonymousKiB),
    outsideFileKiB: m((r) => r.outsideFileKiB),
    guestRamMappings: Math.min(...samples.map((r) => r.guestRamMappings)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchStartup();
}
