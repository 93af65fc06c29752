// The throwaway checkpoint a save (or a VM waiting for one) writes to warm the file code: in a private directory of
// its own, gone afterwards, and never a throw, not even from its clean-up (its callers do not await it).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { warmUpFileIo } from './reboot.js';

const parent = mkdtempSync(join(tmpdir(), 'warm-up-test-'));
test.after(() => rmSync(parent, { recursive: true, force: true }));

test('warm-up file I/O: leaves the directory as it found it, and what others planted there untouched', () => {
  const dir = mkdtempSync(join(parent, 'dir-'));
  // Where the warm-up of a save of dir/vm.cpr used to write (dir/vm.cpr.warm-up-PID): a symlink planted there.
  const target = join(dir, 'precious');
  writeFileSync(target, 'keep me');
  symlinkSync(target, join(dir, `vm.cpr.warm-up-${process.pid}`));
  const before = readdirSync(dir).sort();
  warmUpFileIo(dir, []);
  assert.equal(readdirSync(dir).sort(), before);
  assert.ok(lstatSync(join(dir, `vm.cpr.warm-up-${process.pid}`)).isSymbolicLink());
  assert.is(readFileSync(target, 'utf8'), 'keep me');
});

test('warm-up file I/O: never throws, whatever the directory is (missing, a file, not writable)', () => {
  const file = join(parent, 'a-file');
  writeFileSync(file, '');
  for (const dir of [join(parent, 'missing'), file, join(file, 'below'), '/proc/self'])
    assert.not.throws(() => warmUpFileIo(dir, []), dir);
});

test.run();
