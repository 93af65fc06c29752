// cpr-save's last step before it captures the state: the guest's writes made durable on every writable image.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syncImages } from './sync-images.js';
import { CprError } from './cpr-error.js';
import { newImageSyncFlag } from '../../src/sys/image-sync.js';
import {
  VirtioBlk,
  SECTOR_SIZE,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_OUT,
} from '../../devices/virtio/blk.js';
import { FakeTransport } from '../../devices/virtio/testing/transport.js';
import { failingLoopDevice, hostLacksFailingDisks } from '../../test/support/failing-disk.js';
import { testIf } from '../../test/support/skip.js';

test('writable images are synced; read-only ones are left alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-sync-images-'));
  const fd = openSync(join(dir, 'disk.img'), 'w+');
  try {
    writeSync(fd, new Uint8Array(4096).fill(7), 0, 4096, 0);
    syncImages([
      { id: 'd0', fd, readOnly: false },
      { id: 'cdrom', fd: -1, readOnly: true }, // never touched: an fd that does not exist would fail
    ]);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an image that cannot be synced fails the save with the drive named and the reason', () => {
  const fd = openSync('/dev/null', 'r+'); // fdatasync on it fails (EINVAL), as it would with EIO on a dying disk
  try {
    assert.throws(
      () => syncImages([{ id: 'd1', fd, readOnly: false }]),
      (e: Error) => e instanceof CprError && /drive d1's image could not be synced: EINVAL/.test(e.message),
    );
  } finally {
    closeSync(fd);
  }
});

const MIB = 1 << 20;

/**
 * A guest's disk on a loop device whose writeback fails past ~8 MiB, as the machine wires it: the virtio-blk back
 * end and the save's image list share the image's sync-failure flag. The guest has written 12 MiB it never flushed.
 */
function diskWithLostWrites(body: (d: { flush: () => number; image: Parameters<typeof syncImages>[0][0] }) => void) {
  const disk = failingLoopDevice(8 * MIB, 64 * MIB);
  const fd = openSync(disk.path, 'r+');
  try {
    const syncFailure = newImageSyncFlag();
    const t = new FakeTransport(new VirtioBlk({ fd, sizeBytes: 64 * MIB, syncFailure }), { ramSize: 4 * MIB }).start();
    const q = t.drivers[0];
    const data = t.allocator.alloc(MIB, 4096);
    t.memory.write(data, new Uint8Array(MIB).fill(0x5a));
    const request = (type: number, offset: number): number => {
      const header = new Uint8Array(16);
      new DataView(header.buffer).setUint32(0, type, true);
      new DataView(header.buffer).setBigUint64(8, BigInt(offset / SECTOR_SIZE), true);
      const body = type === VIRTIO_BLK_T_OUT ? [{ gpa: data, length: MIB }] : [];
      const added = q.add([{ data: header }, ...body, { length: 1, write: true }]);
      t.kick(0);
      q.takeUsed();
      return t.memory.readU8(added.buffers.at(-1)!.gpa);
    };
    for (let i = 0; i < 12; i++) assert.is(request(VIRTIO_BLK_T_OUT, (16 + i) * MIB), VIRTIO_BLK_S_OK);
    body({ flush: () => request(VIRTIO_BLK_T_FLUSH, 0), image: { id: 'd0', fd, readOnly: false, syncFailure } });
  } finally {
    closeSync(fd);
    disk.cleanup();
  }
}

const savedSyncFails = (image: Parameters<typeof syncImages>[0][0]) =>
  assert.throws(
    () => syncImages([image]),
    (e: Error) => e instanceof CprError && /drive d0's image could not be synced: EIO/.test(e.message),
  );

testIf(
  test,
  hostLacksFailingDisks(),
  "a save whose sync of an image fails (EIO) makes the guest's next FLUSH fail: Linux reports a lost writeback once, and the save took that report",
  () =>
    diskWithLostWrites(({ flush, image }) => {
      savedSyncFails(image);
      assert.is(flush(), VIRTIO_BLK_S_IOERR, 'the guest is not told its lost writes are stable');
      savedSyncFails(image); // and a second save does not claim them durable either
    }),
);

testIf(
  test,
  hostLacksFailingDisks(),
  "a guest FLUSH that failed (EIO) makes the save's sync of the image fail: the save does not claim durable what was lost",
  () =>
    diskWithLostWrites(({ flush, image }) => {
      assert.is(flush(), VIRTIO_BLK_S_IOERR);
      savedSyncFails(image);
    }),
);

test.run();
