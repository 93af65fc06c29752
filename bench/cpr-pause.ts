// bench/cpr-pause: how long a checkpoint/restart pauses the guest, seen from outside, for each way a controller can
// move a running guest to a new tsvmm (cpr/; see bench/cpr-pause/flows.ts), at 512 MiB, 4 GiB and 16 GiB of guest
// RAM on /dev/shm, with the old process's RAM untouched and fully touched. Pause = the counter guest's last
// debugcon tick stamped by the old tsvmm to its first stamped by the new one. Prints min/median/max of the pause and
// of each phase in between, writes build/bench/cpr-pause.json and build/bench/cpr-pause.svg. See docs/bench.md.
//
//   node dist/bench/cpr-pause.js [--quick] [--runs N] [--sizes 512M,4G,16G] [--flows a,b] [--touched SIZES|all|none]
//                                [--cli PATH] [--state-dir DIR]
//
// Environment (for `npm run bench`): TSVMM_BENCH_CPR_RUNS (default 5), TSVMM_BENCH_CPR_SIZES (default
// 512M,4G,16G), TSVMM_BENCH_CPR_TOUCHED (default all), TSVMM_BENCH_CPR_FLOWS (default all), TSVMM_BENCH_CPR_CLI.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { buildGuest } from '../examples/guests/build.js';
import { repoRoot } from '../test/support/cc.js';
import { envInt } from './lib/env.js';
import { benchOutputDir, removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, rigDefault } from './lib/where.js';
import { Cleanup, SHM_DIR } from './cpr-pause/cleanup.js';
import { cpuShare, cpuTimes, shmRefusal } from './cpr-pause/host.js';
import { FLOWS, runFlow, type FlowId, type RunRecord, type RunSetup } from './cpr-pause/flows.js';
import {
  group,
  groupTable,
  growthTable,
  summaryTable,
  touchedTable,
  SIZE_BYTES,
  type GroupResult,
} from './cpr-pause/report.js';
import { pausePlot } from './cpr-pause/svg.js';
import { timeline } from './cpr-pause/timeline.js';

interface Options {
  runs: number;
  sizes: string[];
  flows: FlowId[];
  touched: string[];
  cli: string;
  stateDir: string;
}

function usage(message: string): never {
  process.stderr.write(
    `bench/cpr-pause: ${message}\nusage: node dist/bench/cpr-pause.js [--quick] [--runs N] [--sizes 512M,4G,16G] ` +
      '[--flows reboot-incoming,reboot-cpr-load,reboot-prestarted,transfer,exec] [--touched SIZES|all|none] [--cli PATH] [--state-dir DIR]\n',
  );
  process.exit(2);
}

function list(text: string, known: readonly string[], what: string): string[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) if (!known.includes(item)) usage(`unknown ${what} '${item}' (known: ${known.join(', ')})`);
  return items;
}

function parseOptions(argv: string[]): Options {
  const sizesKnown = Object.keys(SIZE_BYTES);
  const flowsKnown = FLOWS.map((f) => f.id);
  // The default command is the bundle users run (package.json bin) when it is built, else tsc's output.
  const bundle = join(repoRoot, 'dist', 'tsvmm.mjs');
  const o: Options = {
    runs: envInt('TSVMM_BENCH_CPR_RUNS', rigDefault(5, 3)),
    // The rig's RAM (16 GiB) holds its own /dev/shm: 16 GiB of guest there does not fit.
    sizes: list(process.env.TSVMM_BENCH_CPR_SIZES || rigDefault(sizesKnown.join(','), '512M,4G'), sizesKnown, 'size'),
    flows: (process.env.TSVMM_BENCH_CPR_FLOWS
      ? list(process.env.TSVMM_BENCH_CPR_FLOWS, flowsKnown, 'flow')
      : flowsKnown) as FlowId[],
    touched: [],
    cli:
      process.env.TSVMM_BENCH_CPR_CLI ||
      (existsSync(bundle) ? bundle : join(repoRoot, 'dist', 'src', 'cli', 'main.js')),
    stateDir: SHM_DIR,
  };
  // In the rig a run takes ~20 s: the touched-RAM runs are left to native hosts unless asked for.
  let touched = process.env.TSVMM_BENCH_CPR_TOUCHED || rigDefault('all', 'none');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '--quick') o.sizes = ['512M'];
    else if (a === '--runs') {
      o.runs = Number(value());
      if (!Number.isSafeInteger(o.runs) || o.runs < 1) usage('--runs needs a positive integer');
    } else if (a === '--sizes') o.sizes = list(value(), sizesKnown, 'size');
    else if (a === '--flows') o.flows = list(value(), flowsKnown, 'flow') as FlowId[];
    else if (a === '--touched') touched = value();
    else if (a === '--cli') o.cli = value();
    else if (a === '--state-dir') o.stateDir = value();
    else usage(`unknown option '${a}'`);
  }
  o.touched =
    touched === 'all'
      ? [...o.sizes]
      : touched === 'none'
        ? []
        : list(touched, sizesKnown, 'size').filter((s) => o.sizes.includes(s));
  if (!existsSync(o.cli)) usage(`no tsvmm at ${o.cli} (build it: npm run build)`);
  return o;
}

