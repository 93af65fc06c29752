// A cpr-save whose checkpoint cannot be written, seen from QMP with a real guest: the counter guest (a u64 tick at
// guest-physical 0x101000) runs, and cpr-save (reboot mode: its 32 MiB of RAM go into the file) targets a file
// system that runs out of space (a 6 MiB tmpfs: ENOSPC) and then one whose disk fails underneath (ext4 on a loop
// device over a full tmpfs: the fsync reports the lost writeback). Each time: a GenericError that names the path and
// the errno, the guest still running (query-status and the counter), the checkpoint that was at the path before
// still verifying, no temp file left; tsvmm quits 0 at the end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { failingExt4, hostLacksFailingDisks, smallTmpfs, type Scratch } from '../../test/support/failing-disk.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { readCheckpoint } from '../file/checkpoint-file.js';
import { writePatternCheckpoint } from '../testing/big-checkpoint-writer.js';

const skip = kvmMissing() ?? (await toolchainUnavailable()) ?? hostLacksFailingDisks();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MIB = 1 << 20;

const dir = scratchDir('tsvmm-save-io-errors-');
let vm: VmProcess | null = null;
let fileSeq = 0;

async function runningVm(): Promise<VmProcess> {
  if (vm) return vm;
  const guest = await buildGuest('counter');
  vm = await startVm(['-m', '32M', '-kernel', guest.path, '-serial', `file:${join(dir, 'serial.txt')}`], {
    dir,
    name: 'saver',
  });
  return vm;
}

/** The guest's tick count, read through QMP pmemsave (into the scratch dir, on a healthy file system). */
async function ticks(v: VmProcess): Promise<bigint> {
  const file = join(dir, `ticks-${fileSeq++}.bin`);
  await v.qmp.execute('pmemsave', { val: COUNTER_STATE_ADDR, size: 8, filename: file });
  const value = readFileSync(file).readBigUInt64LE(0);
  rmSync(file);
  return value;
}

/** The guest runs: query-status says so and the counter moves within the hang guard. */
async function assertRunning(v: VmProcess): Promise<void> {
  assert.equal(await v.qmp.execute('query-status'), { running: true, status: 'running' });
  const from = await ticks(v);
  const deadline = Date.now() + HANG_GUARD_MS;
  while ((await ticks(v)) <= from) {
    if (Date.now() > deadline) assert.unreachable(`the counter stayed at ${from}:\n${v.stderr}`);
    await sleep(20);
  }
}

/** cpr-save into `fs` fails naming the path and an errno in `errno`; the earlier checkpoint there is intact. */
async function saveFails(fs: Scratch, errno: RegExp): Promise<void> {
  const v = await runningVm();
  await assertRunning(v);
  const path = join(fs.path, 'vm.cpr');
  writePatternCheckpoint(path, 2 * MIB); // "the previous checkpoint": any good file at the path
  const before = readdirSync(fs.path).sort();
  const outcome = await v.qmp.execute('cpr-save', { filename: path, mode: 'reboot' }).then(
    (r) => r,
    (e) => e,
  );
  if (!(outcome instanceof QmpClientError)) assert.unreachable(`cpr-save succeeded: ${JSON.stringify(outcome)}`);
  const e = outcome as QmpClientError;
  assert.is(e.errorClass, 'GenericError');
  assert.ok(e.desc.includes(path), `the error names the file: ${e.desc}`);
  assert.match(e.desc, errno);
  await assertRunning(v);
  assert.is(readCheckpoint(path).ram?.length, 2 * MIB, 'the previous checkpoint still verifies');
  assert.equal(readdirSync(fs.path).sort(), before, 'no temp file is left');
}

testIf(
  test,
  skip,
  'cpr-save onto a full file system (ENOSPC): a GenericError naming the file and ENOSPC, the guest keeps running, the previous checkpoint still verifies',
  async () => {
    const fs = smallTmpfs(6 * MIB);
    try {
      await saveFails(fs, /ENOSPC|no space/i);
    } finally {
      fs.cleanup();
    }
  },
);

testIf(
  test,
  skip,
  'cpr-save onto a disk that fails under ext4 (its writeback fails): a GenericError naming the file and the errno, the guest keeps running, the previous checkpoint still verifies',
  async () => {
    const fs = failingExt4(10 * MIB);
    try {
      await saveFails(fs, /EIO|ENOSPC|I\/O error|no space/i);
    } finally {
      fs.cleanup();
    }
  },
);

testIf(test, skip, 'after the failed saves tsvmm quits 0', async () => {
  const v = await runningVm();
  await v.qmp.execute('quit');
  assert.is(await v.exited, 0, v.stderr);
});

test.after(async () => {
  await vm?.dispose();
  removeDir(dir);
});

test.run();
