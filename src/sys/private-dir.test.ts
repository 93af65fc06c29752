// Scratch directories: private (0700, this user's, an unpredictable name), gone afterwards, and a clean-up that
// cannot throw.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePrivateDir, removePrivateDir, withPrivateDir } from './private-dir.js';

const parent = mkdtempSync(join(tmpdir(), 'private-dir-test-'));
test.after(() => rmSync(parent, { recursive: true, force: true }));

test('private dir: mode 0700, owned by this user, a fresh random name each time', () => {
  const old = process.umask(0);
  try {
    const a = makePrivateDir(parent, 'scratch-');
    const b = makePrivateDir(parent, 'scratch-');
    assert.is.not(a, b);
    const st = statSync(a);
    assert.is(st.mode & 0o7777, 0o700);
    assert.is(st.uid, process.geteuid?.());
  } finally {
    process.umask(old);
  }
});

test('private dir: withPrivateDir removes it and its files, also when the work throws', () => {
  let seen = '';
  withPrivateDir(parent, 'work-', (dir) => {
    seen = dir;
    writeFileSync(join(dir, 'checkpoint.cpr'), 'x');
  });
  assert.not.ok(existsSync(seen));
  assert.throws(
    () =>
      withPrivateDir(parent, 'work-', (dir) => {
        seen = dir;
        throw new Error('the work failed');
      }),
    /the work failed/,
  );
  assert.not.ok(existsSync(seen));
  assert.equal(
    readdirSync(parent).filter((n) => n.startsWith('work-')),
    [],
  );
});

test('private dir: a removal that fails says false instead of throwing; a missing one is no failure', () => {
  const dir = makePrivateDir(parent, 'stuck-');
  const file = join(dir, 'file');
  writeFileSync(file, '');
  assert.is(removePrivateDir(join(file, 'below-a-file')), false, 'ENOTDIR (rmSync would throw)');
  assert.is(removePrivateDir(join(parent, 'never-made')), true);
  assert.is(removePrivateDir(dir), true);
  assert.not.ok(existsSync(dir));
});

test.run();
