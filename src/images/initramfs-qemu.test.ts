// The initramfs boots Debian's cloud kernel to its /init under QEMU: with KVM where KVM is VMX/SVM, with TCG where
// there is no /dev/kvm or KVM is PVM (a stock kernel cannot reach user space there). QEMU is the reference machine
// here: it shows the image is right independently of tsvmm's own Linux support. Fetches linux-image-cloud-amd64
// (~27 MB) once into build/debian-kernel/. A boot takes seconds (about 10 s under TCG); 3 minutes is a hang guard.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INIT_BANNER, INIT_POWEROFF, writeInitramfs } from './initramfs.js';
import { resolveKernelModules } from './kernel-modules.js';
import { debianKernel, type DebianKernel } from './testing/debian-kernel.js';
import { busyboxMissing, qemuMissing } from './testing/host-tools.js';
import { testIf } from '../../test/support/skip.js';
import { kvmIsPvm } from '../../test/support/kvm-backend.js';
import { qemuAccel } from '../../examples/guests/qemu-runner.js';

const BOOT_TIMEOUT_MS = 180_000;
const accel = kvmIsPvm() ? 'tcg' : qemuAccel();

function whyNot(): string | null {
  const missing = qemuMissing() ?? busyboxMissing();
  if (missing) return missing;
  const k = debianKernel();
  return typeof k === 'string' ? k : null;
}
const reason = whyNot();
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-initramfs-qemu-'));

function qemu(args: string[]): Promise<{ status: number | null; output: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(
      'qemu-system-x86_64',
      ['-accel', accel, '-m', '256M', '-nographic', '-nodefaults', '-no-reboot', '-serial', 'stdio', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), BOOT_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output, ms: Date.now() - started });
    });
  });
}

testIf(
  test,
  reason,
  "initramfs under QEMU: Debian's kernel runs the default init, loads the virtio modules, sees disk, NIC and hvc0, powers off",
  async () => {
    const kernel = debianKernel() as DebianKernel;
    const { modules } = resolveKernelModules(kernel.modulesDir, [
      'virtio_pci',
      'virtio_blk',
      'virtio_net',
      'virtio_console',
      'virtio-rng',
    ]);
    const initrd = join(scratch, 'initrd.img');
    writeInitramfs(initrd, {
      modules,
      commands: ['echo tsvmm-disk-ok | dd of=/dev/vda conv=notrunc 2>/dev/null && echo wrote-disk'],
    });
    const disk = join(scratch, 'disk.img');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const hvc = join(scratch, 'hvc0.txt');
    const r = await qemu([
      '-kernel',
      kernel.vmlinuz,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 panic=-1 tsvmm.test=1',
      '-drive',
      `file=${disk},if=none,id=d0,format=raw`,
      '-device',
      'virtio-blk-pci,drive=d0',
      '-netdev',
      'user,id=n0,restrict=on',
      '-device',
      'virtio-net-pci,netdev=n0',
      '-device',
      'virtio-rng-pci',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `file,id=c0,path=${hvc}`,
      '-device',
      'virtconsole,chardev=c0',
    ]);
    console.log(`booted to the banner and powered off in ${r.ms} ms of host time (QEMU ${accel})`);
    const out = r.output;
    assert.ok(out.includes(INIT_BANNER), `no banner in:\n${out.slice(-3000)}`);
    assert.not.match(out, /insmod .* failed/);
    assert.match(out, new RegExp(`^uname: Linux \\S+ ${kernel.version.replace(/\./g, '\\.')} `, 'm'));
    assert.match(out, /^cmdline: console=ttyS0 panic=-1 tsvmm\.test=1\s*$/m);
    assert.match(out, /^block devices: vda\s*$/m);
    assert.match(out, /^network interfaces: eth0 lo\s*$/m);
    assert.match(out, /^wrote-disk\s*$/m);
    assert.ok(out.includes(INIT_POWEROFF));
    assert.match(out, /reboot: Power down/);
    assert.is(r.status, 0);
    assert.is(readFileSync(disk).toString('latin1', 0, 14), 'tsvmm-disk-ok\n');
    assert.match(readFileSync(hvc, 'utf8'), /tsvmm-initramfs: hello on hvc0/);
  },
);

testIf(
  test,
  reason,
  'initramfs under QEMU: a custom /init runs, and when it exits the kernel panics (panic=-1 ends the VM)',
  async () => {
    const kernel = debianKernel() as DebianKernel;
    const initrd = join(scratch, 'custom.img');
    writeInitramfs(initrd, {
      init: '#!/bin/sh\n/bin/busybox mount -t proc proc /proc\necho "custom init, pid $$, $(cat /proc/cmdline)"\nexit 3\n',
    });
    const r = await qemu(['-kernel', kernel.vmlinuz, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1']);
    assert.match(r.output, /^custom init, pid 1, console=ttyS0 panic=-1\s*$/m);
    assert.match(r.output, /Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300/);
    assert.is(r.status, 0, 'QEMU -no-reboot ends on the reboot that panic=-1 asks for');
  },
);

test.after(() => rmSync(scratch, { recursive: true, force: true }));

test.run();
