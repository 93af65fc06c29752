// `npm test`'s share of fuzzing: every target (fuzz/targets/) under Jazzer.js for a fixed number of inputs from a
// fixed seed, starting from its committed corpus — the same inputs on every machine, however slow. A crash, a
// hang (one input over INPUT_TIMEOUT_S) or an error outside the target's contract fails the test with the
// fuzzer's report. `npm run fuzz` runs the same targets for longer (docs/fuzzing.md).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTarget, targetNames } from './jazzer.js';

/** Inputs per target: ~1-10 s each here natively, after Jazzer's 3-5 s start. */
const RUNS = Number(process.env.TSVMM_FUZZ_RUNS ?? 2000);
const SEED = 1;

for (const name of targetNames()) {
  test(`fuzz ${name}: ${RUNS} inputs (seed ${SEED}) end without a crash, a hang or an error outside its contract`, async () => {
    const r = await runTarget({ name, runs: RUNS, seed: SEED });
    assert.ok(
      r.ok,
      `${name}: ${r.crashFile ? `crash input ${r.crashFile}\n` : ''}${r.output.split('\n').slice(-40).join('\n')}`,
    );
    assert.ok(r.executions >= RUNS, `${name}: only ${r.executions} of ${RUNS} inputs ran`);
    console.log(`fuzz ${name}: ${r.executions} inputs, cov ${r.coverage} ft ${r.features}`);
  });
}

test.run();
