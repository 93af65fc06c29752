// The edu guest (edu.c) against the real edu device passed through with VFIO (issue 11): in the rig
// (`npm run rig -- --vfio edu`, where the outer QEMU's edu is bound to vfio-pci behind intel-iommu), QEMU
// `-accel kvm -M pc -device vfio-pci,host=BDF` is the reference, and tsvmm with the same options must print the same
// result lines. Both are also judged by the lines edu-host.ts computes, which an emulated edu prints too
// (edu-qemu.test.ts). Natively (no device bound to vfio-pci) every test skips with vfio-devices.ts's reason, which
// makes the test runner run this file in the rig booted with --vfio edu,nvme.
//
// The device is passed to one VMM at a time: each run holds its lock (withVfioDevice, test/support/vfio-devices.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { intxGsi } from '../../devices/pci/bus.js';
import { testIf } from '../../test/support/skip.js';
import { vfioMissing, withVfioDevice } from '../../test/support/vfio-devices.js';
import { buildGuest, repoRoot, toolchainUnavailable } from './build.js';
import {
  EDU_PASSED,
  eduComparableLines,
  eduContext,
  eduExpectedLines,
  eduPlacement,
  runEdu,
  type EduRun,
} from './edu-host.js';
import { qemuUnavailable } from './qemu-runner.js';

/** Null once tsvmm's command line knows `-device vfio-pci`, else the one-line reason. */
function tsvmmLacksVfioPci(): string | null {
  const cli = join(repoRoot(), 'dist', 'tsvmm.mjs');
  if (!existsSync(cli)) return `${cli} is not built`;
  const r = spawnSync(process.execPath, [cli, 'run', '-device', 'vfio-pci'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return `running ${cli}: ${r.error.message}`;
  return /-device vfio-pci: unknown device/.test(r.stderr)
    ? 'tsvmm does not know -device vfio-pci yet (issue 11: devices/vfio-pci)'
    : null;
}

const toolchain = await toolchainUnavailable();
// The device first: natively its reason is the one that sends this file to the rig booted with vfio devices.
const withDevice = toolchain ?? vfioMissing('edu');
const withQemu = withDevice ?? qemuUnavailable() ?? kvmMissing();
const withTsvmm = withDevice ?? kvmMissing() ?? tsvmmLacksVfioPci() ?? qemuUnavailable();

const runs = new Map<'qemu' | 'tsvmm', Promise<EduRun>>();

/** One boot per VMM and test process (the comparison reuses QEMU's), the device held under its lock. */
function boot(vmm: 'qemu' | 'tsvmm'): Promise<EduRun> {
  let run = runs.get(vmm);
  if (!run) {
    run = buildGuest('edu').then((guest) =>
      withVfioDevice('edu', ({ bdf }) => runEdu(vmm, { kernel: guest.path, device: { vfio: bdf } })),
    );
    runs.set(vmm, run);
  }
  return run;
}

testIf(
  test,
  withQemu,
  'edu passed through (qemu -accel kvm pc, -device vfio-pci): identity, BAR0 placed and moved by the guest, liveness, factorials, DMA both ways through the IOMMU, MSI and INTx — the lines edu-host.ts computes',
  async () => {
    const r = await boot('qemu');
    assert.is(r.status, EDU_PASSED, `exit status${eduContext(r)}`);
    assert.equal(eduComparableLines(r.serial), eduExpectedLines(), eduContext(r));
    const at = eduPlacement(r.serial);
    assert.ok(at, `no "edu: at" line${eduContext(r)}`);
    assert.ok(at!.firmwareBar0 !== 0, `SeaBIOS left BAR0 unassigned${eduContext(r)}`);
    assert.ok(at!.line === 10 || at!.line === 11, `INTERRUPT_LINE ${at!.line}${eduContext(r)}`);
  },
);

testIf(
  test,
  withTsvmm,
  'edu passed through (tsvmm -device vfio-pci): the same result lines as under QEMU, INTx on the GSI tsvmm presets',
  async () => {
    const q = await boot('qemu');
    const t = await boot('tsvmm');
    assert.is(q.status, EDU_PASSED, `qemu, the reference${eduContext(q)}`);
    assert.is(t.status, EDU_PASSED, `tsvmm exit status${eduContext(t)}`);
    assert.equal(eduComparableLines(t.serial), eduComparableLines(q.serial), eduContext(t));
    assert.equal(eduComparableLines(t.serial), eduExpectedLines(), eduContext(t));
    const at = eduPlacement(t.serial);
    assert.ok(at, `no "edu: at" line${eduContext(t)}`);
    assert.is(at!.line, intxGsi(at!.slot, 1), `INTERRUPT_LINE of slot ${at!.slot} INTA${eduContext(t)}`);
  },
);

test.run();
