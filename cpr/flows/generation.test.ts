// A reboot-mode checkpoint is tied to the state of the RAM file it leaves in place: once a guest has run on that
// RAM again, the same checkpoint is refused instead of putting old vCPU and device state over newer memory. Real
// tsvmm processes under /dev/kvm (the rig where there is none), RAM on /dev/shm — or, where its tmpfs has no user
// xattrs (before Linux 6.6: the rig's kernel), on a small ext4 mounted from a loop device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { waitFor } from '../../test/support/hang-guard.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { createFileBackend } from '../../src/memory/file-backend.js';
import { readRamGeneration } from '../../src/memory/ram-generation.js';

/** Whether /dev/shm takes the generation xattr. */
function shmHasXattrs(): boolean {
  if (!existsSync('/dev/shm')) return false;
  const path = `/dev/shm/tsvmm-xattr-probe-${process.pid}`;
  const backend = createFileBackend({ path, size: 1 << 20, share: true });
  try {
    return readRamGeneration(backend) !== undefined;
  } finally {
    backend.close();
    rmSync(path, { force: true });
  }
}

/** Null when a loop-mounted ext4 can stand in for /dev/shm; else why not. */
function noExt4Loop(): string | null {
  if (process.getuid?.() !== 0) return 'not root (an ext4 on a loop device stands in for it)';
  if (!existsSync('/dev/loop-control') || spawnSync('losetup', ['--find']).status !== 0) return 'no free loop device';
  if (spawnSync('mkfs.ext4', ['-V']).status !== 0) return 'no mkfs.ext4';
  return null;
}

const shmTakesGeneration = shmHasXattrs();
const noRamDirectory = shmTakesGeneration ? null : noExt4Loop();
const skip =
  kvmMissing() ??
  (await toolchainUnavailable()) ??
  (noRamDirectory && `/dev/shm has no user xattrs (tmpfs: Linux 6.6), and ${noRamDirectory}`);
const RAM = '64M';

/** A directory for the RAM file whose file system carries user xattrs, and how to give it back. */
function ramDirectory(dir: string): { path: string; release(): void } {
  if (shmTakesGeneration) return { path: '/dev/shm', release() {} };
  const image = join(dir, 'ext4.img');
  const path = join(dir, 'ext4');
  mkdirSync(path);
  const run = (command: string, ...args: string[]) => {
    const r = spawnSync(command, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  };
  run('truncate', '-s', '256M', image);
  run('mkfs.ext4', '-q', '-F', image);
  run('mount', '-o', 'loop', image, path);
  return { path, release: () => run('umount', path) };
}

testIf(
  test,
  skip,
  'generation: save A, load A and run on, quit — loading A again is refused naming the mismatch, and the VM still waits for a good one',
  async () => {
    const dir = scratchDir();
    const ramDir = ramDirectory(dir);
    const ramFile = join(ramDir.path, `${dir.split('/').pop()}-ram`);
    const vms: VmProcess[] = [];
    const count = () => readFileSync(ramFile).readBigUInt64LE(COUNTER_STATE_ADDR);
    try {
      const guest = await buildGuest('counter');
      const args = [
        ...['-m', RAM, '-kernel', guest.path, '-serial', 'null'],
        ...['-object', `memory-backend-file,id=ram0,size=${RAM},mem-path=${ramFile},share=on`],
        ...['-machine', 'memory-backend=ram0'],
      ];
      const checkpoint = join(dir, 'a.cpr');
      const first = await startVm(args, { dir, name: 'first' });
      vms.push(first);
      await waitFor(() => existsSync(ramFile) && count() > 50n, 'the counter guest ticks');
      await first.qmp.execute('cpr-save', { filename: checkpoint, mode: 'reboot' });
      const saved = count();
      await first.qmp.execute('quit');
      assert.is(await first.exited, 0);

      const second = await startVm([...args, '-S'], { dir, name: 'second' });
      vms.push(second);
      await second.qmp.execute('cpr-load', { filename: checkpoint, mode: 'reboot' });
      await waitFor(() => count() > saved + 50n, 'the loaded guest counts on');
      await second.qmp.execute('quit');
      assert.is(await second.exited, 0);

      const third = await startVm([...args, '-S'], { dir, name: 'third' });
      vms.push(third);
      const error = await third.qmp.execute('cpr-load', { filename: checkpoint, mode: 'reboot' }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.instance(error, QmpClientError, 'the stale load is refused');
      assert.match(
        (error as QmpClientError).desc,
        new RegExp(
          `^checkpoint ${checkpoint} describes generation [0-9a-f]{32} of guest RAM, but ${ramFile} is at generation [0-9a-f]{32}: a guest has run on that RAM since the save`,
        ),
      );
      assert.equal(await third.qmp.execute('query-status'), { running: false, status: 'prelaunch' });
      await third.qmp.execute('quit');
      assert.is(await third.exited, 0);
    } finally {
      for (const vm of vms) await vm.dispose();
      rmSync(ramFile, { force: true });
      ramDir.release();
      removeDir(dir);
    }
  },
);

test.run();
