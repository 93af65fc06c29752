// An EINTR storm does not lose a guest's exits or crash tsvmm: while the virtio-probe guest works on virtio-blk and
// virtio-rng in rounds (each round writes a sector, reads it back and compares, takes 64 bytes of entropy, and
// checks that each completion raised its MSI-X interrupt), every thread of tsvmm — vCPU, I/O thread, Node's own —
// is sent the kick signal (SIGUSR2, the one that interrupts KVM_RUN) again and again for 30 s. The guest must go on
// through every round (a lost completion or interrupt fails a round in the guest's own checks), during the storm and
// after it, and each round's sector must be in the image file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir } from '../../test/support/vm-process.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { signalStorm } from '../../test/support/signal-storm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { blkRoundsMismatch, virtioProbeCommonArgs } from './virtio-probe-host.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const SIGUSR2 = 12;
const STORM_MS = 30_000;
// More rounds than any host gets through in the test: it quits the guest a few rounds after the storm.
const ROUNDS = 2000;
const AFTER_STORM_ROUNDS = 5;
const DISK_SECTORS = 2048 + 64; // the rounds' sectors start at 16
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const rounds = (out: string) => [...out.matchAll(/^virtio-probe: round (\d+) ok\r?\n/gm)].length;

testIf(
  test,
  skip,
  `SIGUSR2 at every tsvmm thread every ~100 µs for ${STORM_MS / 1000} s while the guest does virtio-blk and virtio-rng rounds: no lost exit or interrupt (every round ok, during the storm and after it), no crash`,
  async () => {
    const guest = await buildGuest('virtio-probe');
    const dir = scratchDir('tsvmm-storm-');
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, Buffer.alloc(DISK_SECTORS * 512, 0xee));
    const vm = await startVm(
      virtioProbeCommonArgs({
        kernel: guest.path,
        devices: ['blk', 'rng'],
        disk,
        socketDir: dir,
        rounds: ROUNDS,
        roundDelayMs: 20,
      }),
      { dir, name: 'storm' },
    );
    const context = () => `\nCOM1:\n${vm.stdout.slice(-2000)}\nstderr:\n${vm.stderr}`;
    try {
      // The kick signal has its handler once the machine runs (before, it would end the process as it should).
      const deadline = Date.now() + HANG_GUARD_MS;
      while (rounds(vm.stdout) < 1) {
        if (vm.child.exitCode !== null) assert.unreachable(`tsvmm ended before the first round${context()}`);
        if (Date.now() > deadline) assert.unreachable(`no round within ${HANG_GUARD_MS} ms${context()}`);
        await sleep(10);
      }
      const before = rounds(vm.stdout);
      const storm = await signalStorm(vm.child.pid!, SIGUSR2, STORM_MS);
      const during = rounds(vm.stdout) - before;
      console.log(
        `storm: ${storm.sent} signals to up to ${storm.threads} threads in ${storm.ms} ms (${Math.round(storm.sent / (storm.ms / 1000))}/s); ${during} rounds meanwhile`,
      );
      assert.ok(storm.sent > 1000, `the storm reached tsvmm (${storm.sent} signals)`);
      assert.ok(during > 0, `the guest made rounds during the storm${context()}`);
      // The storm is over: the guest goes on (its pace depends on the host, so no time is asserted).
      const after = rounds(vm.stdout) + AFTER_STORM_ROUNDS;
      const deadline2 = Date.now() + HANG_GUARD_MS;
      while (rounds(vm.stdout) < after) {
        if (vm.child.exitCode !== null) assert.unreachable(`tsvmm ended after the storm${context()}`);
        if (Date.now() > deadline2) assert.unreachable(`the guest stopped making rounds after the storm${context()}`);
        await sleep(10);
      }
      assert.not.match(vm.stdout, /FAILED/, `no round failed${context()}`);
      await vm.qmp.execute('quit');
      assert.is(await vm.exited, 0, `tsvmm exits 0 after quit${context()}`);
      const done = rounds(vm.stdout);
      assert.is(blkRoundsMismatch(readFileSync(disk), done), null, `each of the ${done} rounds wrote its sector`);
    } finally {
      await vm.dispose();
      removeDir(dir);
    }
  },
);

test.run();
