// Liveness: neither the guest nor a host output nobody reads can keep tsvmm from stopping, answering QMP or quitting.
// Real tsvmm processes under the real /dev/kvm (the rig where there is none).
//
// The issue asks for answers "within 1 s"; the bounds here are PROMPT_MS (10 s), because the rig runs tsvmm under
// TCG on a shared host where a QMP round trip alone can take seconds. They still fail before the fixes: there a stop
// failed after Machine.pause's own 5 s time-out (an error, not an answer), and the VM never got unstuck.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { waitFor } from '../../test/support/hang-guard.js';
import { counterTicks, expectCounting, expectPaused, ticksReach } from '../../test/support/counter-ticks.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { stopThread } from '../sys/libc.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, patchOutloop, toolchainUnavailable, writeGuestVariant } from '../../examples/guests/build.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** How long a QMP answer or an exit may take here (see the header): a hang guard with room for a loaded rig. */
const PROMPT_MS = 10_000;

const dir = scratchDir('tsvmm-liveness-');

/** Runs `act` and returns how long it took in ms. */
async function timed(act: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await act();
  return performance.now() - started;
}

async function quitPromptly(vm: VmProcess): Promise<void> {
  const quit = vm.qmp.execute('quit').catch(() => {}); // the answer may be lost as the process ends
  const took = await timed(() =>
    Promise.race([vm.exited, sleep(PROMPT_MS).then(() => assert.unreachable(`quit: no exit in ${PROMPT_MS} ms`))]),
  );
  await quit;
  assert.ok(took < PROMPT_MS, `quit took ${took} ms`);
}

testIf(
  test,
  skip,
  'liveness: a guest that queues 16 virtio-blk reads of 4 GiB each (1024-entry indirect chains onto one 4 MiB buffer) cannot hold up QMP stop; query-status tells the truth and cont has the guest counting again',
  async () => {
    const guest = await buildGuest('blk-flood');
    const disk = join(dir, 'flood.img');
    const fd = openSync(disk, 'w');
    ftruncateSync(fd, 4 * 2 ** 30); // sparse: every request lies inside the disk and is served, slowly
    closeSync(fd);
    const serial = join(dir, 'flood-serial.txt');
    const vm = await startVm(
      [
        '-m',
        '64M',
        '-kernel',
        guest.path,
        '-drive',
        `file=${disk},if=none,id=d0,format=raw`,
        '-device',
        'virtio-blk-pci,drive=d0',
        '-serial',
        `file:${serial}`,
      ],
      { dir, name: 'flood' },
    );
    try {
      await waitFor(
        () => existsSync(serial) && readFileSync(serial, 'latin1').includes('blk-flood: queued'),
        'the guest queues its requests',
        () => `${existsSync(serial) ? readFileSync(serial, 'latin1') : ''}\n${vm.stderr}`,
      );
      await sleep(100);
      const stopTook = await timed(() => vm.qmp.execute('stop', undefined, PROMPT_MS));
      assert.ok(stopTook < PROMPT_MS, `stop took ${stopTook} ms`);
      const stopped = await expectPaused(vm, dir, 300);
      await vm.qmp.execute('cont', undefined, PROMPT_MS);
      await expectCounting(vm, dir, stopped, 10n, PROMPT_MS);
      // Still serving the flood (nothing was lost or failed: the device is not broken), and stoppable again.
      assert.not.match(vm.stderr, /needs reset|failed/);
      assert.ok((await timed(() => vm.qmp.execute('stop', undefined, PROMPT_MS))) < PROMPT_MS);
      await vm.qmp.execute('cont', undefined, PROMPT_MS);
      await quitPromptly(vm);
    } finally {
      await vm.dispose();
      rmSync(disk, { force: true });
    }
  },
);

testIf(
  test,
  skip,
  'liveness: -serial pipe:P with nobody reading P.out and a guest writing to COM1 (16 MiB, far past the FIFO): query-status and stop answer, quit exits',
  async () => {
    const built = await buildGuest('outloop');
    const image = await writeGuestVariant(
      'outloop-com1',
      // Enough OUTs that the guest is still writing when stopped, even on a fast host (each is an exit).
      patchOutloop(readFileSync(built.path), { iterations: 1 << 24, port: 0x3f8, value: 0x41 }),
    );
    const pipe = join(dir, 'com1');
    execFileSync('mkfifo', [`${pipe}.in`, `${pipe}.out`]);
    const vm = await startVm(
      [
        '-device',
        `loader,file=${image},addr=0x${built.loadAddress!.toString(16)},mode=${built.mode}`,
        '-device',
        'isa-debug-exit',
        '-serial',
        `pipe:${pipe}`,
      ],
      { dir, name: 'pipe' },
    );
    try {
      // The FIFO (64 KiB) fills within the first 64 Ki OUTs; give the guest time to be well past that.
      await sleep(2000);
      for (let i = 0; i < 3; i++) {
        const took = await timed(() => vm.qmp.execute('query-status', undefined, PROMPT_MS));
        assert.ok(took < PROMPT_MS, `query-status took ${took} ms`);
      }
      const stopTook = await timed(() => vm.qmp.execute('stop', undefined, PROMPT_MS));
      assert.ok(stopTook < PROMPT_MS, `stop took ${stopTook} ms`);
      assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'paused' });
      await quitPromptly(vm);
    } finally {
      await vm.dispose();
    }
  },
);

testIf(
  test,
  skip,
  'liveness: a vCPU that cannot park (its thread stopped with ptrace) fails QMP stop after the 5 s park time-out; the VM stays running and says so, and once the thread goes on, stop and cont work',
  async () => {
    const guest = await buildGuest('counter');
    const vm = await startVm(['-m', '16M', '-smp', '2', '-kernel', guest.path, '-serial', 'null'], {
      dir,
      name: 'stuck-vcpu',
    });
    try {
      await ticksReach(vm, dir, 50n);
      const cpus = (await vm.qmp.execute('query-cpus-fast')) as { 'cpu-index': number; 'thread-id': number }[];
      const tid = cpus.find((c) => c['cpu-index'] === 0)!['thread-id'];
      const stuck = stopThread(tid);
      let resumed = false;
      try {
        const error = await vm.qmp.execute('stop', undefined, PROMPT_MS).then(
          () => null,
          (e: unknown) => e,
        );
        assert.instance(error, QmpClientError, 'stop fails');
        assert.match((error as QmpClientError).desc, /vCPUs did not stop within 5 s/);
        // All or nothing: the other vCPU and the I/O thread were let go again, and the VM says what it is.
        assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
        stuck.resume();
        resumed = true;
      } finally {
        if (!resumed) stuck.resume();
      }
      await expectCounting(vm, dir, await counterTicks(vm, dir), 20n, PROMPT_MS);
      await vm.qmp.execute('stop', undefined, PROMPT_MS);
      const stopped = await expectPaused(vm, dir);
      await vm.qmp.execute('cont', undefined, PROMPT_MS);
      await expectCounting(vm, dir, stopped, 20n, PROMPT_MS);
      await quitPromptly(vm);
    } finally {
      await vm.dispose();
    }
  },
);

test.after(() => {
  for (const f of existsSync(dir) ? readdirSync(dir) : []) rmSync(join(dir, f), { force: true, recursive: true });
  removeDir(dir);
});
test.run();
