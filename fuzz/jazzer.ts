// Runs one fuzz target under Jazzer.js (libFuzzer driving instrumented JavaScript): the shared part of `npm test`'s
// fixed-count runs (fuzz.test.ts) and `npm run fuzz` (run.ts). Each target is `dist/fuzz/targets/NAME.js`, its
// seeds are `fuzz/corpus/NAME/`; inputs the fuzzer finds interesting go to a scratch directory, not the repository,
// unless the caller asks (run.ts --grow-corpus).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { patchAddonFile } from './jazzer-compat.js';

const distFuzz = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(distFuzz, '..', '..');
const jazzerCli = join(repoRoot, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js');
const addon = join(
  repoRoot,
  'node_modules',
  '@jazzer.js',
  'fuzzer',
  'prebuilds',
  `fuzzer-${process.platform}-x64.node`,
);

/** Inputs are at most this long: enough for every format here (a small checkpoint, guest RAM with rings). */
export const MAX_LEN = 16384;
/** One input running longer than this is a hang (libFuzzer's -timeout), whatever the machine's load. */
export const INPUT_TIMEOUT_S = 20;

/** Every target's name, from the compiled targets. */
export function targetNames(): string[] {
  return readdirSync(join(distFuzz, 'targets'))
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.slice(0, -3))
    .sort();
}

/** The addon Jazzer.js ships needs glibc 2.38; on an older glibc it is patched once (jazzer-compat.ts). */
export function ensureJazzerLoads(): void {
  const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  const glibc = report.header?.glibcVersionRuntime;
  if (process.platform !== 'linux' || process.arch !== 'x64' || !glibc) return;
  const [major, minor] = glibc.split('.').map(Number);
  if (major > 2 || (major === 2 && minor >= 38) || !existsSync(addon)) return;
  patchAddonFile(addon);
}

export interface FuzzRun {
  name: string;
  /** Inputs to run (libFuzzer's -runs), or */
  runs?: number;
  /** a time budget (-max_total_time). */
  seconds?: number;
  /** libFuzzer's -seed; fixed in npm test so every machine runs the same inputs. */
  seed?: number;
  /** Where new interesting inputs go (default: a scratch directory). */
  corpusOut?: string;
  /** Where a crashing input is written (default: a scratch directory). */
  artifactDir?: string;
  onLine?: (line: string) => void;
}

export interface FuzzResult {
  ok: boolean;
  /** Executions libFuzzer reports ("Done N runs"), 0 if it never got there. */
  executions: number;
  /** The last coverage line's counters: edges covered and features. */
  coverage: number;
  features: number;
  crashFile: string | null;
  output: string;
}

/** The target's `instrumented` list: the folders and files (under dist/) whose coverage guides the fuzzer. */
async function instrumentedBy(name: string): Promise<string[]> {
  const target = (await import(join(distFuzz, 'targets', `${name}.js`))) as { instrumented?: string[] };
  if (!target.instrumented?.length) throw new Error(`fuzz target ${name} exports no 'instrumented' list`);
  return target.instrumented.map((p) => join(repoRoot, 'dist', p));
}

export async function runTarget(run: FuzzRun): Promise<FuzzResult> {
  ensureJazzerLoads();
  const includes = await instrumentedBy(run.name);
  const scratch = mkdtempSync(join(tmpdir(), `tsvmm-fuzz-${run.name}-`));
  const artifacts = run.artifactDir ?? scratch;
  const libfuzzer = [
    `-max_len=${MAX_LEN}`,
    `-timeout=${INPUT_TIMEOUT_S}`,
    '-rss_limit_mb=4096',
    `-artifact_prefix=${artifacts}/`,
    ...(run.runs !== undefined ? [`-runs=${run.runs}`] : []),
    ...(run.seconds !== undefined ? [`-max_total_time=${run.seconds}`] : []),
    ...(run.seed !== undefined ? [`-seed=${run.seed}`] : []),
  ];
  const args = [
    jazzerCli,
    join(distFuzz, 'targets', `${run.name}.js`),
    run.corpusOut ?? scratch,
    join(repoRoot, 'fuzz', 'corpus', run.name),
    '--sync',
    ...includes.map((p) => `--includes=${p}`),
    '--excludes=node_modules',
    '--',
    ...libfuzzer,
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let pending = '';
    const take = (chunk: Buffer) => {
      output += chunk;
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) run.onLine?.(line);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => {
      // "Done N runs" ends a normal run; the last status line ("#N\tpulse …") counts when it is missing
      const statusLines = [...output.matchAll(/^#(\d+)\t/gm)];
      const executions = Number(/Done (\d+) runs/.exec(output)?.[1] ?? statusLines.at(-1)?.[1] ?? 0);
      const cov = [...output.matchAll(/cov: (\d+) ft: (\d+)/g)].at(-1);
      const crash = /Test unit written to (\S+)/.exec(output)?.[1] ?? null;
      // The scratch directory goes unless it holds the crashing input the caller is told about.
      if (crash === null || run.artifactDir !== undefined) rmSync(scratch, { recursive: true, force: true });
      resolve({
        ok: code === 0 && crash === null,
        executions,
        coverage: Number(cov?.[1] ?? 0),
        features: Number(cov?.[2] ?? 0),
        crashFile: crash,
        output,
      });
    });
  });
}
