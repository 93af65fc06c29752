// Writes each target's seed inputs (its exported `seeds()`, built from valid cases by the code under test's own
// writers) to fuzz/corpus/NAME/seed-N. Inputs the fuzzer found and someone chose to keep (any other file name) stay.
//
// Usage: node dist/fuzz/make-corpus.js [target …]
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, targetNames } from './jazzer.js';

const names = process.argv.length > 2 ? process.argv.slice(2) : targetNames();
for (const name of names) {
  const target = (await import(`./targets/${name}.js`)) as { seeds?: () => Uint8Array[] };
  if (!target.seeds) throw new Error(`fuzz target ${name} exports no seeds()`);
  const dir = join(repoRoot, 'fuzz', 'corpus', name);
  mkdirSync(dir, { recursive: true });
  for (const old of readdirSync(dir)) if (old.startsWith('seed-')) rmSync(join(dir, old));
  const seeds = target.seeds();
  for (const [i, bytes] of seeds.entries()) writeFileSync(join(dir, `seed-${i + 1}`), bytes);
  console.log(`${name}: ${seeds.length} seeds, ${seeds.reduce((n, s) => n + s.length, 0)} bytes`);
}
