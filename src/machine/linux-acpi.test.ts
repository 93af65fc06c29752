// Linux and the ACPI machine: Debian's generic kernel (bzImage, -smp 1) with an initramfs made by `tsvmm initramfs`
// runs the acpi scenario (test/support/linux-scenarios.ts) in one VMM process — it suspends to RAM (echo mem >
// /sys/power/state), the host wakes it with QMP system_wakeup and it prints with a sane clock; it leaves a marker
// on the disk and reboot -f boots it again; the second boot finds the marker and panics (sysrq c), which pvpanic
// reports: tsvmm exits 126 after QMP GUEST_PANICKED. QEMU -accel kvm runs the same scenario as the reference (it
// exits 1 for the panic, with -action panic=exit-failure), and the lines are compared with tsvmm's line by line.
// Power-off by poweroff -f and by the power button, and reboot under -no-reboot, are in linux-devices.test.ts.
// Needs VMX/SVM: where /dev/kvm is missing or PVM the runs skip with a reason the test runner lifts by running this
// file in the rig (test/rig/); the image is built at load time, natively, so the rig finds it in build/.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import { linuxGuestKernel, scenarioInit } from '../../test/support/linux-guest.js';
import { acpiScenario, scenarioDifferences, scenarioLines } from '../../test/support/linux-scenarios.js';
import {
  runScenario,
  scenarioImage,
  scenarioReport,
  writeZeroDisk,
  type Vmm,
} from '../../test/support/linux-scenario-run.js';
import { acpiProblems, withoutTolerated } from '../../test/support/linux-scenario-judge.js';
import { removeDir, scratchDir } from '../../test/support/vm-process.js';
import { qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { findBusybox } from '../images/busybox.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../util/exit-status.js';

const found = linuxGuestKernel();
const imageReason = found.reason ?? busyboxMissing();
// Built now, at load time: natively before the rig reruns this file.
const image = imageReason === null ? scenarioImage('acpi', found.kernel!, acpiScenario()) : null;
const runReason = kvmMissing() ?? linuxUserSpaceUnreachable() ?? imageReason;
const qemuReason = runReason ?? qemuUnavailable();

const TIMEOUT_S = 600;
/** How long the host leaves the guest in S3 before system_wakeup. */
const S3_SECONDS = 3;
const DISK_BYTES = 1 << 20;

const printed = new Map<Vmm, string[]>();

async function acpiRun(vmm: Vmm, status: number): Promise<void> {
  const dir = scratchDir('tsvmm-linux-acpi-');
  try {
    const disk = join(dir, 'disk.img');
    writeZeroDisk(disk, DISK_BYTES);
    const run = await runScenario({
      vmm,
      kernel: found.kernel!.bzImage,
      initrd: image!,
      smp: 1,
      noReboot: false,
      disk,
      dir,
      s3Seconds: S3_SECONDS,
      timeoutS: TIMEOUT_S,
    });
    console.log(`${vmm}: the acpi scenario took ${run.ms} ms`);
    printed.set(vmm, withoutTolerated(scenarioLines(run.serial)));
    assert.equal(acpiProblems(run, { cpus: 1, status, s3Seconds: S3_SECONDS }), [], scenarioReport(run));
  } finally {
    removeDir(dir);
  }
}

testIf(test, imageReason, "acpi scenario: the /init parses with busybox's own shell", () => {
  const dir = scratchDir('tsvmm-linux-acpi-');
  try {
    const init = join(dir, 'init');
    writeFileSync(init, scenarioInit(acpiScenario(), []));
    const r = spawnSync(findBusybox()!, ['sh', '-n', init], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
  } finally {
    removeDir(dir);
  }
});

testIf(
  test,
  runReason,
  'acpi: under tsvmm (-smp 1) Linux suspends to RAM and QMP system_wakeup resumes it with a sane clock, reboot -f boots it again, and its panic ends tsvmm with 126 after QMP GUEST_PANICKED',
  () => acpiRun('tsvmm', ExitStatus.guestPanic),
);

testIf(
  test,
  qemuReason,
  'acpi (reference): QEMU -accel kvm runs the same scenario: S3 and wake-up, reboot, and the panic ends it with 1 (-action panic=exit-failure)',
  () => acpiRun('qemu', 1),
);

testIf(test, qemuReason, "acpi: tsvmm's scenario lines are QEMU's, line by line (S3's seconds aside)", () => {
  assert.ok(printed.get('qemu'), 'the QEMU run printed its lines');
  assert.equal(scenarioDifferences(printed.get('tsvmm') ?? [], printed.get('qemu')!), []);
});

test.run();
