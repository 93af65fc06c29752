// The virtio-probe guest under QEMU, the reference: PCI enumeration (type-1 and ECAM), BAR placement, and virtio
// blk/rng/console/net driven over split virtqueues with MSI-X interrupts, against QEMU's own device models. The
// expectations live in virtio-probe-host.ts so that tsvmm's run of the same guest is judged by the same checks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import { testIf } from '../../test/support/skip.js';
import { toolchainUnavailable } from './build.js';
import { qemuAccel, qemuUnavailable } from './qemu-runner.js';
import {
  blkPatternMismatch,
  comparableLines,
  createTapNamespace,
  tapUnavailable,
  virtioProbeProblems,
  VIRTIO_PROBE_EXIT,
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

const base = qemuUnavailable() ?? (await toolchainUnavailable());
const withTap = base ?? tapUnavailable();
const accel = qemuAccel();
const probeQemu = (opts: Parameters<typeof probe>[1]) => probe('qemu', opts);
const name = (s: string) => `virtio-probe (qemu ${accel}): ${s}`;

testIf(
  test,
  withTap,
  name('blk, rng, console and net on -M pc: every request completes with MSI-X interrupts'),
  async () => {
    const disk = makeDisk('pc');
    const tap = createTapNamespace();
    try {
      const r = await probeQemu({
        devices: ['blk', 'rng', 'console', 'net'],
        disk,
        serial: SERIAL,
        tap,
        consoleInput: 'ping from host',
      });
      assert.equal(
        virtioProbeProblems(r.serial, {
          devices: ['blk', 'rng', 'console', 'net'],
          capacitySectors: DISK_SECTORS,
          serial: SERIAL,
          consoleInput: 'ping from host',
          hostMac: tap.hostMac,
        }),
        [],
        context(r),
      );
      expectStatus(r, VIRTIO_PROBE_EXIT.ok);
      // The host side saw it too: the line on the console socket, the frame on the tap, the pattern in the file.
      assert.is(r.console, 'virtio-console: hello\n');
      const { rxPackets, txPackets } = tap.stats();
      assert.ok(rxPackets >= 1, `the tap received ${rxPackets} frames from the guest`);
      assert.ok(txPackets >= 1, `the tap sent ${txPackets} frames to the guest`);
      const image = readFileSync(disk);
      assert.is(blkPatternMismatch(image), null);
      assert.ok(
        image.subarray(0, 512).every((b) => b === FILL),
        'sector 0 untouched',
      );
      assert.ok(
        image.subarray(9 * 512).every((b) => b === FILL),
        'sectors after the pattern untouched',
      );
      assert.equal(comparableLines(r.serial), [
        `virtio-blk: capacity ${DISK_SECTORS}, write/read ok, flush ok, id ${SERIAL}, oob ioerr`,
        'virtio-rng: ok',
        'virtio-console: hello sent',
        'virtio-console: received "ping from host"',
        'virtio-net: mac 52:54:00:12:34:56',
        'virtio-net: sent arp who-has 10.0.2.2 tell 10.0.2.15',
        ...comparableLines(r.serial).filter((l) => l.startsWith('virtio-net: rx ')),
        `virtio-net: arp reply 10.0.2.2 is-at ${tap.hostMac}`,
        'virtio-probe: all ok',
      ]);
    } finally {
      tap.close();
      rmSync(disk, { force: true });
    }
  },
);

testIf(
  test,
  base,
  name('q35: type-1 and ECAM agree, and BARs the guest places itself in its window work'),
  async () => {
    // QEMU's q35 firmware puts ECAM (MCFG) at 0xb0000000.
    await expectMovedBarsWork('qemu', 0xb0000000, { machine: 'q35' }, 30_000);
  },
);

testIf(
  test,
  base,
  name('a 64-bit BAR the firmware left above 4 GiB is moved below it, and the device works there'),
  async () => {
    // A 2 GiB ivshmem BAR does not fit in pc's 32-bit PCI window, so SeaBIOS puts the 64-bit BARs above 4 GiB.
    const r = await probeQemu({
      devices: ['rng'],
      qemuArgs: ['-object', 'memory-backend-ram,id=vpbig,size=2G', '-device', 'ivshmem-plain,memdev=vpbig'],
    });
    assert.equal(virtioProbeProblems(r.serial, { devices: ['rng'] }), [], context(r));
    expectStatus(r, VIRTIO_PROBE_EXIT.ok);
    assert.match(
      r.serial,
      /^virtio: 00:[0-9a-f]{2}\.0 rng, .*bar4 0x[0-9a-f]{8} \(16 KiB, 64-bit, moved below 4 GiB\)$/m,
      context(r),
    );
  },
);

testIf(
  test,
  base,
  name('a wanted device that is missing ends the guest with 0x10; console without input says so'),
  async () => {
    const r = await probeQemu({ devices: ['rng', 'console'], want: ['rng', 'console', 'net'] });
    assert.equal(
      virtioProbeProblems(r.serial, {
        devices: ['rng', 'console'],
        consoleInput: null,
        exitValue: VIRTIO_PROBE_EXIT.wantedMissing,
      }),
      [],
      context(r),
    );
    assert.ok(r.serial.includes('virtio-probe: FAILED: wanted virtio-net, but there is none\n'), context(r));
    expectStatus(r, VIRTIO_PROBE_EXIT.wantedMissing);
    assert.is(r.console, 'virtio-console: hello\n');
  },
);

testIf(
  test,
  base,
  name('a read-only disk fails the blk test with its own exit value (0x21), the others still pass'),
  async () => {
    const disk = makeDisk('ro');
    try {
      const r = await probeQemu({ devices: ['blk', 'rng'], disk, readOnlyDisk: true });
      assert.ok(r.serial.includes('virtio-blk: FAILED: the device is read-only\n'), context(r));
      assert.ok(r.serial.includes('virtio-rng: ok\n'), context(r));
      assert.ok(r.serial.includes('virtio-probe: FAILED (exit 0x21)\n'), context(r));
      expectStatus(r, VIRTIO_PROBE_EXIT.blk);
      assert.ok(
        readFileSync(disk).every((b) => b === FILL),
        'the read-only image is unchanged',
      );
    } finally {
      rmSync(disk, { force: true });
    }
  },
);

test.run();
