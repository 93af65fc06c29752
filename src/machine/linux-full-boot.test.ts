// The full Linux boot: Debian's cloud kernel and a busybox initramfs built by tsvmm's image builder boot to /init,
// which mounts /proc and /sys, loads the virtio modules, reads and writes the virtio-blk disk, pings the host over
// virtio-net and a tap, and powers off; tsvmm must exit 0 with every step on ttyS0 (test/support/full-boot-guest.ts
// has the init and the expectations). That needs VMX/SVM: on a PVM host a stock kernel cannot reach user space
// (docs/linux.md, "On this host (PVM)"), so there the tsvmm boots skip with one line and
// linux-partial-boot.test.ts covers the kernel's early boot. What can run anywhere does: the image is built and checked, the same guest runs under QEMU
// (the reference; TCG on a PVM host) with the same devices and tap, and tsvmm takes the full command line and
// builds that machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { repoRoot } from '../../test/support/cc.js';
import { cliPath } from '../../test/support/tsvmm.js';
import { kvmIsPvm, linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import {
  FULL_BOOT_APPLETS, FULL_BOOT_MODULES, buildFullBootInitramfs, fullBootCmdline, fullBootDeviceArgs, fullBootKernel,
  fullBootProblems, guestLineMismatch, newNonce, openFiles, runVmm, writeFullBootDisk, type FullBootImage, type VmmRun,
} from '../../test/support/full-boot-guest.js';
import { createTapNamespace, tapUnavailable, type TapNamespace } from '../../examples/guests/virtio-probe-host.js';
import { QEMU_BINARY, qemuAccel, qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { findBusybox } from '../images/busybox.js';
import { kvmMissing } from '../../kvm/test-guest.js';
import { ExitStatus } from './exit-status.js';

const found = fullBootKernel();
const imageReason = found.reason ?? busyboxMissing();
const tapReason = tapUnavailable();
const userSpaceReason = linuxUserSpaceUnreachable();
const kvmReason = kvmMissing();

const scratch = join(repoRoot, 'build', 'full-boot', `test-${process.pid}`);
rmSync(scratch, { recursive: true, force: true });
mkdirSync(scratch, { recursive: true });

const BOOT_TIMEOUT_S = 120;
const RAM = '512M';

let built: FullBootImage | null = null;
/** The initramfs, built once per file (the first test that needs it builds it). */
function image(): FullBootImage {
  built ??= buildFullBootInitramfs(join(scratch, 'initrd.img'), found.modulesDir!);
  return built;
}

/** A fresh disk and tap for one boot; the tap namespace is deleted by `done`. */
function freshRun(name: string): { nonce: string; disk: string; tap: TapNamespace } {
  const nonce = newNonce();
  const disk = join(scratch, `${name}.img`);
  writeFullBootDisk(disk, nonce);
  return { nonce, disk, tap: createTapNamespace(`tsvmm-fb-${process.pid % 100000}-${name}`.slice(0, 30)) };
}

function report(run: VmmRun): string {
  return `status ${run.status ?? run.signal}${run.timedOut ? ' (killed: timed out)' : ''} after ${run.ms} ms\n` +
    `$ ${run.argv.join(' ')}\n--- serial (last 4000 bytes) ---\n${run.serial.slice(-4000)}\n--- stderr ---\n${run.stderr.slice(-2000)}`;
}

testIf(test, imageReason, 'full boot: the initramfs holds /init, busybox with every applet /init runs, and the virtio modules in load order', () => {
  const img = image();
  const byName = new Map(img.entries.map(e => [e.name, e]));
  const init = byName.get('init');
  assert.ok(init && init.type === 'file', 'an /init file');
  assert.is(init!.perm, 0o755);
  assert.is(Buffer.from(init!.data).toString('utf8'), img.init);
  assert.ok(img.init.startsWith('#!/bin/sh\n'));
  // The script parses (busybox's own shell, the one that will run it).
  const initFile = join(scratch, 'init.sh');
  writeFileSync(initFile, img.init);
  const syntax = spawnSync(findBusybox()!, ['sh', '-n', initFile], { encoding: 'utf8' });
  assert.is(syntax.status, 0, `busybox sh -n /init: ${syntax.stderr}`);

  assert.is(byName.get('bin/busybox')?.type, 'file');
  assert.is(byName.get('dev/console')?.type, 'chardev');
  for (const dir of ['proc', 'sys', 'dev', 'tmp']) assert.is(byName.get(dir)?.type, 'dir', `/${dir}`);
  for (const applet of FULL_BOOT_APPLETS) {
    const link = img.entries.find(e => e.type === 'symlink' && e.name.endsWith(`/${applet}`));
    assert.ok(link, `a link for the '${applet}' applet`);
    assert.is(Buffer.from(link!.data).toString(), '/bin/busybox');
  }

  // Each wanted module, after its dependencies (the resolver's order), and /init loads them in that order.
  const release = found.kernel!.release;
  for (const m of FULL_BOOT_MODULES) {
    assert.ok(img.modules.some(p => p.endsWith(`/${m}.ko`)), `${m}.ko in the image`);
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
});

const qemuReason = imageReason ?? qemuUnavailable() ?? tapReason;

testIf(test, qemuReason, 'full boot (slow, reference): under QEMU the same kernel, initramfs, disk and tap reach every step and power off', async () => {
  const { nonce, disk, tap } = freshRun('qemu');
  try {
    // On a PVM host KVM cannot take this kernel to user space either: QEMU uses TCG there.
    const accel = kvmIsPvm() ? 'tcg' : qemuAccel();
    const run = await runVmm([QEMU_BINARY, '-accel', accel, '-M', 'pc', '-m', RAM, '-nodefaults', '-display', 'none',
      '-no-reboot', '-serial', 'stdio', '-kernel', found.kernel!.bzImage, '-initrd', image().path,
      '-append', fullBootCmdline(nonce), ...fullBootDeviceArgs({ disk, tap })], { tap, timeoutMs: BOOT_TIMEOUT_S * 1000 });
    console.log(`QEMU (${accel}) booted to power-off in ${run.ms} ms`);
    assert.equal(fullBootProblems(run.serial, { nonce, cpus: 1 }), [], report(run));
    assert.is(run.status, 0, report(run));
    assert.is(guestLineMismatch(disk, nonce), null);
    const s = tap.stats();
    assert.ok(s.rxPackets >= 3 && s.txPackets >= 3, `tap counters: ${JSON.stringify(s)}`);
  } finally {
    tap.close();
  }
});

// On PVM the kernel cannot get far, but the machine behind the full command line must still be built: kernel and
// initrd loaded, disk opened, tap attached, devices on the PCI bus. tsvmm runs until --timeout.
const setupReason = kvmReason ?? (kvmIsPvm() ? null : 'this host has VMX/SVM: the full boot test below covers it') ?? imageReason ?? tapReason;

testIf(test, setupReason, 'full boot: tsvmm takes the full command line (bzImage, initrd, virtio-blk disk, virtio-net on a tap) and runs the guest until --timeout', async () => {
  const { nonce, disk, tap } = freshRun('setup');
  try {
    // While it runs: the disk image is open and a /dev/net/tun fd is attached to the namespace's tap.
    const seen = { disk: false, tap: false };
    const run = await runVmm([process.execPath, cliPath, 'run', '-m', RAM, '-cpu', 'pvm-safe',
      '-kernel', found.kernel!.vmlinux, '-initrd', image().path, '-append', fullBootCmdline(nonce, 'noxsave'),
      '-serial', 'stdio', ...fullBootDeviceArgs({ disk, tap }), '-no-reboot', '--timeout', '3'], {
      tap, timeoutMs: 60_000,
      whileRunning: async (pid, exited) => {
        let running = true;
        void exited.then(() => { running = false; });
        while (running && !(seen.disk && seen.tap)) {
          const open = openFiles(pid);
          seen.disk ||= open.paths.includes(disk);
          seen.tap ||= open.taps.includes(tap.tap);
          await new Promise(r => setTimeout(r, 50));
        }
      },
    });
    assert.is(run.status, ExitStatus.timeout, report(run));
    assert.not.match(run.stderr, /usage|setup failed|cannot|error/i, report(run));
    assert.ok(seen.disk, `tsvmm never had ${disk} open`);
    assert.ok(seen.tap, `tsvmm never had /dev/net/tun attached to ${tap.tap}`);
  } finally {
    tap.close();
  }
});

const bootReason = kvmReason ?? userSpaceReason ?? imageReason ?? tapReason;

for (const format of ['bzImage', 'vmlinux'] as const) {
  testIf(test, bootReason, `full boot: tsvmm boots Debian's ${format === 'bzImage' ? 'bzImage' : 'vmlinux (PVH entry)'} to /init, which mounts, reads and writes /dev/vda, pings the host over eth0 and powers off; tsvmm exits 0`, async () => {
    const { nonce, disk, tap } = freshRun(format);
    try {
      const run = await runVmm([process.execPath, cliPath, 'run', '-m', RAM, '-smp', '2',
        '-kernel', found.kernel![format], '-initrd', image().path, '-append', fullBootCmdline(nonce),
        '-serial', 'stdio', ...fullBootDeviceArgs({ disk, tap }), '-no-reboot', '--timeout', String(BOOT_TIMEOUT_S)],
        { tap, timeoutMs: (BOOT_TIMEOUT_S + 30) * 1000 });
      console.log(`tsvmm booted the ${format} to power-off in ${run.ms} ms`);
      assert.equal(fullBootProblems(run.serial, { nonce, cpus: 2 }), [], report(run));
      assert.is(run.status, ExitStatus.ok, report(run));
      assert.is(guestLineMismatch(disk, nonce), null);
      const s = tap.stats();
      assert.ok(s.rxPackets >= 3 && s.txPackets >= 3, `tap counters: ${JSON.stringify(s)}`);
    } finally {
      tap.close();
    }
  });
}

test.after(() => rmSync(scratch, { recursive: true, force: true }));

test.run();
