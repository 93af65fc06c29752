// The machine's QMP commands as a client sees them: a real tsvmm process under the real /dev/kvm, the counter guest
// (a u64 tick count at guest-physical 0x101000, read back through QMP pmemsave), QMP over unix sockets.
//
// The first tests are one session with one VM (-smp 2, -name, two -qmp sockets), in order: it runs, stops, goes on,
// resets, is queried, refuses what it must, is checkpointed and quits. The last test boots its own VM to see a guest
// power itself off while a client watches.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClient, QmpClientError, type QmpEvent } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS, waitFor } from '../../test/support/hang-guard.js';
import { repoRoot } from '../../test/support/cc.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from '../../examples/guests/build.js';
import { counterTicks, expectCounting, expectPaused, ticksReach as reach } from '../../test/support/counter-ticks.js';
import type { PciInfo } from './pci-query.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const RAM_BYTES = 32 << 20;
const STARTUP_LINE = /counter: state at 0x00101000, limit \d+/g;

const dir = scratchDir('tsvmm-qmp-machine-');
const serialFile = join(dir, 'serial.txt');
const secondQmpPath = join(dir, 'second.qmp');
let session: { vm: VmProcess; second: QmpClient } | null = null;

/** The session's VM, started by the first test that needs it. */
async function sessionVm(): Promise<{ vm: VmProcess; second: QmpClient }> {
  if (session) return session;
  const guest = await buildGuest('counter');
  const vm = await startVm(
    [
      '-m',
      '32M',
      '-smp',
      '2',
      '-name',
      'spec-vm',
      '-kernel',
      guest.path,
      '-serial',
      `file:${serialFile}`,
      '-qmp',
      `unix:${secondQmpPath},server=on,wait=off`,
    ],
    { dir, name: 'first' },
  );
  try {
    session = { vm, second: await QmpClient.connect(secondQmpPath) };
  } catch (e) {
    await vm.dispose();
    throw e;
  }
  return session;
}

// The counter helpers, bound to this file's scratch directory.
const ticks = (vm: VmProcess) => counterTicks(vm, dir);
const ticksReach = (vm: VmProcess, value: bigint) => reach(vm, dir, value);

/** The QMP error a command fails with (the test fails if it succeeds). */
async function refusal(vm: VmProcess, command: string, args?: Record<string, unknown>): Promise<QmpClientError> {
  const outcome = await vm.qmp.execute(command, args).then(
    (r) => r,
    (e) => e,
  );
  if (!(outcome instanceof QmpClientError))
    assert.unreachable(`${command} should fail, returned ${JSON.stringify(outcome)}`);
  return outcome as QmpClientError;
}

/** Waits for the next `name` event a client receives after `mark` (an index into its events, taken before acting). */
function eventAfter(client: QmpClient, mark: number, name: string, timeoutMs = HANG_GUARD_MS): Promise<QmpEvent> {
  return client.waitEvent(name, timeoutMs, (e) => client.events.indexOf(e) >= mark);
}

const startupLines = () => [...readFileSync(serialFile, 'latin1').matchAll(STARTUP_LINE)].length;

testIf(
  test,
  skip,
  'qmp machine: a booted guest is running; query-status says so and the counter advances',
  async () => {
    const { vm } = await sessionVm();
    assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
    const first = await ticksReach(vm, 1n);
    await ticksReach(vm, first + 50n);
  },
);

testIf(test, skip, 'qmp machine: both -qmp sockets exist with mode 0600', async () => {
  const { vm } = await sessionVm();
  for (const path of [vm.qmpPath, secondQmpPath]) {
    const stat = statSync(path);
    assert.ok(stat.isSocket(), `${path} is a socket`);
    assert.is(stat.mode & 0o777, 0o600, `${path} has mode 0600`);
  }
});

testIf(
  test,
  skip,
  'qmp machine: stop sends STOP to every QMP socket, status is paused and the counter does not change',
  async () => {
    const { vm, second } = await sessionVm();
    const marks = [vm.qmp.events.length, second.events.length];
    await vm.qmp.execute('stop');
    await eventAfter(vm.qmp, marks[0], 'STOP');
    await eventAfter(second, marks[1], 'STOP');
    await expectPaused(vm, dir);
  },
);

testIf(test, skip, 'qmp machine: cont sends RESUME to every QMP socket and the counter goes on', async () => {
  const { vm, second } = await sessionVm();
  const paused = await ticks(vm);
  const marks = [vm.qmp.events.length, second.events.length];
  await vm.qmp.execute('cont');
  await eventAfter(vm.qmp, marks[0], 'RESUME');
  await eventAfter(second, marks[1], 'RESUME');
  await expectCounting(vm, dir, paused, 50n);
});

