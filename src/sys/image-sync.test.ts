// A disk image's fdatasync that fails for good once it has failed, across every ImageSync sharing its flag.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageSync, ImageSyncError, newImageSyncFlag } from './image-sync.js';

test('image sync: a sync that succeeds leaves the flag clear', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-image-sync-'));
  const fd = openSync(join(dir, 'disk.img'), 'w+');
  try {
    const flag = newImageSyncFlag();
    new ImageSync(fd, flag).sync();
    new ImageSync(fd, flag).sync();
    assert.is(new Int32Array(flag)[0], 0);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('image sync: once one sync failed, every sync sharing the flag fails with its errno, without syncing again', () => {
  const fd = openSync('/dev/null', 'r+'); // fdatasync on it fails with EINVAL
  try {
    const flag = newImageSyncFlag();
    const first = new ImageSync(fd, flag);
    assert.throws(
      () => first.sync(),
      (e: NodeJS.ErrnoException) => e.code === 'EINVAL',
    );
    const other = new ImageSync(-1, flag); // an fd that would fail with EBADF if it were synced
    assert.throws(
      () => other.sync(),
      (e: Error) => e instanceof ImageSyncError && e.code === 'EINVAL' && /earlier fdatasync/.test(e.message),
    );
    assert.throws(
      () => new ImageSync(-1).sync(),
      (e: Error) => !(e instanceof ImageSyncError),
      'an ImageSync with its own flag really syncs (and fails on its bad fd)',
    );
  } finally {
    closeSync(fd);
  }
});

test.run();
