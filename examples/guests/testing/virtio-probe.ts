// What the virtio-probe tests share (virtio-qemu.test.ts, virtio-tsvmm.test.ts): the disk they hand the guest, one
// run of the guest under either VMM, and how a run is shown and judged.
import * as assert from 'uvu/assert';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGuest, repoRoot } from '../build.js';
import { debugExitProcessStatus } from '../qemu-runner.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  barsOutsideWindow,
  blkPatternMismatch,
  runVirtioProbe,
  virtioProbeProblems,
  VIRTIO_PROBE_EXIT,
  type VirtioProbeOptions,
  type VirtioProbeRun,
} from '../virtio-probe-host.js';

export const DISK_SECTORS = 2048; // 1 MiB
export const SERIAL = 'VPROBE-0001';
export const FILL = 0xee; // what the image holds before the guest writes

/** A fresh 1 MiB raw image in build/virtio-probe/, filled with FILL so a read that skipped the write shows. */
export function makeDisk(tag: string): string {
  const dir = join(repoRoot(), 'build', 'virtio-probe');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${tag}-${process.pid}.img`);
  writeFileSync(path, Buffer.alloc(DISK_SECTORS * 512, FILL));
  return path;
}

/** One run of virtio-probe under `vmm`, with a scratch directory for its sockets. */
export async function probe(
  vmm: 'qemu' | 'tsvmm',
  opts: Omit<VirtioProbeOptions, 'kernel' | 'socketDir'>,
  // A hang guard, not a budget (test/support/hang-guard.ts): a loaded machine may be many times slower.
  timeoutMs = 300_000,
): Promise<VirtioProbeRun> {
  const guest = await buildGuest('virtio-probe');
  const socketDir = mkdtempSync(join(tmpdir(), 'vp-'));
  try {
    return await runVirtioProbe(vmm, { ...opts, kernel: guest.path, socketDir, timeoutMs });
  } finally {
    rmSync(socketDir, { recursive: true, force: true });
  }
}

/** The command, COM1 and stderr of a run, for assertion messages. */
export const context = (r: VirtioProbeRun) => `\n$ ${r.argv.join(' ')}\nCOM1:\n${r.serial}\nstderr:\n${r.stderr}`;

/** The run ended by itself with the guest's isa-debug-exit `value`. */
export function expectStatus(r: VirtioProbeRun, value: number): void {
  assert.not.ok(r.timedOut, `timed out after ${r.ms} ms${context(r)}`);
  assert.is(r.status, debugExitProcessStatus(value), `exit status${context(r)}`);
}

/**
 * blk and rng with the guest reaching config space through ECAM at `ecam` (type 1 must agree) and moving every virtio
 * BAR into 0xd0000000+ itself: the devices must keep working where it put them.
 */
export async function expectMovedBarsWork(
  vmm: 'qemu' | 'tsvmm',
  ecam: number,
  extra: Partial<VirtioProbeOptions> = {},
  timeoutMs?: number,
): Promise<void> {
  const disk = makeDisk(`reassign-${vmm}`);
  try {
    const r = await probe(
      vmm,
      {
        devices: ['blk', 'rng'],
        disk,
        serial: SERIAL,
        ...extra,
        append: `ecam=0x${ecam.toString(16)} reassign=1 mmio=0xd0000000 mmio_size=0x1000000`,
      },
      timeoutMs,
    );
    assert.equal(
      virtioProbeProblems(r.serial, {
        devices: ['blk', 'rng'],
        capacitySectors: DISK_SECTORS,
        serial: SERIAL,
        ecam: true,
      }),
      [],
      context(r),
    );
    expectStatus(r, VIRTIO_PROBE_EXIT.ok);
    assert.equal(barsOutsideWindow(r.serial, 0xd0000000, 0x1000000), [], context(r));
    assert.is(blkPatternMismatch(readFileSync(disk)), null);
  } finally {
    rmSync(disk, { force: true });
  }
}
