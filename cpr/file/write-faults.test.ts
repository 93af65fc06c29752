// What a save that fails half-way leaves behind: a writer killed at 10, 50 and 90 % of a 2 GiB RAM save, and a
// save into a file system that runs out of space. In every case the previous checkpoint still verifies, and the
// only trace of the failed save is a temp file that the next save removes (a killed writer cannot) — or none.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, readCheckpoint, readRam } from './checkpoint-file.js';
import { writePatternCheckpoint } from '../testing/big-checkpoint-writer.js';
import { testIf } from '../../test/support/skip.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { failingExt4, hostLacksFailingDisks } from '../../test/support/failing-disk.js';

const GIB = 1 << 30;
const writerScript = fileURLToPath(new URL('../testing/big-checkpoint-writer.js', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The previous checkpoint: a small one, whose RAM's first bytes the test knows. */
function writeGood(path: string): void {
  writePatternCheckpoint(path, 4 << 20);
}

function assertGood(path: string): void {
  const checkpoint = readCheckpoint(path); // verifies every byte against the trailer's checksum
  assert.is(checkpoint.ram?.length, 4 << 20, 'the previous checkpoint is the one that was there');
  const head = new Uint8Array(16);
  readRam(checkpoint, 8, 8, head);
  assert.ok(
    head.subarray(0, 8).some((b) => b !== 0),
    'its RAM reads back',
  );
}

/** Starts a writer of a 2 GiB save to `path` and SIGKILLs it once its temp file holds `percent` % of the RAM. */
async function killWriterAt(path: string, percent: number): Promise<{ pid: number; killedAt: number }> {
  const child = spawn(process.execPath, [writerScript, path, String(2 * GIB)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  const temp = `${path}.tmp-${child.pid}`;
  const deadline = Date.now() + HANG_GUARD_MS;
  let size = 0;
  while (size < (percent / 100) * 2 * GIB) {
    if (child.exitCode !== null)
      assert.unreachable(`the writer ended (${child.exitCode}) before ${percent} %: ${stderr}`);
    if (Date.now() > deadline) assert.unreachable(`the writer's temp file did not reach ${percent} % (${size} bytes)`);
    await sleep(2);
    size = existsSync(temp) ? statSync(temp).size : 0;
  }
  child.kill('SIGKILL');
  assert.is(await exited, 'SIGKILL', `the writer was killed mid-save, not finished: ${stderr}`);
  return { pid: child.pid!, killedAt: Math.round((100 * statSync(temp).size) / (2 * GIB)) };
}

for (const percent of [10, 50, 90])
  test(`a writer SIGKILLed at ${percent} % of a 2 GiB RAM save: the previous checkpoint still verifies; its temp file is the only leftover, and the next save removes it`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-save-kill-'));
    try {
      const path = join(dir, 'vm.cpr');
      writeGood(path);
      const { pid, killedAt } = await killWriterAt(path, percent);
      assert.ok(killedAt >= percent && killedAt < 100, `killed at ${killedAt} %`);
      assertGood(path);
      assert.equal(readdirSync(dir).sort(), ['vm.cpr', `vm.cpr.tmp-${pid}`]);
      writeGood(path);
      assert.equal(readdirSync(dir), ['vm.cpr'], "the next save removed the dead writer's temp file");
      assertGood(path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

test('a temp file of a writer that is still alive is another save in progress: the next save leaves it alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-save-alive-'));
  try {
    const path = join(dir, 'vm.cpr');
    const alive = process.ppid; // the test runner: alive, and not this process
    execFileSync('touch', [`${path}.tmp-${alive}`]);
    writeGood(path);
    assert.equal(readdirSync(dir).sort(), ['vm.cpr', `vm.cpr.tmp-${alive}`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A 6 MiB tmpfs mounted on a fresh directory, or why there cannot be one here. */
function smallFileSystem(): { dir: string; unmount: () => void } | string {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-enospc-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tsvmm-enospc', dir], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    return `mounting a small tmpfs needs root (CAP_SYS_ADMIN): ${(e as Error).message.split('\n')[0]}`;
  }
  return {
    dir,
    unmount: () => {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const fs = process.getuid?.() === 0 ? smallFileSystem() : 'mounting a small tmpfs needs root';
testIf(
  test,
  typeof fs === 'string' ? fs : null,
  'a save that runs out of space (ENOSPC on a 6 MiB tmpfs) fails with a clear error naming it; the previous checkpoint still verifies and no temp file is left',
  () => {
    const { dir } = fs as { dir: string };
    const path = join(dir, 'vm.cpr');
    writeGood(path);
    assert.throws(
      () => writePatternCheckpoint(path, 16 << 20),
      (e: Error) => e instanceof CheckpointError && /ENOSPC|no space/i.test(e.message) && e.message.includes(path),
    );
    assertGood(path);
    assert.equal(readdirSync(dir), ['vm.cpr']);
  },
);

testIf(
  test,
  hostLacksFailingDisks(),
  'a save onto a disk that fails under its file system (ext4 on a loop device over a full tmpfs: the fsync reports the lost writeback) fails with a clear error naming it; the previous checkpoint still verifies from the disk, and no temp file is left',
  () => {
    const disk = failingExt4(10 << 20); // room for ext4's metadata and the 4 MiB checkpoint, not for 16 MiB more
    try {
      const path = join(disk.path, 'vm.cpr');
      writeGood(path);
      assert.throws(
        () => writePatternCheckpoint(path, 16 << 20),
        (e: Error) => e instanceof CheckpointError && /EIO|ENOSPC|I\/O error|no space/i.test(e.message),
      );
      assert.equal(readdirSync(disk.path).sort(), ['lost+found', 'vm.cpr']);
      disk.remount(); // what follows is read from the disk, not from the page cache
      assertGood(path);
      assert.equal(readdirSync(disk.path).sort(), ['lost+found', 'vm.cpr']);
    } finally {
      disk.cleanup();
    }
  },
);

test.after(() => {
  if (typeof fs !== 'string') fs.unmount();
});

test.run();
