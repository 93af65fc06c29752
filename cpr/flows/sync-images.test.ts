// cpr-save's last step before it captures the state: the guest's writes made durable on every writable image.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syncImages } from './sync-images.js';
import { CprError } from './cpr-error.js';

test('writable images are synced; read-only ones are left alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-sync-images-'));
  const fd = openSync(join(dir, 'disk.img'), 'w+');
  try {
    writeSync(fd, new Uint8Array(4096).fill(7), 0, 4096, 0);
    syncImages([
      { id: 'd0', fd, readOnly: false },
      { id: 'cdrom', fd: -1, readOnly: true }, // never touched: an fd that does not exist would fail
    ]);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an image that cannot be synced fails the save with the drive named and the reason', () => {
  const fd = openSync('/dev/null', 'r+'); // fdatasync on it fails (EINVAL), as it would with EIO on a dying disk
  try {
    assert.throws(
      () => syncImages([{ id: 'd1', fd, readOnly: false }]),
      (e: Error) => e instanceof CprError && /drive d1's image could not be synced: EINVAL/.test(e.message),
    );
  } finally {
    closeSync(fd);
  }
});

test.run();
