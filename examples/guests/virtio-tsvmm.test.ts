// The virtio-probe guest under tsvmm, judged against QEMU: the same image with the same devices and options runs
// under both VMMs in one test, each run must pass the probe's own checks (virtio-probe-host.ts), and the per-device
// result lines must read the same. QEMU's device models are the reference; what legitimately differs (PCI slots,
// BAR addresses, the feature bits each VMM offers, interrupt counts) is left out by comparableLines.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { toolchainUnavailable } from './build.js';
import { qemuUnavailable } from './qemu-runner.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import {
  blkPatternMismatch,
  comparableLines,
  createTapNamespace,
  tapUnavailable,
  virtioProbeProblems,
  VIRTIO_PROBE_EXIT,
  type VirtioProbeRun,
} from './virtio-probe-host.js';
import {
  DISK_SECTORS,
  FILL,
  SERIAL,
  context,
  expectMovedBarsWork,
  expectStatus,
  makeDisk,
  probe,
} from './testing/virtio-probe.js';

const toolchain = await toolchainUnavailable();
// Every test but the last runs a guest under tsvmm; the missing image is found before /dev/kvm is opened.
const withTsvmm = toolchain ?? kvmMissing();
const withBoth = withTsvmm ?? qemuUnavailable();
const withBothAndTap = withBoth ?? tapUnavailable();

/** Runs all four devices under `vmm` with its own disk and tap, and checks the host side saw the guest's work. */
async function allDevices(vmm: 'qemu' | 'tsvmm'): Promise<{ run: VirtioProbeRun; hostMac: string }> {
  const disk = makeDisk(vmm);
  const tap = createTapNamespace();
  try {
    const run = await probe(vmm, {
      devices: ['blk', 'rng', 'console', 'net'],
      disk,
      serial: SERIAL,
      tap,
      consoleInput: 'ping from host',
    });
    assert.equal(
      virtioProbeProblems(run.serial, {
        devices: ['blk', 'rng', 'console', 'net'],
        capacitySectors: DISK_SECTORS,
        serial: SERIAL,
        consoleInput: 'ping from host',
        hostMac: tap.hostMac,
      }),
      [],
      `${vmm}${context(run)}`,
    );
    expectStatus(run, VIRTIO_PROBE_EXIT.ok);
    assert.is(run.console, 'virtio-console: hello\n', `${vmm}: what the console socket received`);
    const { rxPackets, txPackets } = tap.stats();
    assert.ok(rxPackets >= 1, `${vmm}: the tap received ${rxPackets} frames from the guest`);
    assert.ok(txPackets >= 1, `${vmm}: the tap sent ${txPackets} frames to the guest`);
    const image = readFileSync(disk);
    assert.is(blkPatternMismatch(image), null, `${vmm}: the pattern in the image file`);
    assert.ok(
      image.subarray(0, 512).every((b) => b === FILL),
      `${vmm}: sector 0 untouched`,
    );
    assert.ok(
      image.subarray(9 * 512).every((b) => b === FILL),
      `${vmm}: sectors after the pattern untouched`,
    );
    return { run, hostMac: tap.hostMac };
  } finally {
    tap.close();
    rmSync(disk, { force: true });
  }
}

testIf(
  test,
  withBothAndTap,
  'virtio under tsvmm: blk, rng, console and net give the same results as under QEMU, with MSI-X',
  async () => {
    const qemu = await allDevices('qemu');
    const tsvmm = await allDevices('tsvmm');
    assert.equal(
      comparableLines(tsvmm.run.serial),
      comparableLines(qemu.run.serial),
      `tsvmm${context(tsvmm.run)}\nqemu${context(qemu.run)}`,
    );
    // Every queue interrupt came through MSI-X (the probe counts each vector's interrupts).
    assert.match(tsvmm.run.serial, /^virtio-blk: msi-x q0 vector 0x[0-9a-f]+ [1-9]\d* irqs/m);
    assert.match(tsvmm.run.serial, /^virtio-net: msi-x q0 vector 0x[0-9a-f]+ [1-9]\d* irqs/m);
  },
);