testIf(
  test,
  skip,
  'qmp machine: system_reset sends RESET {guest: false, reason: host-qmp-system-reset} and the guest boots again',
  async () => {
    const { vm } = await sessionVm();
    const before = await ticksReach(vm, 300n);
    assert.is(startupLines(), 1);
    const mark = vm.qmp.events.length;
    await vm.qmp.execute('system_reset');
    const reset = await eventAfter(vm.qmp, mark, 'RESET');
    assert.equal(reset.data, { guest: false, reason: 'host-qmp-system-reset' });
    const after = await ticks(vm);
    // A count that went on could only be >= before; how far a restarted one has got by now depends on the machine.
    assert.ok(after < before, `the count starts again: ${before} before the reset, ${after} just after`);
    await waitFor(() => startupLines() >= 2, 'the guest prints its start-up line again');
    await ticksReach(vm, after + 50n);
    assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
  },
);

testIf(
  test,
  skip,
  'qmp machine: query-cpus-fast lists every vCPU with a distinct thread id of the tsvmm process',
  async () => {
    const { vm } = await sessionVm();
    const cpus = (await vm.qmp.execute('query-cpus-fast')) as Array<{
      'cpu-index': number;
      'thread-id': number;
      target: string;
    }>;
    assert.equal(
      cpus.map((c) => c['cpu-index']),
      [0, 1],
    );
    const tids = cpus.map((c) => c['thread-id']);
    assert.ok(
      tids.every((t) => Number.isInteger(t) && t > 0),
      `thread ids ${tids}`,
    );
    assert.is(new Set(tids).size, tids.length, `distinct thread ids ${tids}`);
    assert.ok(!tids.includes(vm.child.pid!), 'a vCPU is not the main thread');
    for (const tid of tids)
      assert.ok(existsSync(`/proc/${vm.child.pid}/task/${tid}`), `thread ${tid} belongs to process ${vm.child.pid}`);
    assert.ok(cpus.every((c) => c.target === 'x86_64'));
  },
);

testIf(test, skip, 'qmp machine: query-kvm, query-name (from -name) and query-version', async () => {
  const { vm } = await sessionVm();
  assert.equal(await vm.qmp.execute('query-kvm'), { enabled: true, present: true });
  assert.equal(await vm.qmp.execute('query-name'), { name: 'spec-vm' });
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(await vm.qmp.execute('query-version'), {
    qemu: { major: 10, minor: 0, micro: 0 },
    package: `tsvmm ${pkg.version}`,
  });
});

testIf(test, skip, 'qmp machine: system_wakeup of a guest that is not suspended is a GenericError', async () => {
  const { vm } = await sessionVm();
  const e = await refusal(vm, 'system_wakeup');
  assert.is(e.errorClass, 'GenericError');
  assert.match(e.desc, /not in suspended state/);
  assert.is((await vm.qmp.execute('query-status')).status, 'running');
});

testIf(
  test,
  skip,
  'qmp machine: pmemsave of memory outside guest RAM is a GenericError and writes no file',
  async () => {
    const { vm } = await sessionVm();
    const cases = [
      { val: RAM_BYTES, size: 8 }, // just past the end of RAM
      { val: RAM_BYTES - 4, size: 8 }, // straddles the end
      { val: 0xfee00000, size: 16 }, // the LAPIC page, not RAM
      { val: 2 ** 40, size: 1 }, // far beyond
    ];
    for (const c of cases) {
      const filename = join(dir, `outside-${c.val}.bin`);
      const e = await refusal(vm, 'pmemsave', { ...c, filename });
      assert.is(e.errorClass, 'GenericError');
      assert.match(e.desc, /^Invalid addr 0x[0-9a-f]+\/size \d+ specified/);
      assert.not.ok(existsSync(filename), 'no file for a refused pmemsave');
    }
  },
);

testIf(test, skip, 'qmp machine: migrate-incoming without -incoming is a GenericError', async () => {
  const { vm } = await sessionVm();
  const e = await refusal(vm, 'migrate-incoming', { uri: `file:${join(dir, 'nothing.state')}` });
  assert.is(e.errorClass, 'GenericError');
  assert.match(e.desc, /'-incoming' was not specified on the command line/);
  assert.is((await vm.qmp.execute('query-status')).status, 'running');
});

testIf(
  test,
  skip,
  'qmp machine: after cpr-save the VM is postmigrate and cont is a GenericError that says why; the guest stays stopped',
  async () => {
    const { vm } = await sessionVm();
    await vm.qmp.execute('cpr-save', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
    assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'postmigrate' });
    const saved = await ticks(vm);
    const e = await refusal(vm, 'cont');
    assert.is(e.errorClass, 'GenericError');
    assert.match(e.desc, /saved for a restart elsewhere.*run the same guest twice/);
    await sleep(100);
    assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'postmigrate' });
    assert.is(await ticks(vm), saved, 'the guest did not run again');
  },
);

