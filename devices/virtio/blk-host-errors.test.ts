// virtio-blk over disks that fail: a real VirtioBlk (through the back-end tests' FakeTransport, no KVM) on a loop
// device whose writeback fails with EIO, and on an image in a file system that runs out of space (ENOSPC). The
// rule (QEMU's werror=report,rerror=report): the failing request completes with IOERR, the device goes on serving the
// next requests, and what was acknowledged before the failure is on the disk.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, openSync, readSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import {
  VirtioBlk,
  SECTOR_SIZE,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from './blk.js';
import { FakeTransport } from './testing/transport.js';
import type { BufferSpec } from './testing/driver.js';
import { failingLoopDevice, hostLacksFailingDisks, smallTmpfs, type Scratch } from '../../test/support/failing-disk.js';
import { testIf } from '../../test/support/skip.js';

const MIB = 1 << 20;
const lacks = hostLacksFailingDisks();

/** A VirtioBlk on `path` (`sizeBytes` for a block device) with a driver, 1 MiB data buffer and request helpers. */
function drive(path: string, sizeBytes: number, options: { withoutFeatures?: bigint } = {}) {
  const fd = openSync(path, 'r+');
  const blk = new VirtioBlk({ fd, sizeBytes });
  const t = new FakeTransport(blk, { ramSize: 8 * MIB, withoutFeatures: options.withoutFeatures }).start();
  const q = t.drivers[0];
  const buffer = t.allocator.alloc(MIB, 4096);
  const request = (type: number, offset: number, data?: Uint8Array): number => {
    const header = new Uint8Array(16);
    new DataView(header.buffer).setUint32(0, type, true);
    new DataView(header.buffer).setBigUint64(8, BigInt(offset / SECTOR_SIZE), true);
    let body: BufferSpec[] = [];
    if (type === VIRTIO_BLK_T_OUT) {
      t.memory.write(buffer, data!);
      body = [{ gpa: buffer, length: data!.length }];
    } else if (type === VIRTIO_BLK_T_IN) {
      body = [{ gpa: buffer, length: MIB, write: true }];
    }
    const added = q.add([{ data: header }, ...body, { length: 1, write: true }]);
    t.kick(0);
    assert.is(q.takeUsed().length, 1, 'the request completed');
    const status = added.buffers.at(-1)!;
    return t.memory.readU8(status.gpa);
  };
  const readBack = (offset: number): Uint8Array => {
    assert.is(request(VIRTIO_BLK_T_IN, offset), VIRTIO_BLK_S_OK, `read at ${offset}`);
    return t.memory.read(buffer, MIB);
  };
  return { blk, t, request, readBack, close: () => closeSync(fd) };
}

/** 1 MiB that differs per `seed` (and is never all zeroes, so it cannot pass for a hole). */
const pattern = (seed: number) => Uint8Array.from({ length: MIB }, (_, i) => ((i * 13 + seed) & 0xff) | 1);

/** Byte equality without uvu's diff (which, for a MiB, takes minutes to print). */
function assertSame(got: Uint8Array, want: Uint8Array, message = 'the bytes are the expected ones'): void {
  assert.ok(Buffer.compare(got, want) === 0, message);
}

