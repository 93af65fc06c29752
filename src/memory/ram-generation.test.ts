// The generation of guest RAM left in a shared file: read, given on a save, replaced when a guest runs on it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createFileBackend } from './file-backend.js';
import { createMemfdBackend } from './memfd-backend.js';
import { carriesGeneration, newRamGeneration, ramGenerationForSave, readRamGeneration } from './ram-generation.js';
import type { RamBackend } from './backend.js';

// /dev/shm is where reboot-mode RAM lives (tmpfs: user xattrs since Linux 6.6); elsewhere the temp directory.
const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tsvmm-generation-'));
const MiB = 1 << 20;
let n = 0;
const sharedFile = (): RamBackend => createFileBackend({ path: join(dir, `ram${n++}`), size: 2 * MiB, share: true });

test('generation: a new RAM file has none; a save gives it one and records it; reading it again gives the same', () => {
  const backend = sharedFile();
  try {
    assert.ok(carriesGeneration(backend));
    const before = readRamGeneration(backend);
    if (before === undefined) return console.log(`SKIP generation: ${dir}'s file system has no user xattrs`);
    assert.is(before, null);
    const saved = ramGenerationForSave(backend);
    assert.match(saved ?? '', /^[0-9a-f]{32}$/);
    assert.is(readRamGeneration(backend), saved);
    assert.is(ramGenerationForSave(backend), saved, 'a second save of the same RAM records the same generation');
  } finally {
    backend.close();
  }
});

test('generation: a guest running on the RAM replaces it, so an older checkpoint no longer matches', () => {
  const backend = sharedFile();
  try {
    const saved = ramGenerationForSave(backend);
    if (saved === undefined) return;
    const next = newRamGeneration(backend);
    assert.is.not(next, saved);
    assert.is(readRamGeneration(backend), next);
  } finally {
    backend.close();
  }
});

test('generation: memfd and private RAM carry none (a memfd dies with its holders; private RAM goes in the file)', () => {
  const memfd = createMemfdBackend({ size: 2 * MiB, share: true });
  const privateFile = createFileBackend({ path: join(dir, 'private'), size: 2 * MiB, share: false });
  try {
    for (const backend of [memfd, privateFile]) {
      assert.not.ok(carriesGeneration(backend));
      assert.is(readRamGeneration(backend), undefined);
      assert.is(newRamGeneration(backend), undefined);
    }
  } finally {
    memfd.close();
    privateFile.close();
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
