// ACPI S3 end to end under the tsvmm command line and the real /dev/kvm: the s3 guest finds the FADT, the FACS and
// the \_S3_ SLP_TYP through the tables tsvmm wrote, sets its real-mode waking vector and writes SLP_EN; the machine
// stops and reports `suspended` over QMP until system_wakeup (or system_powerdown) resumes the guest at the vector.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ACPI_PM_DEFAULT_BASE, PM1_CNT_OFFSET, PM1_EVT_OFFSET, SLP_TYP_S3 } from '../../devices/acpi-pm.js';
import { buildGuest, toolchainUnavailable, writeGuestVariant } from './build.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** isa-debug-exit values of the s3 guest (see s3.S) as process exit statuses: (value << 1) | 1. */
const EXIT_WOKE = (0x10 << 1) | 1;
const EXIT_WOKE_PWRBTN = (0x11 << 1) | 1;
const EXIT_BOOTED_AGAIN = (0x12 << 1) | 1;

/** The s3 guest's patchable header: "S3GT" at 4, flags at 8 (bit 0: set the waking vector). */
const S3_MAGIC_OFFSET = 4;
const S3_FLAGS_OFFSET = 8;
const S3_FLAG_SET_VECTOR = 0x01;

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
/** What the guest read from the FADT and the DSDT: tsvmm's PM block and the _S3_ SLP_TYP. */
const TABLES_LINE = new RegExp(
  `^S3: FACS 0x000F[0-9A-F]{4} PM1a_EVT 0x${hex4(ACPI_PM_DEFAULT_BASE + PM1_EVT_OFFSET)} ` +
    `PM1a_CNT 0x${hex4(ACPI_PM_DEFAULT_BASE + PM1_CNT_OFFSET)} SLP_TYP 0x${hex4(SLP_TYP_S3)}$`,
  'm',
);

async function s3Image(setVector = true): Promise<string> {
  const guest = await buildGuest('s3');
  if (setVector) return guest.path;
  const image = new Uint8Array(await readFile(guest.path));
  assert.is(new TextDecoder().decode(image.subarray(S3_MAGIC_OFFSET, S3_MAGIC_OFFSET + 4)), 'S3GT');
  image[S3_FLAGS_OFFSET] &= ~S3_FLAG_SET_VECTOR;
  return writeGuestVariant('s3-no-vector', image);
}

/**
 * Boots the s3 guest under a QMP socket and waits until it has suspended. It starts paused (-S) and runs on `cont`:
 * the guest suspends within milliseconds, before a client that connects to a running VM could see SUSPEND.
 */
async function bootAndSuspend(dir: string, image: string): Promise<VmProcess> {
  const vm = await startVm(
    [
      '-m',
      '64M',
      '-S',
      '-device',
      'isa-debug-exit',
      '-device',
      `loader,file=${image},addr=0x7c00,mode=real`,
      '--timeout',
      '60',
    ],
    { dir, name: 's3' },
  );
  await vm.qmp.execute('cont');
  await vm.qmp.waitEvent('SUSPEND', HANG_GUARD_MS);
  assert.match(vm.stdout, TABLES_LINE);
  assert.match(vm.stdout, /^S3: suspending$/m);
  assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'suspended' });
  return vm;
}

