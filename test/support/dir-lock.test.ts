import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockTimeoutError, withDirLock, withDirLockAsync } from './dir-lock.js';

const scratch = () => mkdtempSync(join(tmpdir(), 'tsvmm-dir-lock-'));

test('dir-lock: async holders of one lock run one after the other, and the lock is gone after', async () => {
  const dir = scratch();
  const lock = join(dir, 'lock');
  const events: string[] = [];
  const holder = (name: string) =>
    withDirLockAsync(lock, async () => {
      events.push(`${name} in`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      events.push(`${name} out`);
    });
  await Promise.all([holder('a'), holder('b')]);
  assert.equal(events.length, 4);
  assert.is(events[0].slice(2), 'in');
  assert.is(events[1].slice(2), 'out');
  assert.is(events[0][0], events[1][0]);
  assert.not.ok(existsSync(lock));
  rmSync(dir, { recursive: true, force: true });
});

test('dir-lock: a lock whose owner died is broken; a live owner makes the waiter time out', async () => {
  const dir = scratch();
  const lock = join(dir, 'lock');
  mkdirSync(lock);
  writeFileSync(join(lock, 'pid'), '999999999');
  assert.is(
    withDirLock(lock, () => 'taken'),
    'taken',
  );
  mkdirSync(lock);
  writeFileSync(join(lock, 'pid'), String(process.pid));
  try {
    await withDirLockAsync(lock, async () => 'never', 300);
    assert.unreachable('the live lock was taken');
  } catch (e) {
    assert.instance(e, LockTimeoutError);
  }
  rmSync(dir, { recursive: true, force: true });
});

test.run();