testIf(
  test,
  skip,
  'qmp machine: quit sends SHUTDOWN {guest: false, reason: host-qmp-quit} to every socket, exits 0 and removes the sockets',
  async () => {
    const { vm, second } = await sessionVm();
    await vm.qmp.execute('quit');
    const shutdown = await vm.qmp.waitEvent('SHUTDOWN');
    assert.equal(shutdown.data, { guest: false, reason: 'host-qmp-quit' });
    assert.equal((await second.waitEvent('SHUTDOWN')).data, { guest: false, reason: 'host-qmp-quit' });
    assert.is(await vm.exited, 0, `exit status after quit:\n${vm.stderr}`);
    assert.not.ok(existsSync(vm.qmpPath), 'the first QMP socket is removed');
    assert.not.ok(existsSync(secondQmpPath), 'the second QMP socket is removed');
  },
);

testIf(
  test,
  skip,
  'qmp machine: a guest debug-exit while a client is connected sends SHUTDOWN {guest: true, reason: guest-shutdown}; tsvmm exits with the guest status',
  async () => {
    const guest = await buildGuest('counter');
    // -S: the client is connected before the guest can run its 100 ticks and leave.
    const vm = await startVm(
      [
        '-m',
        '32M',
        '-kernel',
        guest.path,
        '-append',
        'ticks=100',
        '-device',
        'isa-debug-exit',
        '-serial',
        'null',
        '-S',
      ],
      { dir, name: 'exiting' },
    );
    try {
      assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'prelaunch' });
      await vm.qmp.execute('cont');
      const shutdown = await vm.qmp.waitEvent('SHUTDOWN');
      assert.equal(shutdown.data, { guest: true, reason: 'guest-shutdown' });
      assert.is(await vm.exited, 1, `the counter's debug-exit 0 is status (0 << 1) | 1:\n${vm.stderr}`);
    } finally {
      await vm.dispose();
    }
  },
);

testIf(
  test,
  skip,
  'qmp machine: query-pci lists the host bridge and each virtio function with its ids, class, INTx line and where its BARs decode',
  async () => {
    const guest = await buildGuest('counter');
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const vm = await startVm(
      [
        '-m',
        '32M',
        '-kernel',
        guest.path,
        '-serial',
        'null',
        '-S',
        '-drive',
        `file=${disk},if=none,id=d0,format=raw`,
        '-device',
        'virtio-blk-pci,drive=d0',
        '-device',
        'virtio-rng-pci',
      ],
      { dir, name: 'pci' },
    );
    try {
      const [bus0] = (await vm.qmp.execute('query-pci')) as PciInfo[];
      assert.is(bus0.bus, 0);
      const [host, blk, rng] = bus0.devices;
      assert.equal([host.slot, blk.slot, rng.slot], [0, 1, 2]);
      assert.equal(host.class_info, { class: 0x0600, desc: 'Host bridge' });
      assert.equal(host.regions, []);
      assert.equal(blk.id, { vendor: 0x1af4, device: 0x1042, subsystem: 0x1100, 'subsystem-vendor': 0x1af4 });
      assert.equal(rng.id.device, 0x1044);
      assert.equal(blk.class_info, { class: 0x0100, desc: 'SCSI controller' });
      // INTA# of slot 1 drives GSI 17, of slot 2 GSI 18 (16 + (slot + pin - 1) % 8), as INTERRUPT_LINE says.
      assert.equal([blk.irq_pin, blk.irq, rng.irq], [1, 17, 18]);
      // As firmware would have placed them: the MSI-X BAR (1) and the 64-bit virtio BAR (4), decoding in the PCI hole.
      for (const dev of [blk, rng]) {
        const bars = dev.regions.map((r) => r.bar);
        assert.equal(bars, [1, 4]);
        const [msix, modern] = dev.regions;
        assert.equal(
          { ...msix, address: 0 },
          { bar: 1, type: 'memory', address: 0, size: 0x1000, prefetch: false, mem_type_64: false },
        );
        assert.equal(
          { ...modern, address: 0 },
          { bar: 4, type: 'memory', address: 0, size: 0x4000, prefetch: true, mem_type_64: true },
        );
        for (const r of dev.regions)
          assert.ok(
            r.address >= 0xc0000000 && r.address + r.size <= 0xe0000000 && r.address % r.size === 0,
            `BAR ${r.bar} at ${r.address.toString(16)}`,
          );
      }
    } finally {
      await vm.dispose();
    }
  },
);

test.after(async () => {
  if (session) {
    session.second.close();
    await session.vm.dispose();
  }
  removeDir(dir);
});

test.run();