/** The exit status, with the guest's output when it is not the expected one. */
async function expectExit(vm: VmProcess, status: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), HANG_GUARD_MS);
  });
  const code = await Promise.race([vm.exited, timeout]);
  clearTimeout(timer);
  assert.is(code, status, `exit status; stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
}

const eventNames = (vm: VmProcess) => vm.qmp.events.map((e) => e.event).filter((e) => e !== 'RESUME' && e !== 'STOP');

testIf(
  test,
  skip,
  's3: the guest suspends and stays stopped; system_wakeup resumes it in real mode at the FACS vector with its RAM and WAK_STS set',
  async () => {
    const dir = scratchDir();
    let vm: VmProcess | undefined;
    try {
      vm = await bootAndSuspend(dir, await s3Image());
      // Suspended means stopped: no guest output, no exit, no state change for a while.
      const before = vm.stdout;
      await sleep(1000);
      assert.is(vm.stdout, before, 'the guest ran while suspended');
      assert.is(vm.child.exitCode, null);
      assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'suspended' });
      // `cont` does not resume a suspended guest (QEMU: only a wake-up does).
      try {
        await vm.qmp.execute('cont');
        assert.unreachable('cont resumed a suspended guest');
      } catch (e) {
        assert.instance(e, QmpClientError);
        assert.is((e as QmpClientError).errorClass, 'GenericError');
      }
      assert.equal(await vm.qmp.execute('system_wakeup'), {});
      await vm.qmp.waitEvent('WAKEUP', HANG_GUARD_MS);
      await expectExit(vm, EXIT_WOKE);
      assert.match(vm.stdout, /^S3: woke in real mode at the waking vector$/m);
      assert.match(vm.stdout, /^S3: woke, marker intact$/m);
      assert.match(vm.stdout, /^S3: WAK_STS set$/m);
      assert.not.match(vm.stdout, /PWRBTN_STS|FAIL/);
      assert.equal(eventNames(vm).slice(0, 2), ['SUSPEND', 'WAKEUP']);
      // As QEMU: a wake-up is announced by WAKEUP alone (the host never stopped the VM, so no RESUME follows).
      const all = vm.qmp.events.map((e) => e.event);
      assert.not.ok(all.slice(all.indexOf('WAKEUP')).includes('RESUME'), `events: ${all.join(' ')}`);
    } finally {
      await vm?.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  's3: system_powerdown while suspended wakes the guest at its vector with PWRBTN_STS and WAK_STS set',
  async () => {
    const dir = scratchDir();
    let vm: VmProcess | undefined;
    try {
      vm = await bootAndSuspend(dir, await s3Image());
      assert.equal(await vm.qmp.execute('system_powerdown'), {});
      await vm.qmp.waitEvent('WAKEUP', HANG_GUARD_MS);
      await expectExit(vm, EXIT_WOKE_PWRBTN);
      assert.match(vm.stdout, /^S3: woke, marker intact$/m);
      assert.match(vm.stdout, /^S3: WAK_STS set$/m);
      assert.match(vm.stdout, /^S3: PWRBTN_STS set: woken by the power button$/m);
      assert.not.match(vm.stdout, /FAIL/);
      assert.equal(eventNames(vm).slice(0, 3), ['SUSPEND', 'POWERDOWN', 'WAKEUP']);
    } finally {
      await vm?.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  's3: a guest that left the waking vector 0 boots again from the start after system_wakeup, RAM kept',
  async () => {
    const dir = scratchDir();
    let vm: VmProcess | undefined;
    try {
      vm = await bootAndSuspend(dir, await s3Image(false));
      assert.match(vm.stdout, /^S3: waking vector 0x00000000$/m);
      await vm.qmp.execute('system_wakeup');
      await vm.qmp.waitEvent('WAKEUP', HANG_GUARD_MS);
      await expectExit(vm, EXIT_BOOTED_AGAIN);
      assert.match(vm.stdout, /^S3: booted again from the start, marker 0x00000001$/m);
      assert.not.match(vm.stdout, /S3: woke|FAIL/);
    } finally {
      await vm?.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  's3: system_reset while suspended ends the suspend: the guest boots again at once, RAM kept, no wake-up',
  async () => {
    const dir = scratchDir();
    let vm: VmProcess | undefined;
    try {
      vm = await bootAndSuspend(dir, await s3Image());
      assert.equal(await vm.qmp.execute('system_reset'), {});
      await expectExit(vm, EXIT_BOOTED_AGAIN);
      assert.match(vm.stdout, /^S3: booted again from the start, marker 0x00000001$/m);
      assert.not.match(vm.stdout, /S3: woke|FAIL/);
      assert.equal(eventNames(vm).slice(0, 2), ['SUSPEND', 'RESET']);
      assert.not.ok(eventNames(vm).includes('WAKEUP'));
    } finally {
      await vm?.dispose();
      removeDir(dir);
    }
  },
);

testIf(test, skip, 's3: system_wakeup is refused while the guest is not suspended', async () => {
  const dir = scratchDir();
  let vm: VmProcess | undefined;
  try {
    // -S: the guest has not started, so it cannot have suspended yet.
    vm = await startVm(['-m', '64M', '-S', '-device', `loader,file=${await s3Image()},addr=0x7c00,mode=real`], {
      dir,
      name: 's3',
    });
    assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'prelaunch' });
    try {
      await vm.qmp.execute('system_wakeup');
      assert.unreachable('system_wakeup succeeded on a guest that is not suspended');
    } catch (e) {
      assert.instance(e, QmpClientError);
      assert.match((e as QmpClientError).desc, /not in suspended state/);
    }
    assert.not.ok(vm.qmp.events.some((e) => e.event === 'WAKEUP'));
  } finally {
    await vm?.dispose();
    removeDir(dir);
  }
});

test.run();
