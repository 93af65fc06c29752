// The full Linux boot: Debian's cloud kernel and a busybox initramfs built by tsvmm's image builder boot to /init,
// which mounts /proc and /sys, loads the virtio modules, reads and writes the virtio-blk disk, pings the host over
// virtio-net and a tap, and powers off; tsvmm must exit 0 with every step on ttyS0 (test/support/full-boot-guest.ts
// has the init and the expectations). That needs VMX/SVM: on a PVM host a stock kernel cannot reach user space
// (docs/linux.md, "On this host (PVM)"), so there the tsvmm boots skip with a reason the test runner lifts by
// running this file in the rig (test/rig/), and linux-full-boot-pvm.test.ts checks what PVM can do. The image is
// built and checked, and the same guest runs under QEMU (the reference; TCG on a PVM host) with the same devices.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { cliPath } from '../../test/support/tsvmm.js';
import { kvmIsPvm, linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import {
  FULL_BOOT_APPLETS,
  FULL_BOOT_MODULES,
  fullBootCmdline,
  fullBootDeviceArgs,
  fullBootKernel,
  fullBootProblems,
  guestLineMismatch,
  runVmm,
} from '../../test/support/full-boot-guest.js';
import { fullBootReport as report, fullBootScratch } from '../../test/support/full-boot-scratch.js';
import { tapUnavailable } from '../../examples/guests/virtio-probe-host.js';
import { QEMU_BINARY, qemuAccel, qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { findBusybox } from '../images/busybox.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../util/exit-status.js';

const found = fullBootKernel();
const imageReason = found.reason ?? busyboxMissing();
const tapReason = tapUnavailable();
const userSpaceReason = linuxUserSpaceUnreachable();
const kvmReason = kvmMissing();

const scratch = fullBootScratch(() => found.modulesDir!);
const { image, freshRun } = scratch;

// tsvmm's --timeout here is a hang guard: in the rig on a loaded 2-core host a boot took over 150 s.
const BOOT_TIMEOUT_S = 600;
const RAM = '512M';

testIf(
  test,
  imageReason,
  'full boot: the initramfs holds /init, busybox with every applet /init runs, and the virtio modules in load order',
  () => {
    const img = image();
    const byName = new Map(img.entries.map((e) => [e.name, e]));
    const init = byName.get('init');
    assert.ok(init && init.type === 'file', 'an /init file');
    assert.is(init!.perm, 0o755);
    assert.is(Buffer.from(init!.data).toString('utf8'), img.init);
    assert.ok(img.init.startsWith('#!/bin/sh\n'));
    // The script parses (busybox's own shell, the one that will run it).
    const initFile = join(scratch.dir, 'init.sh');
    writeFileSync(initFile, img.init);
    const syntax = spawnSync(findBusybox()!, ['sh', '-n', initFile], { encoding: 'utf8' });
    assert.is(syntax.status, 0, `busybox sh -n /init: ${syntax.stderr}`);

    assert.is(byName.get('bin/busybox')?.type, 'file');
    assert.is(byName.get('dev/console')?.type, 'chardev');
    for (const dir of ['proc', 'sys', 'dev', 'tmp']) assert.is(byName.get(dir)?.type, 'dir', `/${dir}`);
    for (const applet of FULL_BOOT_APPLETS) {
      const link = img.entries.find((e) => e.type === 'symlink' && e.name.endsWith(`/${applet}`));
      assert.ok(link, `a link for the '${applet}' applet`);
      assert.is(Buffer.from(link!.data).toString(), '/bin/busybox');
    }

    // Each wanted module, after its dependencies (the resolver's order), and /init loads them in that order.
    const release = found.kernel!.release;
    for (const m of FULL_BOOT_MODULES) {
      assert.ok(
        img.modules.some((p) => p.endsWith(`/${m}.ko`)),
        `${m}.ko in the image`,
      );
    }
    assert.ok(img.modules.length > FULL_BOOT_MODULES.length, 'their dependencies too');
    let last = -1;
    for (const path of img.modules) {
      assert.ok(path.startsWith(`lib/modules/${release}/kernel/`), path);
      assert.is(byName.get(path)?.type, 'file', path);
      const at = img.init.indexOf(`insmod '/${path}'`);
      assert.ok(at > last, `/init loads ${path} after the modules before it`);
      last = at;
    }
  },
);

const qemuReason = imageReason ?? qemuUnavailable() ?? tapReason;

testIf(
  test,
  qemuReason,
  'full boot (slow, reference): under QEMU the same kernel, initramfs, disk and tap reach every step and power off',
  async () => {
    const { nonce, disk, tap } = freshRun('qemu');
    try {
      // On a PVM host KVM cannot take this kernel to user space either: QEMU uses TCG there.
      const accel = kvmIsPvm() ? 'tcg' : qemuAccel();
      const run = await runVmm(
        [
          QEMU_BINARY,
          '-accel',
          accel,
          '-M',
          'pc',
          '-m',
          RAM,
          '-nodefaults',
          '-display',
          'none',
          '-no-reboot',
          '-serial',
          'stdio',
          '-kernel',
          found.kernel!.bzImage,
          '-initrd',
          image().path,
          '-append',
          fullBootCmdline(nonce),
          ...fullBootDeviceArgs({ disk, tap }),
        ],
        { tap, timeoutMs: BOOT_TIMEOUT_S * 1000 },
      );
      console.log(`QEMU (${accel}) booted to power-off in ${run.ms} ms`);
      assert.equal(fullBootProblems(run.serial, { nonce, cpus: 1 }), [], report(run));
      assert.is(run.status, 0, report(run));
      assert.is(guestLineMismatch(disk, nonce), null);
      const s = tap.stats();
      assert.ok(s.rxPackets >= 3 && s.txPackets >= 3, `tap counters: ${JSON.stringify(s)}`);
    } finally {
      tap.close();
    }
  },
);

const bootReason = kvmReason ?? userSpaceReason ?? imageReason ?? tapReason;

for (const format of ['bzImage', 'vmlinux'] as const) {
  testIf(
    test,
    bootReason,
    `full boot: tsvmm boots Debian's ${format === 'bzImage' ? 'bzImage' : 'vmlinux (PVH entry)'} to /init, which mounts, reads and writes /dev/vda, pings the host over eth0 and powers off; tsvmm exits 0`,
    async () => {
      const { nonce, disk, tap } = freshRun(format);
      try {
        const run = await runVmm(
          [
            process.execPath,
            cliPath,
            'run',
            '-m',
            RAM,
            '-smp',
            '2',
            '-kernel',
            found.kernel![format],
            '-initrd',
            image().path,
            '-append',
            fullBootCmdline(nonce),
            '-serial',
            'stdio',
            ...fullBootDeviceArgs({ disk, tap }),
            '-no-reboot',
            '--timeout',
            String(BOOT_TIMEOUT_S),
          ],
          { tap, timeoutMs: (BOOT_TIMEOUT_S + 30) * 1000 },
        );
        console.log(`tsvmm booted the ${format} to power-off in ${run.ms} ms`);
        assert.equal(fullBootProblems(run.serial, { nonce, cpus: 2 }), [], report(run));
        assert.is(run.status, ExitStatus.ok, report(run));
        assert.is(guestLineMismatch(disk, nonce), null);
        const s = tap.stats();
        assert.ok(s.rxPackets >= 3 && s.txPackets >= 3, `tap counters: ${JSON.stringify(s)}`);
      } finally {
        tap.close();
      }
    },
  );
}

test.after(() => scratch.remove());

test.run();
