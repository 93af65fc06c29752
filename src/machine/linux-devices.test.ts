// Linux drives every device: Debian's generic kernel (the bzImage at -smp 2, the extracted vmlinux through PVH at
// -smp 4) with an initramfs made by `tsvmm initramfs` runs the devices scenario (test/support/linux-scenarios.ts) —
// every CPU online with kvmclock, hvc0 output and input, 64 MiB through virtio-blk with fsync and a discard,
// ping and 16 MiB each way through virtio-net, /dev/hwrng from virtio-rng, no kernel warnings — and ends by power
// button (QMP system_powerdown, then poweroff -f: status 0) or by reboot -f under -no-reboot (status 0). QEMU
// `-accel kvm` runs the same scenario as the reference, and its lines are compared with tsvmm's line by line.
// Needs VMX/SVM: where /dev/kvm is missing or PVM the runs skip with a reason the test runner lifts by running this
// file in the rig (test/rig/); the image is built at load time, natively, so the rig finds it in build/.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import { linuxGuestKernel, scenarioInit } from '../../test/support/linux-guest.js';
import {
  BLK_DISK_BYTES,
  devicesScenario,
  NET_BYTES,
  scenarioDifferences,
  scenarioLines,
  type IntendedDifference,
  type ScenarioEnd,
} from '../../test/support/linux-scenarios.js';
import {
  runScenario,
  scenarioImage,
  scenarioReport,
  writeZeroDisk,
  type ScenarioRun,
  type Vmm,
} from '../../test/support/linux-scenario-run.js';
import { devicesProblems, withoutTolerated } from '../../test/support/linux-scenario-judge.js';
import { removeDir, scratchDir } from '../../test/support/vm-process.js';
import { createTapNamespace, tapUnavailable } from '../../examples/guests/virtio-probe-host.js';
import { qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { findBusybox } from '../images/busybox.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';

const found = linuxGuestKernel();
const imageReason = found.reason ?? busyboxMissing();
// Built now, at load time: natively before the rig reruns this file.
const image = imageReason === null ? scenarioImage('devices', found.kernel!, devicesScenario()) : null;
const runReason = kvmMissing() ?? linuxUserSpaceUnreachable() ?? imageReason ?? tapUnavailable();
const qemuReason = runReason ?? qemuUnavailable();

// A hang guard: one run takes about a minute in the rig, several on a loaded 2-core host.
const TIMEOUT_S = 600;

/** The lines each run printed, for the comparison with QEMU at the end. */
const printed = new Map<string, string[]>();

interface DevicesRun {
  vmm: Vmm;
  format: 'bzImage' | 'vmlinux';
  cpus: number;
  end: ScenarioEnd;
  noReboot: boolean;
}

async function devicesRun(o: DevicesRun): Promise<{ run: ScenarioRun; problems: string[] }> {
  const dir = scratchDir('tsvmm-linux-dev-');
  const tap = createTapNamespace(`tsvmm-ld-${process.pid % 100000}-${o.vmm[0]}${o.cpus}`);
  try {
    const disk = join(dir, 'disk.img');
    writeZeroDisk(disk, BLK_DISK_BYTES);
    const download = join(dir, 'download.bin');
    writeFileSync(download, randomBytes(NET_BYTES));
    const run = await runScenario({
      vmm: o.vmm,
      kernel: found.kernel![o.format],
      initrd: image!,
      smp: o.cpus,
      end: o.end,
      noReboot: o.noReboot,
      disk,
      tap,
      download,
      dir,
      timeoutS: TIMEOUT_S,
    });
    console.log(`${o.vmm} ${o.format} -smp ${o.cpus}: the devices scenario took ${run.ms} ms`);
    printed.set(`${o.vmm}-${o.format}`, withoutTolerated(scenarioLines(run.serial)));
    return { run, problems: devicesProblems(run, { cpus: o.cpus, end: o.end, status: 0, disk, download }) };
  } finally {
    tap.close();
    removeDir(dir);
  }
}

testIf(test, imageReason, "devices scenario: the /init parses with busybox's own shell", () => {
  const dir = scratchDir('tsvmm-linux-dev-');
  try {
    const init = join(dir, 'init');
    writeFileSync(init, scenarioInit(devicesScenario(), []));
    const r = spawnSync(findBusybox()!, ['sh', '-n', init], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
  } finally {
    removeDir(dir);
  }
});

testIf(
  test,
  runReason,
  'devices: tsvmm boots the bzImage with -smp 2; every device does its part, hvc0 echoes the typed line, the checksums match the image file and the host peer, QMP system_powerdown reaches the power button and poweroff -f ends with 0',
  async () => {
    const { run, problems } = await devicesRun({
      vmm: 'tsvmm',
      format: 'bzImage',
      cpus: 2,
      end: 'powerbutton',
      noReboot: false,
    });
    assert.equal(problems, [], scenarioReport(run));
  },
);

testIf(
  test,
  runReason,
  'devices: tsvmm boots the vmlinux through PVH with -smp 4; every device does its part, and reboot -f under -no-reboot ends with 0',
  async () => {
    const { run, problems } = await devicesRun({
      vmm: 'tsvmm',
      format: 'vmlinux',
      cpus: 4,
      end: 'reboot',
      noReboot: true,
    });
    assert.equal(problems, [], scenarioReport(run));
  },
);

testIf(
  test,
  qemuReason,
  'devices (reference): QEMU -accel kvm boots the same bzImage and initramfs with -smp 2, and the same checks pass',
  async () => {
    const { run, problems } = await devicesRun({
      vmm: 'qemu',
      format: 'bzImage',
      cpus: 2,
      end: 'powerbutton',
      noReboot: false,
    });
    assert.equal(problems, [], scenarioReport(run));
  },
);

/** Where the vmlinux run's lines differ from QEMU's bzImage run on purpose: its -smp and its ending. */
const VMLINUX_RUN_DIFFERS: IntendedDifference[] = [
  { why: '-smp 4 against -smp 2', tsvmm: /cpus online: 0-3 \(nproc 4\)$/, qemu: /cpus online: 0-1 \(nproc 2\)$/ },
  {
    why: 'reboot -f ends this run, the power button ends the reference',
    tsvmm: /reboot -f|\(no line\)/,
    qemu: /waiting for the power button|power button events|poweroff -f/,
  },
];

testIf(
  test,
  qemuReason,
  "devices: tsvmm's scenario lines are QEMU's, line by line (checksums of random data aside; the vmlinux run's -smp and ending named)",
  () => {
    const qemu = printed.get('qemu-bzImage');
    assert.ok(qemu, 'the QEMU run printed its lines');
    assert.equal(scenarioDifferences(printed.get('tsvmm-bzImage') ?? [], qemu!), []);
    assert.equal(scenarioDifferences(printed.get('tsvmm-vmlinux') ?? [], qemu!, VMLINUX_RUN_DIFFERS), []);
  },
);

test.run();