/** The first MiB at `offset` of a file, read from the file itself (not through the device). */
function fileMib(path: string, offset: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const out = new Uint8Array(MIB);
    readSync(fd, out, 0, MIB, offset);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Runs `body` with a scratch disk, always cleaning it up. */
function withDisk<D extends Scratch>(make: () => D, body: (disk: D) => void): void {
  const disk = make();
  try {
    body(disk);
  } finally {
    disk.cleanup();
  }
}

testIf(
  test,
  lacks,
  'virtio-blk on a disk whose writeback fails (EIO): the FLUSH completes IOERR, and so does every later one; reads and writes are still served; what was flushed before is on the disk',
  () =>
    withDisk(
      () => failingLoopDevice(8 * MIB, 64 * MIB),
      (disk) => {
        const d = drive(disk.path, 64 * MIB);
        try {
          assert.is(d.request(VIRTIO_BLK_T_OUT, 0, pattern(1)), VIRTIO_BLK_S_OK);
          assert.is(d.request(VIRTIO_BLK_T_FLUSH, 0), VIRTIO_BLK_S_OK, 'the first MiB fits: its flush succeeds');
          // 12 MiB more than the 8 MiB tmpfs holds: each write lands in the page cache (OK), its writeback fails.
          for (let i = 0; i < 12; i++)
            assert.is(d.request(VIRTIO_BLK_T_OUT, (16 + i) * MIB, pattern(100 + i)), VIRTIO_BLK_S_OK);
          assert.is(d.request(VIRTIO_BLK_T_FLUSH, 0), VIRTIO_BLK_S_IOERR, 'the flush reports the lost writeback');
          assert.match(d.blk.lastError ?? '', /EIO|ENOSPC/);
          // Linux would report the error to that one fdatasync only: the next would say OK over lost data.
          assert.is(d.request(VIRTIO_BLK_T_FLUSH, 0), VIRTIO_BLK_S_IOERR, 'a later flush fails too');
          assertSame(d.readBack(0), pattern(1), 'reads are served');
          assert.is(d.request(VIRTIO_BLK_T_OUT, MIB, pattern(2)), VIRTIO_BLK_S_OK, 'writes are served');
          d.t.takeInterrupts();
          assert.equal(d.t.failures, [], 'the device did not fail (no DEVICE_NEEDS_RESET)');
        } finally {
          d.close();
        }
        assertSame(fileMib(disk.backing, 0), pattern(1), 'the flushed MiB reached the disk');
      },
    ),
);

testIf(
  test,
  lacks,
  'virtio-blk without FLUSH negotiated on a disk whose writeback fails (EIO): the write that cannot be made stable completes IOERR, and every later write too; reads are still served',
  () =>
    withDisk(
      () => failingLoopDevice(8 * MIB, 64 * MIB),
      (disk) => {
        const d = drive(disk.path, 64 * MIB, { withoutFeatures: 1n << VIRTIO_BLK_F_FLUSH });
        try {
          assert.is(d.request(VIRTIO_BLK_T_OUT, 0, pattern(1)), VIRTIO_BLK_S_OK, 'each write is made stable');
          const statuses = Array.from({ length: 12 }, (_, i) =>
            d.request(VIRTIO_BLK_T_OUT, (16 + i) * MIB, pattern(100 + i)),
          );
          const first = statuses.indexOf(VIRTIO_BLK_S_IOERR);
          assert.ok(first >= 0, `a write past the disk's space fails: ${statuses}`);
          assert.ok(
            statuses.slice(first).every((s) => s === VIRTIO_BLK_S_IOERR),
            `no write is acknowledged after stability was lost: ${statuses}`,
          );
          assertSame(d.readBack(0), pattern(1), 'reads are served');
          assert.equal(d.t.failures, []);
        } finally {
          d.close();
        }
        assertSame(fileMib(disk.backing, 0), pattern(1), 'the acknowledged write reached the disk');
      },
    ),
);

testIf(
  test,
  lacks,
  'virtio-blk on a sparse image in a full file system (ENOSPC): the write completes IOERR; earlier data reads back, and writes into space the image already has still succeed and flush',
  () =>
    withDisk(
      () => smallTmpfs(4 * MIB),
      (fs) => {
        const image = join(fs.path, 'disk.img');
        closeSync(openSync(image, 'wx', 0o600));
        truncateSync(image, 64 * MIB); // sparse: its blocks are allocated as they are written
        const d = drive(image, 64 * MIB);
        try {
          assert.is(d.request(VIRTIO_BLK_T_OUT, 0, pattern(1)), VIRTIO_BLK_S_OK);
          assert.is(d.request(VIRTIO_BLK_T_FLUSH, 0), VIRTIO_BLK_S_OK);
          const statuses = Array.from({ length: 8 }, (_, i) =>
            d.request(VIRTIO_BLK_T_OUT, (16 + i) * MIB, pattern(100 + i)),
          );
          assert.ok(statuses.includes(VIRTIO_BLK_S_IOERR), `a write past the file system's space fails: ${statuses}`);
          assert.match(d.blk.lastError ?? '', /ENOSPC/);
          assertSame(d.readBack(0), pattern(1), 'the data before the failure reads back');
          assert.is(d.request(VIRTIO_BLK_T_OUT, 0, pattern(2)), VIRTIO_BLK_S_OK, 'an overwrite needs no space');
          assert.is(d.request(VIRTIO_BLK_T_FLUSH, 0), VIRTIO_BLK_S_OK, 'ENOSPC at a write does not poison flushes');
          assert.equal(d.t.failures, []);
        } finally {
          d.close();
        }
        assertSame(fileMib(image, 0), pattern(2));
      },
    ),
);

test.run();
