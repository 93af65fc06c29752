// ACPI S3 with the RTC alarm as the wake-up event, the way PC test suites check suspend/resume: the s3-rtc guest
// enables RTC_EN, waits for the RTC's update-in-progress edge, arms a "don't care" alarm (the next second), suspends,
// and must be woken by the alarm alone — at its waking vector, with WAK_STS and RTC_STS set. The same guest under
// QEMU (the reference) and under tsvmm, with nothing sent from the host.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir } from '../../test/support/vm-process.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { debugExitProcessStatus, qemuAccel, qemuUnavailable, runQemu } from './qemu-runner.js';

const toolchain = await toolchainUnavailable();
const EXIT_WOKE_BY_RTC = 0x10;
const PM1_STS_WAK = 0x8000;
const PM1_STS_RTC = 0x0400;
/** Hang guards only: a loaded machine may take long, the guest itself gives up on a missing wake-up. */
const HANG_GUARD_S = 120;

function expectWokenByRtc(serial: string, status: number | null, context: string): void {
  assert.match(serial, /^s3-rtc: FACS 0x[0-9a-f]{8} PM1a_EVT 0x[0-9a-f]{8} PM1a_CNT 0x[0-9a-f]{8}$/m, context);
  assert.match(serial, /^s3-rtc: update seen after \d+ reads of register A \((UIP|seconds changed)\)$/m, context);
  assert.match(serial, /^s3-rtc: suspending$/m, context);
  const woke = /^s3-rtc: woke, PM1_STS 0x([0-9a-f]{8})$/m.exec(serial);
  assert.ok(woke, `no wake-up line; ${context}`);
  assert.is(
    Number.parseInt(woke![1], 16) & (PM1_STS_WAK | PM1_STS_RTC),
    PM1_STS_WAK | PM1_STS_RTC,
    `PM1_STS at the waking vector; ${context}`,
  );
  assert.is(status, debugExitProcessStatus(EXIT_WOKE_BY_RTC), context);
}

testIf(
  test,
  qemuUnavailable() ?? toolchain,
  `s3-rtc: under QEMU (${qemuAccel()}) the RTC alarm wakes the guest from S3 with WAK_STS and RTC_STS set`,
  async () => {
    const guest = await buildGuest('s3-rtc');
    const r = await runQemu({ kernel: guest.path, timeoutMs: HANG_GUARD_S * 1000 });
    expectWokenByRtc(r.serial, r.status, `timed out: ${r.timedOut}\nserial:\n${r.serial}\nstderr:\n${r.stderr}`);
  },
);

testIf(
  test,
  kvmMissing() ?? toolchain,
  's3-rtc: under tsvmm the RTC alarm wakes the suspended guest (SUSPEND, then WAKEUP with no host command) with WAK_STS and RTC_STS set',
  async () => {
    const guest = await buildGuest('s3-rtc');
    const dir = scratchDir();
    // -S, then cont once QMP is connected: every event of the run is seen.
    const vm = await startVm(
      ['-m', '64M', '-S', '-device', 'isa-debug-exit', '-kernel', guest.path, '--timeout', String(HANG_GUARD_S)],
      { dir, name: 's3-rtc', timeoutMs: HANG_GUARD_S * 1000 },
    );
    try {
      await vm.qmp.execute('cont');
      const status = await vm.exited;
      const events = vm.qmp.events.map((e) => e.event);
      const context = `events: ${events.join(' ')}\nstdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`;
      expectWokenByRtc(vm.stdout, status, context);
      assert.ok(events.indexOf('SUSPEND') >= 0 && events.indexOf('WAKEUP') > events.indexOf('SUSPEND'), context);
    } finally {
      await vm.dispose();
      removeDir(dir);
    }
  },
);

test.run();