testIf(
  test,
  withBoth,
  "virtio under tsvmm: a read-only disk refuses writes as QEMU's does, and the image is unchanged",
  async () => {
    const results: string[][] = [];
    for (const vmm of ['qemu', 'tsvmm'] as const) {
      const disk = makeDisk(`ro-${vmm}`);
      try {
        const r = await probe(vmm, { devices: ['blk', 'rng'], disk, readOnlyDisk: true });
        assert.ok(r.serial.includes('virtio-blk: FAILED: the device is read-only\n'), `${vmm}${context(r)}`);
        assert.ok(r.serial.includes('virtio-rng: ok\n'), `${vmm}${context(r)}`);
        expectStatus(r, VIRTIO_PROBE_EXIT.blk);
        assert.ok(
          readFileSync(disk).every((b) => b === FILL),
          `${vmm}: the read-only image is unchanged`,
        );
        results.push(r.serial.split('\n').filter((l) => /FAILED|virtio-rng: ok/.test(l)));
      } finally {
        rmSync(disk, { force: true });
      }
    }
    assert.equal(results[1], results[0]);
  },
);

testIf(
  test,
  withBoth,
  "virtio under tsvmm: with ioeventfd=off every kick exits to the VMM, and blk and rng still give QEMU's results",
  async () => {
    const lines: string[][] = [];
    for (const vmm of ['qemu', 'tsvmm'] as const) {
      const disk = makeDisk(`noioeventfd-${vmm}`);
      try {
        const r = await probe(vmm, { devices: ['blk', 'rng'], disk, serial: SERIAL, deviceOptions: ',ioeventfd=off' });
        assert.equal(
          virtioProbeProblems(r.serial, { devices: ['blk', 'rng'], capacitySectors: DISK_SECTORS, serial: SERIAL }),
          [],
          `${vmm}${context(r)}`,
        );
        expectStatus(r, VIRTIO_PROBE_EXIT.ok);
        assert.is(blkPatternMismatch(readFileSync(disk)), null);
        lines.push(comparableLines(r.serial));
      } finally {
        rmSync(disk, { force: true });
      }
    }
    assert.equal(lines[1], lines[0]);
  },
);

testIf(
  test,
  withTsvmm,
  'virtio under tsvmm: ECAM at the MCFG address agrees with type-1, and BARs the guest moves keep working',
  async () => {
    // tsvmm's ECAM is at 0xe0000000 (its MCFG says so); the notification ioeventfds and the MSI-X table follow the BARs.
    await expectMovedBarsWork('tsvmm', 0xe0000000);
  },
);

testIf(
  test,
  withTsvmm,
  'virtio under tsvmm: a missing device is reported by the guest; a console without input says so',
  async () => {
    const r = await probe('tsvmm', { devices: ['rng', 'console'], want: ['rng', 'console', 'net'] });
    assert.equal(
      virtioProbeProblems(r.serial, {
        devices: ['rng', 'console'],
        consoleInput: null,
        exitValue: VIRTIO_PROBE_EXIT.wantedMissing,
      }),
      [],
      context(r),
    );
    expectStatus(r, VIRTIO_PROBE_EXIT.wantedMissing);
    assert.is(r.console, 'virtio-console: hello\n');
  },
);

const noLoop =
  existsSync('/dev/loop-control') && spawnSync('losetup', ['--find']).status === 0
    ? null
    : 'no free loop device (or no losetup) on this host';

testIf(
  test,
  withTsvmm ?? noLoop,
  'virtio under tsvmm: a block device (a loop device) is a disk too: its size comes from the device, writes land in it',
  async () => {
    const backing = makeDisk('loop');
    const loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    try {
      const r = await probe('tsvmm', { devices: ['blk'], disk: loop, serial: SERIAL });
      assert.equal(
        virtioProbeProblems(r.serial, { devices: ['blk'], capacitySectors: DISK_SECTORS, serial: SERIAL }),
        [],
        context(r),
      );
      expectStatus(r, VIRTIO_PROBE_EXIT.ok);
    } finally {
      spawnSync('losetup', ['-d', loop]);
    }
    try {
      assert.is(blkPatternMismatch(readFileSync(backing)), null, "the pattern reached the loop device's backing file");
    } finally {
      rmSync(backing, { force: true });
    }
  },
);

testIf(
  test,
  toolchain,
  'virtio under tsvmm: a drive image that does not exist is one clear line and status 4',
  async () => {
    const r = await probe('tsvmm', { devices: ['blk'], disk: join(tmpdir(), `no-such-image-${process.pid}.img`) });
    assert.is(r.status, 4, context(r));
    assert.match(r.stderr, /cannot open drive image '.*no-such-image-\d+\.img': ENOENT/);
    assert.is(r.serial, '');
  },
);

test.run();
