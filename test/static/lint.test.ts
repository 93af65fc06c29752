// Biome's formatter and linter (rules in biome.jsonc) find nothing to change: `biome ci` checks without writing.
// To fix: `npx biome format --write .` and `npx biome lint --write .` (then look at what is left).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../support/cc.js';

test('the tree is formatted and lint-clean', () => {
  const biome = join(repoRoot, 'node_modules', '.bin', 'biome');
  const r = spawnSync(biome, ['ci', '--colors=off', '--max-diagnostics=50', '.'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.error) throw r.error;
  assert.is(r.status, 0, `biome ci found problems:\n${r.stdout}${r.stderr}`);
});

test.run();