async function main(): Promise<void> {
  process.stdout.write(`${benchWhere().line}\n`);
  const o = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/cpr-pause [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);
  const cleanup = new Cleanup();
  const dir = scratchDir('cpr-pause');
  const counter = await buildGuest('counter');
  log(
    `tsvmm: ${o.cli}; ${o.runs} runs per flow, sizes ${o.sizes.join(' ')}, old RAM touched at ${o.touched.join(' ') || 'none'}; checkpoint files in ${o.stateDir}`,
  );
  const loadBefore = loadavg();
  if (loadBefore[0] > 0.5)
    log(`the host is busy (1-minute load ${loadBefore[0].toFixed(2)} on ${cpus().length} cores): expect noisy numbers`);
  const records: RunRecord[] = [];
  const failures: string[] = [];
  const skipped: string[] = [];
  const hostCpu = new Map<string, { busyPercent: number; stealPercent: number }>();
  for (const size of o.sizes) {
    for (const touched of [false, true]) {
      if (touched && !o.touched.includes(size)) continue;
      const refusal = shmRefusal(SIZE_BYTES[size]);
      if (refusal) {
        const line = `${size}${touched ? ' touched' : ''}: skipped, ${refusal}`;
        skipped.push(line);
        log(line);
        continue;
      }
      const ramPath = cleanup.shmPath(`ram-${size}${touched ? '-touched' : ''}`);
      const statePath =
        o.stateDir === SHM_DIR ? cleanup.shmPath('state') : join(o.stateDir, `tsvmm-cpr-pause-${process.pid}.state`);
      const setup: RunSetup = {
        cli: o.cli,
        dir,
        statePath,
        ramPath,
        sizeLabel: size,
        touched,
        counterKernel: counter.path,
        cleanup,
        warmTicks: 300,
        afterTicks: 100,
      };
      if (touched)
        log(
          `${size}: the first old process preallocates ${size} in ${ramPath} (slow the first time; later runs reuse the populated file)`,
        );
      const cpuAtStart = cpuTimes();
      try {
        // Rounds interleave the flows, so a slow stretch of the shared host hits all of them alike.
        for (let round = 0; round < o.runs; round++) {
          for (const flow of o.flows) {
            const what = `${flow} ${size}${touched ? ' touched' : ''} run ${round + 1}/${o.runs}`;
            try {
              const r = await runFlow(flow, setup);
              const t = timeline(r);
              const lost = r.counter - (r.oldTicks + r.newTicks);
              if (lost < 0 || lost > 1)
                throw new Error(
                  `the guest's counter is ${r.counter} but the logs hold ${r.oldTicks} + ${r.newTicks} ticks: state lost or replayed`,
                );
              records.push(r);
              log(
                `${what}: pause ${(t.rawGapUs / 1000).toFixed(2)} ms (VMMs ${(t.vmmUs / 1000).toFixed(2)}), counter ${r.counter} goes on`,
              );
            } catch (e) {
              failures.push(`${what}: ${(e as Error).message}`);
              log(`${what}: FAILED: ${(e as Error).message}`);
            }
          }
        }
      } finally {
        hostCpu.set(`${size}/${touched}`, cpuShare(cpuAtStart, cpuTimes()));
        cleanup.removeFile(ramPath);
        cleanup.removeFile(statePath);
      }
    }
  }

  const groups: GroupResult[] = [];
  for (const size of o.sizes) {
    for (const touched of [false, true]) {
      for (const flow of o.flows) {
        const runs = records.filter((r) => r.flow === flow && r.size === size && r.touched === touched);
        if (runs.length) groups.push({ ...group(runs), host: hostCpu.get(`${size}/${touched}`) });
      }
    }
  }
  const out = process.stdout;
  for (const g of groups) out.write(`\n${groupTable(g)}\n`);
  out.write(`\n${summaryTable(groups)}\n\n${growthTable(groups)}\n\n${touchedTable(groups)}\n`);
  for (const line of skipped) out.write(`skipped: ${line}\n`);

  const cliStat = statSync(o.cli);
  const subtitle = `median and min-max of ${o.runs} runs per point; ${new Date().toISOString().slice(0, 10)}; ${o.cli.endsWith('.mjs') ? 'bundled tsvmm' : 'tsvmm (tsc output)'}`;
  const json = writeResult('cpr-pause', {
    method:
      "pause = first debugcon stamp of the new tsvmm minus the last of the old (counter guest, ~1 ms PIT tick); phases from the VMMs' x-query-cpr-timings marks, the controller's own CLOCK_REALTIME stamps and the new process's TSVMM_TRACE_STARTUP marks",
    options: { ...o, cliModified: cliStat.mtime.toISOString() },
    loadAverage: { before: loadBefore, after: loadavg() },
    skipped,
    failures,
    groups: groups.map((g) => ({ ...g, samples: undefined })),
    runs: groups.map((g) => ({ flow: g.flow, size: g.size, touched: g.touched, samples: g.samples })),
  });
  if (groups.length) {
    const svg = join(benchOutputDir, 'cpr-pause.svg');
    writeFileSync(svg, pausePlot(groups, subtitle));
    log(`wrote ${json} and ${svg}`);
  } else {
    log(`wrote ${json}; no run succeeded, so no plot`);
  }
  if (failures.length) {
    log(`${failures.length} runs failed; scratch files kept in ${dir}`);
    process.exitCode = 1;
  } else {
    removeScratch(dir);
  }
}

await main();
