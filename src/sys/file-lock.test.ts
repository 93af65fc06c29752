// OFD locks: one per open file description, refused to every other open of the file (in this process or another),
// shared by every fd of the same description, gone with its last fd.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockWholeFile } from './file-lock.js';
import { fcntl } from './libc.js';

const F_DUPFD_CLOEXEC = 1030; // <fcntl.h>: F_LINUX_SPECIFIC_BASE + 6
const dupSync = (fd: number): number => fcntl(fd, F_DUPFD_CLOEXEC, 3);

function scratchFile(): { path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'file-lock-'));
  const path = join(dir, 'image');
  writeFileSync(path, Buffer.alloc(4096));
  return { path, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('file lock: an exclusive lock refuses every other open of the file, exclusive or shared', () => {
  const { path, done } = scratchFile();
  const a = openSync(path, 'r+');
  const b = openSync(path, 'r+');
  try {
    assert.is(lockWholeFile(a, 'exclusive'), 'locked');
    assert.is(lockWholeFile(b, 'exclusive'), 'held-elsewhere');
    assert.is(lockWholeFile(b, 'shared'), 'held-elsewhere');
  } finally {
    closeSync(a);
    closeSync(b);
    done();
  }
});

test('file lock: shared locks coexist and keep a writer out', () => {
  const { path, done } = scratchFile();
  const [a, b, c] = [openSync(path, 'r'), openSync(path, 'r'), openSync(path, 'r+')];
  try {
    assert.is(lockWholeFile(a, 'shared'), 'locked');
    assert.is(lockWholeFile(b, 'shared'), 'locked');
    assert.is(lockWholeFile(c, 'exclusive'), 'held-elsewhere');
  } finally {
    for (const fd of [a, b, c]) closeSync(fd);
    done();
  }
});

test('file lock: a dup of the locked fd (what SCM_RIGHTS and an exec pass on) takes the same lock again', () => {
  const { path, done } = scratchFile();
  const a = openSync(path, 'r+');
  const passed = dupSync(a);
  try {
    assert.is(lockWholeFile(a, 'exclusive'), 'locked');
    assert.is(lockWholeFile(passed, 'exclusive'), 'locked');
    // The original fd closes (the old process exits): the passed one still holds the lock.
    closeSync(a);
    const other = openSync(path, 'r+');
    assert.is(lockWholeFile(other, 'exclusive'), 'held-elsewhere');
    closeSync(other);
  } finally {
    closeSync(passed);
    done();
  }
});

test('file lock: closing the last fd releases the lock', () => {
  const { path, done } = scratchFile();
  const a = openSync(path, 'r+');
  assert.is(lockWholeFile(a, 'exclusive'), 'locked');
  closeSync(a);
  const b = openSync(path, 'r+');
  try {
    assert.is(lockWholeFile(b, 'exclusive'), 'locked');
  } finally {
    closeSync(b);
    done();
  }
});

test('file lock: another process is refused while this one holds the lock', () => {
  const { path, done } = scratchFile();
  const a = openSync(path, 'r+');
  try {
    assert.is(lockWholeFile(a, 'exclusive'), 'locked');
    const module = fileURLToPath(new URL('./file-lock.js', import.meta.url));
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { openSync } from 'node:fs'; const { lockWholeFile } = await import(${JSON.stringify(module)}); process.stdout.write(lockWholeFile(openSync(${JSON.stringify(path)}, 'r'), 'shared'));`,
      ],
      { encoding: 'utf8' },
    );
    assert.is(child.stdout, 'held-elsewhere', child.stderr);
  } finally {
    closeSync(a);
    done();
  }
});

test.run();
