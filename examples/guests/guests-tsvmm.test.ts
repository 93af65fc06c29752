// Every test guest, booted by the tsvmm command line under the real /dev/kvm: what it prints and how it exits.
// The same guests run under QEMU in guests-qemu.test.ts — one set of guests, two VMMs, the same results.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, readSmpCounters, toolchainUnavailable, COUNTER_STATE_ADDR, type GuestName } from './build.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const exitDevice = ['-device', 'isa-debug-exit'];
const PASSED = 1; // isa-debug-exit value 0

async function boot(name: GuestName, args: string[] = [], timeoutSeconds = 30) {
  const guest = await buildGuest(name);
  const image =
    guest.format === 'flat'
      ? ['-device', `loader,file=${guest.path},addr=0x${guest.loadAddress!.toString(16)},mode=${guest.mode}`]
      : ['-kernel', guest.path];
  return runTsvmm(['run', '-m', '64M', ...exitDevice, ...image, '--timeout', String(timeoutSeconds), ...args]);
}

testIf(test, skip, 'guests: hello prints its greeting on COM1 and exits through isa-debug-exit', async () => {
  const r = await boot('hello');
  assert.is(r.stdout, 'Hello from tsvmm guest\n');
  assert.is(r.status, PASSED);
});

testIf(
  test,
  skip,
  'guests: exit-code takes its value from the multiboot command line (-append code=7 → status 15)',
  async () => {
    const r = await boot('exit-code', ['-append', 'code=7']);
    assert.match(r.stdout, /exit-code: exiting with 7/);
    assert.is(r.status, (7 << 1) | 1);
  },
);

testIf(
  test,
  skip,
  'guests: smp brings up every AP with INIT/SIPI through the in-kernel LAPIC, and each reports',
  async () => {
    const r = await boot('smp', ['-smp', '4']);
    for (const cpu of [1, 2, 3]) assert.match(r.stdout, new RegExp(`^cpu ${cpu} up$`, 'm'));
    assert.match(r.stdout, /all 4 cpus up/);
    assert.is(r.status, PASSED);
  },
);

testIf(test, skip, 'guests: timer receives 100 PIT interrupts through the in-kernel PIC', async () => {
  const r = await boot('timer');
  assert.match(r.stdout, /timer: 100 ticks/);
  assert.is(r.status, PASSED);
});

testIf(test, skip, 'guests: rtc reads a time within a few seconds of the host clock (UTC)', async () => {
  const before = Date.now();
  const r = await boot('rtc');
  const after = Date.now();
  const m = /rtc: (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const guestMs = Date.UTC(+m![1], +m![2] - 1, +m![3], +m![4], +m![5], +m![6]);
  // Within the run (however long it took on this machine), give or take the RTC's whole seconds and a few more.
  assert.ok(
    guestMs >= before - 5000 && guestMs <= after + 5000,
    `guest time ${new Date(guestMs).toISOString()} vs host ${new Date(before).toISOString()} .. ${new Date(after).toISOString()}`,
  );
  assert.is(r.status, PASSED);
});

testIf(test, skip, 'guests: fwcfg reads the signature and the CPU count tsvmm gives on -smp', async () => {
  const r = await boot('fwcfg', ['-smp', '3']);
  assert.match(r.stdout, /fw_cfg: QEMU cpus=3/);
  assert.is(r.status, PASSED);
});

testIf(
  test,
  skip,
  'guests: counter ticks in guest RAM; the count in a shared RAM file and its debugcon dots agree',
  async () => {
    const ramFile = `/dev/shm/tsvmm-test-counter-${process.pid}`;
    const dots = `/tmp/tsvmm-test-counter-${process.pid}.debugcon`;
    try {
      const r = await boot('counter', [
        '-append',
        'ticks=250',
        '-debugcon',
        `file:${dots}`,
        '-object',
        `memory-backend-file,id=ram0,size=64M,mem-path=${ramFile},share=on`,
        '-machine',
        'memory-backend=ram0',
      ]);
      assert.match(r.stdout, /counter: 100\ncounter: 200\n/);
      assert.match(r.stdout, /counter: done 250/);
      assert.is(r.status, PASSED);
      const ram = readFileSync(ramFile);
      assert.is(ram.readBigUInt64LE(COUNTER_STATE_ADDR), 250n);
      assert.is(readFileSync(dots, 'latin1'), '.'.repeat(250));
    } finally {
      rmSync(ramFile, { force: true });
      rmSync(dots, { force: true });
    }
  },
);

testIf(test, skip, 'guests: realmode-hello starts from the flat loader in real mode', async () => {
  const r = await boot('realmode-hello');
  assert.is(r.stdout, 'Hello from real mode\n');
  assert.is(r.status, PASSED);
});

testIf(test, skip, 'guests: longmode-hello starts from the flat loader directly in 64-bit long mode', async () => {
  const r = await boot('longmode-hello');
  assert.is(r.stdout, 'Hello from long mode (EFER.LMA=1)\n');
  assert.is(r.status, PASSED);
});

testIf(test, skip, 'guests: outloop finishes its out loop and exits', async () => {
  const r = await boot('outloop');
  assert.is(r.stdout, 'outloop: done\n');
  assert.is(r.status, PASSED);
});

testIf(
  test,
  skip,
  'guests: smp-counter keeps all 4 vCPUs taking LAPIC timer ticks; every counter in the RAM file reaches ticks=200',
  async () => {
    const ramFile = `/dev/shm/tsvmm-test-smp-counter-${process.pid}`;
    try {
      const r = await boot('smp-counter', [
        '-smp',
        '4',
        '-append',
        'ticks=200',
        '-object',
        `memory-backend-file,id=ram0,size=64M,mem-path=${ramFile},share=on`,
        '-machine',
        'memory-backend=ram0',
      ]);
      assert.match(r.stdout, /^smp-counter: state at 0x00101000, 4 cpus, limit 200, lapic count \d+$/m);
      assert.match(r.stdout, /^smp-counter: 4 cpus counting$/m);
      assert.match(r.stdout, /^smp-counter: 100 \d+ \d+ \d+$/m);
      const done = /^smp-counter: done (\d+) (\d+) (\d+) (\d+)$/m.exec(r.stdout);
      assert.ok(done, r.stdout);
      assert.is(r.status, PASSED);
      const printed = done!.slice(1).map(BigInt);
      const counters = readSmpCounters(readFileSync(ramFile), 4);
      for (let cpu = 0; cpu < 4; cpu++) {
        assert.ok(printed[cpu] >= 200n, `cpu ${cpu} printed ${printed[cpu]}`);
        assert.ok(counters[cpu] >= printed[cpu], `cpu ${cpu}: RAM ${counters[cpu]} < printed ${printed[cpu]}`);
      }
    } finally {
      rmSync(ramFile, { force: true });
    }
  },
);

test.run();
