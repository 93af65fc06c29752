// Which host files become guest RAM: only a regular file of this user that nobody else can write, reached without a
// symlink, and locked so that one RAM file backs one VM. A refused file is left exactly as it was.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { fcntl } from '../sys/libc.js';
import { openBackend, openBackendFromRecord, RamBackendError } from './backends.js';

const MiB = 1024 * 1024;
const NOBODY = 65534;
const notRoot = process.geteuid?.() === 0 ? null : 'needs root to hand a file to another owner (chown)';

const dirs: string[] = [];
/** A private directory in /dev/shm (where RAM files live), removed at the end. */
function scratchDir(): string {
  const dir = mkdtempSync('/dev/shm/tsvmm-trust-');
  dirs.push(dir);
  return dir;
}
test.after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A file as a planter leaves it: content, size and mode, to compare after the refusal. */
function plant(path: string, { mode, size = 2 * MiB, uid }: { mode: number; size?: number; uid?: number }): void {
  writeFileSync(path, Buffer.alloc(size, 0x5a));
  chmodSync(path, mode);
  if (uid !== undefined) chownSync(path, uid, uid);
}

function snapshot(path: string): { mode: number; uid: number; size: number; sum: number } {
  const st = statSync(path);
  const bytes = readFileSync(path);
  let sum = 0;
  for (const b of bytes) sum = (sum + b) | 0;
  return { mode: st.mode, uid: st.uid, size: st.size, sum };
}

function refused(fn: () => unknown, pattern: RegExp): void {
  try {
    const b = fn() as { close(): void };
    b.close();
  } catch (e) {
    assert.instance(e, RamBackendError, String(e));
    assert.match((e as Error).message, pattern);
    assert.not.match((e as Error).message, /\n/, 'one line');
    return;
  }
  assert.unreachable(`expected a refusal matching ${pattern}`);
}

testIf(
  test,
  notRoot,
  'RAM file: one owned by another user is refused, naming its owner and mode, and left untouched',
  () => {
    const path = join(scratchDir(), 'vm0');
    plant(path, { mode: 0o600, uid: NOBODY });
    const before = snapshot(path);
    refused(
      () => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }),
      new RegExp(`^memory-backend-file ${path}: refused: the file is owned by uid ${NOBODY} with mode 0600;`),
    );
    assert.equal(snapshot(path), before);
  },
);

testIf(test, notRoot, 'RAM file: an empty one planted by another user is neither grown nor mapped', () => {
  const path = join(scratchDir(), 'vm0');
  plant(path, { mode: 0o666, size: 0, uid: NOBODY });
  refused(
    () => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }),
    new RegExp(`owned by uid ${NOBODY} with mode 0666`),
  );
  assert.is(statSync(path).size, 0);
});

test('RAM file: one of this user that group or others may write (0666, 0620) is refused and left untouched', () => {
  for (const mode of [0o666, 0o620]) {
    const path = join(scratchDir(), 'vm0');
    plant(path, { mode });
    const before = snapshot(path);
    refused(
      () => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }),
      new RegExp(`refused: the file is owned by uid \\d+ with mode 0${mode.toString(8)};.*chmod 600`),
    );
    assert.equal(snapshot(path), before);
  }
});

test('RAM file: a symlink is refused, not followed: its target stays as it was, a dangling one creates nothing', () => {
  const dir = scratchDir();
  const target = join(dir, 'target');
  plant(target, { mode: 0o600 });
  const before = snapshot(target);
  const link = join(dir, 'vm0');
  symlinkSync(target, link);
  refused(
    () => openBackend({ kind: 'file', path: link, size: 2 * MiB, share: true }),
    /^memory-backend-file .*vm0: refused: the path is a symbolic link/,
  );
  assert.equal(snapshot(target), before);

  const dangling = join(dir, 'vm1');
  symlinkSync(join(dir, 'not-yet'), dangling);
  refused(() => openBackend({ kind: 'file', path: dangling, size: 2 * MiB, share: true }), /symbolic link/);
  assert.not.ok(existsSync(join(dir, 'not-yet')), 'nothing created where the link points');
  assert.ok(lstatSync(dangling).isSymbolicLink());
});

test('RAM file: a FIFO planted at the path is refused without blocking the open', () => {
  const path = join(scratchDir(), 'vm0');
  execFileSync('mkfifo', ['-m', '600', path]);
  refused(() => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }), /not a regular file/);
});

test('RAM file: a file tsvmm creates is 0600 whatever the umask', () => {
  const path = join(scratchDir(), 'vm0');
  const old = process.umask(0);
  try {
    openBackend({ kind: 'file', path, size: 2 * MiB, share: true }).close();
  } finally {
    process.umask(old);
  }
  assert.is(statSync(path).mode & 0o7777, 0o600);
});

test('RAM file: a second VM on the same file is refused while the first holds it, and gets it once it is closed', () => {
  const path = join(scratchDir(), 'vm0');
  const first = openBackend({ kind: 'file', path, size: 2 * MiB, share: true });
  refused(
    () => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }),
    new RegExp(`^memory-backend-file ${path}: another process holds a lock on it \\(failed to get the write lock`),
  );
  // A private mapping only reads the file, but must not see another VM's writes either.
  refused(() => openBackend({ kind: 'file', path, size: 2 * MiB, share: false }), /read lock/);
  first.close();
  openBackend({ kind: 'file', path, size: 2 * MiB, share: true }).close();
});

test('RAM file: private mappings of one file (share=off) may coexist, and keep a writer out', () => {
  const path = join(scratchDir(), 'template');
  plant(path, { mode: 0o600 });
  const a = openBackend({ kind: 'file', path, size: 2 * MiB, share: false });
  const b = openBackend({ kind: 'file', path, size: 2 * MiB, share: false });
  try {
    refused(() => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }), /write lock/);
  } finally {
    a.close();
    b.close();
  }
});

test('RAM file: an fd handed over (cpr-transfer, cpr-exec) adopts the old lock instead of fighting it', () => {
  const path = join(scratchDir(), 'vm0');
  const old = openBackend({ kind: 'file', path, size: 2 * MiB, share: true });
  const F_DUPFD_CLOEXEC = 1030;
  const passed = fcntl(old.fd, F_DUPFD_CLOEXEC, 3); // what SCM_RIGHTS gives the new process: the same description
  const adopted = openBackendFromRecord(old.record(), { fd: passed });
  old.close(); // the old process ends
  try {
    refused(() => openBackend({ kind: 'file', path, size: 2 * MiB, share: true }), /another process holds a lock/);
  } finally {
    adopted.close();
  }
});

test.run();
