// The panic guest under tsvmm (real /dev/kvm) and, for reference, under QEMU: with `-device pvpanic` a guest's
// PANICKED write ends tsvmm with status 126 and a one-line notice; without the device the write goes nowhere and the
// guest ends through isa-debug-exit with its own code.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../../src/util/exit-status.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { debugExitProcessStatus, qemuUnavailable, runQemu } from './qemu-runner.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';

const toolchain = await toolchainUnavailable();
const skip = kvmMissing() ?? toolchain;
const skipQemu = qemuUnavailable() ?? toolchain;

/** The guest's isa-debug-exit value when the PANICKED write did not end the VM (panic.c EXIT_STILL_RUNNING). */
const STILL_RUNNING = 0x22;

async function boot(args: string[]) {
  const guest = await buildGuest('panic');
  return runTsvmm(['run', '-m', '64M', '-device', 'isa-debug-exit', '-kernel', guest.path, '--timeout', '30', ...args]);
}

testIf(
  test,
  skip,
  'panic guest: with -device pvpanic, the PANICKED write ends tsvmm with 126 and a "guest panicked" notice',
  async () => {
    const r = await boot(['-device', 'pvpanic']);
    const context = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.is(r.status, ExitStatus.guestPanic, context);
    assert.is(r.status, 126);
    assert.match(r.stdout, /panic: port 0x00000505 offers events 0x00000003\n/, context);
    assert.match(r.stdout, /panic: reporting a panic\n/);
    assert.not.match(r.stdout, /still running/, context);
    const notices = r.stderr.split('\n').filter((l) => /guest panicked/.test(l));
    assert.is(notices.length, 1, context);
    assert.match(notices[0], /^tsvmm: guest panicked \(pvpanic/);
  },
);

testIf(
  test,
  skip,
  'panic guest: a QMP client hears GUEST_PANICKED {action: poweroff}, then SHUTDOWN {guest: true, reason: guest-panic}, as from QEMU with panic=exit-failure',
  async () => {
    const guest = await buildGuest('panic');
    const dir = scratchDir();
    // -S: the client is connected before the guest runs.
    const vm = await startVm(
      ['-m', '64M', '-device', 'isa-debug-exit', '-device', 'pvpanic', '-kernel', guest.path, '-serial', 'null', '-S'],
      { dir, name: 'panic' },
    );
    try {
      await vm.qmp.execute('cont');
      const panicked = await vm.qmp.waitEvent('GUEST_PANICKED', HANG_GUARD_MS);
      assert.equal(panicked.data, { action: 'poweroff' });
      const shutdown = await vm.qmp.waitEvent('SHUTDOWN', HANG_GUARD_MS);
      assert.equal(shutdown.data, { guest: true, reason: 'guest-panic' });
      assert.is(await vm.exited, 126, vm.stderr);
    } finally {
      await vm.dispose();
      removeDir(dir);
    }
  },
);

/** The panic guest under QMP, started paused so the client sees every event. */
async function panicVm(args: string[]): Promise<{ vm: VmProcess; dir: string }> {
  const guest = await buildGuest('panic');
  const dir = scratchDir();
  const vm = await startVm(
    ['-m', '64M', '-device', 'isa-debug-exit', '-kernel', guest.path, '-serial', 'null', '-S', ...args],
    { dir, name: 'panic' },
  );
  await vm.qmp.execute('cont');
  return { vm, dir };
}

testIf(
  test,
  skip,
  'panic guest: -action panic=pause stops the VM in guest-panicked; cont needs a reset first, after which it boots again',
  async () => {
    const { vm, dir } = await panicVm(['-action', 'panic=pause']);
    try {
      assert.equal((await vm.qmp.waitEvent('GUEST_PANICKED', HANG_GUARD_MS)).data, { action: 'pause' });
      await vm.qmp.waitEvent('STOP', HANG_GUARD_MS);
      assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'guest-panicked' });
      const refused = await vm.qmp.execute('cont').catch((e) => e);
      assert.instance(refused, QmpClientError);
      assert.is(refused.desc, 'Resetting the Virtual Machine is required');
      await vm.qmp.execute('system_reset');
      assert.is((await vm.qmp.execute('query-status')).status, 'prelaunch');
      await vm.qmp.execute('cont');
      // It boots again and panics again: a second GUEST_PANICKED.
      const panics = () => vm.qmp.events.filter((e) => e.event === 'GUEST_PANICKED');
      await vm.qmp.waitEvent('GUEST_PANICKED', HANG_GUARD_MS, (e) => panics().indexOf(e) === 1);
      assert.equal(panics()[1].data, { action: 'pause' });
      await vm.qmp.execute('quit');
      assert.is(await vm.exited, 0);
    } finally {
      await vm.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'panic guest: -action panic=none only reports it (GUEST_PANICKED run) and the guest goes on to its own exit',
  async () => {
    const { vm, dir } = await panicVm(['-action', 'panic=none']);
    try {
      assert.equal((await vm.qmp.waitEvent('GUEST_PANICKED', HANG_GUARD_MS)).data, { action: 'run' });
      assert.is(await vm.exited, debugExitProcessStatus(STILL_RUNNING), vm.stderr);
    } finally {
      await vm.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'panic guest: -action panic=shutdown powers off (status 0); with -no-shutdown the VM stops in shutdown instead',
  async () => {
    const plain = await panicVm(['-action', 'panic=shutdown']);
    try {
      assert.equal((await plain.vm.qmp.waitEvent('GUEST_PANICKED', HANG_GUARD_MS)).data, { action: 'poweroff' });
      assert.equal((await plain.vm.qmp.waitEvent('SHUTDOWN', HANG_GUARD_MS)).data, {
        guest: true,
        reason: 'guest-panic',
      });
      assert.is(await plain.vm.exited, 0);
    } finally {
      await plain.vm.dispose();
      removeDir(plain.dir);
    }
    const kept = await panicVm(['-action', 'panic=shutdown', '-no-shutdown']);
    try {
      assert.equal((await kept.vm.qmp.waitEvent('SHUTDOWN', HANG_GUARD_MS)).data, {
        guest: true,
        reason: 'guest-panic',
      });
      await kept.vm.qmp.waitEvent('STOP', HANG_GUARD_MS);
      assert.equal(await kept.vm.qmp.execute('query-status'), { running: false, status: 'shutdown' });
      assert.is(kept.vm.child.exitCode, null, 'tsvmm is still there');
      await kept.vm.qmp.execute('quit');
      assert.is(await kept.vm.exited, 0);
    } finally {
      await kept.vm.dispose();
      removeDir(kept.dir);
    }
  },
);

testIf(
  test,
  skip,
  'panic guest: with ACPI the pvpanic device is there by default; -machine pvpanic=off removes it (the port floats high, the write is ignored)',
  async () => {
    const byDefault = await boot([]);
    assert.is(byDefault.status, 126, `stdout:\n${byDefault.stdout}\nstderr:\n${byDefault.stderr}`);
    const r = await boot(['-machine', 'pvpanic=off']);
    const context = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.is(r.status, debugExitProcessStatus(STILL_RUNNING), context);
    assert.match(r.stdout, /panic: port 0x00000505 offers events 0x000000ff\n/, context);
    assert.match(r.stdout, /panic: still running after the PANICKED write\n/);
    assert.not.match(r.stderr, /guest panicked/);
  },
);

testIf(
  test,
  skip,
  'panic guest: -device pvpanic,ioport=0x506 moves the port (and it works with -machine acpi=off: the device is ISA)',
  async () => {
    const moved = await boot(['-device', 'pvpanic,ioport=0x506', '-append', 'port=0x506', '-machine', 'acpi=off']);
    assert.is(moved.status, 126, `stdout:\n${moved.stdout}\nstderr:\n${moved.stderr}`);
    assert.match(moved.stdout, /port 0x00000506 offers events 0x00000003/);
    // The device moved (it is not added again at the default port): a write to 0x505 goes nowhere.
    const stale = await boot(['-device', 'pvpanic,ioport=0x506']);
    assert.is(stale.status, debugExitProcessStatus(STILL_RUNNING), stale.stdout);
  },
);

testIf(
  test,
  skipQemu,
  "panic guest: QEMU agrees (events 0x03; -action panic=exit-failure exits 1; no device: the guest's own code)",
  async () => {
    const guest = await buildGuest('panic');
    const panicked = await runQemu({
      kernel: guest.path,
      extraArgs: ['-device', 'pvpanic', '-action', 'panic=exit-failure'],
    });
    assert.is(panicked.status, 1, `serial:\n${panicked.serial}\nstderr:\n${panicked.stderr}`);
    assert.match(panicked.serial, /panic: port 0x00000505 offers events 0x00000003\n/);
    assert.not.match(panicked.serial, /still running/);
    const absent = await runQemu({ kernel: guest.path });
    assert.is(absent.status, debugExitProcessStatus(STILL_RUNNING), absent.serial);
    assert.match(absent.serial, /offers events 0x000000ff/);
  },
);

test.run();
