// `npm run fuzz`: every target (or the ones named) under Jazzer.js for a time or a number of inputs each, one after
// another, printing executions and coverage; a crash leaves its input in fuzz/crashes/ (not committed) and the
// command fails. docs/fuzzing.md says how a crash becomes a regression test.
//
// Usage: node dist/fuzz/run.js [--seconds S | --runs N] [--grow-corpus] [--seed N] [target …]
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoRoot, runTarget, targetNames } from './jazzer.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string' },
    runs: { type: 'string' },
    seed: { type: 'string' },
    'grow-corpus': { type: 'boolean' },
  },
});
const names = positionals.length ? positionals : targetNames();
const unknown = names.filter((n) => !targetNames().includes(n));
if (unknown.length) throw new Error(`no fuzz target ${unknown.join(', ')}; targets: ${targetNames().join(', ')}`);
const crashes = join(repoRoot, 'fuzz', 'crashes');
mkdirSync(crashes, { recursive: true });

let failed = 0;
for (const name of names) {
  const started = Date.now();
  const r = await runTarget({
    name,
    runs: values.runs === undefined ? undefined : Number(values.runs),
    seconds: values.runs === undefined ? Number(values.seconds ?? 120) : undefined,
    seed: values.seed === undefined ? undefined : Number(values.seed),
    corpusOut: values['grow-corpus'] ? join(repoRoot, 'fuzz', 'corpus', name) : undefined,
    artifactDir: crashes,
  });
  const s = ((Date.now() - started) / 1000).toFixed(0);
  const line = `${r.ok ? 'ok  ' : 'FAIL'} ${name.padEnd(22)} ${r.executions} inputs in ${s} s, cov ${r.coverage} ft ${r.features}`;
  console.log(r.crashFile ? `${line}; crash input: ${r.crashFile}` : line);
  if (!r.ok) {
    failed++;
    console.log(r.output.split('\n').slice(-60).join('\n'));
  }
}
process.exitCode = failed ? 1 : 0;
