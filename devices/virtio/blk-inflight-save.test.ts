// virtio-blk requests in flight at a checkpoint: what cpr-save in reboot mode does to a busy disk, played without
// KVM. The guest has 16 big requests queued (8 writes of 4 MiB, then 8 reads of the same sectors); the I/O thread is
// asked to park in the middle of a write (the save's stop-vcpus phase), the image is fdatasynced (sync-images) and
// the queue records are encoded as the checkpoint has them; a new process decodes them, with a new VirtioBlk on the
// same image over the same RAM (reboot mode keeps RAM in a shared file), and is re-signalled as
// VirtioPciTransport.restored() does. Every request then completes exactly once, with the right data.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { decodeInto, encodeRecord } from '../../cpr/vmstate/stream.js';
import { VirtioBlk, HOST_IO_PIECE, SECTOR_SIZE, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from './blk.js';
import { virtqueueStateDescriptor } from './queue.js';
import { FakeTransport } from './testing/transport.js';
import type { AddedChain, BufferSpec } from './testing/driver.js';

const MIB = 1 << 20;
const REQUEST_BYTES = 4 * MIB; // 4 buffers of 1 MiB: 4 host I/O pieces, a park check before each
const WRITES = 8;
const DISK_BYTES = WRITES * REQUEST_BYTES;

/** The data of write `i`: different per request and per sector, never zero (so it cannot pass for a hole). */
const patterns = Array.from({ length: WRITES }, (_, i) =>
  Uint8Array.from({ length: REQUEST_BYTES }, (_, j) => ((j >>> 9) * 31 + j * 7 + i * 101) & 0xff || 1),
);
const pattern = (i: number) => patterns[i];

function header(type: number, offset: number): Uint8Array {
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setBigUint64(8, BigInt(offset / SECTOR_SIZE), true);
  return h;
}

test('virtio-blk: 16 requests in flight at a reboot-mode save — the park comes mid-write, and after the restore every request completes exactly once with the right data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-blk-inflight-'));
  const image = join(dir, 'disk.img');
  closeSync(openSync(image, 'wx', 0o600));
  truncateSync(image, DISK_BYTES);
  let fd = openSync(image, 'r+');
  try {
    // ---- the old process: the guest queues everything and kicks once ----
    let parkChecks = 0;
    // A check before each chain and before each MiB of it: the 13th is the third write's second MiB.
    const PARK_AT = 13;
    const old = new FakeTransport(new VirtioBlk({ fd }), { ramSize: 2 * WRITES * REQUEST_BYTES + 8 * MIB });
    old.parkWanted = () => ++parkChecks >= PARK_AT;
    old.start();
    const driver = old.drivers[0];
    const requests: { added: AddedChain; type: number; index: number; data: number }[] = [];
    const queue = (type: number, index: number) => {
      const data = old.allocator.alloc(REQUEST_BYTES, 4096);
      if (type === VIRTIO_BLK_T_OUT) old.memory.write(data, pattern(index));
      const buffers = Array.from(
        { length: REQUEST_BYTES / MIB },
        (_, k): BufferSpec => ({ gpa: data + k * MIB, length: MIB, write: type === VIRTIO_BLK_T_IN }),
      );
      const added = driver.add(
        [{ data: header(type, index * REQUEST_BYTES) }, ...buffers, { length: 1, write: true }],
        {
          indirect: true,
        },
      );
      requests.push({ added, type, index, data });
    };
    for (let i = 0; i < WRITES; i++) queue(VIRTIO_BLK_T_OUT, i);
    for (let i = 0; i < WRITES; i++) queue(VIRTIO_BLK_T_IN, i);
    assert.is(HOST_IO_PIECE, MIB, 'one park check per MiB (the count above assumes it)');
    old.kick(0);

    const before = driver.takeUsed();
    assert.is(before.length, 2, 'two writes completed before the park');
    assert.equal(old.servedLater, [0], 'the rest is left for later (the write in progress given back to the ring)');
    const third = new Uint8Array(MIB);
    readSync(fd, third, 0, MIB, 2 * REQUEST_BYTES);
    assert.ok(
      Buffer.compare(third, pattern(2).subarray(0, MIB)) === 0,
      'the third write was in progress: its first MiB is in the image, yet it did not complete',
    );

    // ---- the save: images synced, queue records encoded; the old process ends ----
    fdatasyncSync(fd);
    const saved = old.records.map((r) => encodeRecord(virtqueueStateDescriptor, r));
    closeSync(fd);

    // ---- the new process: records decoded, a new back end on the same image and RAM, re-signalled ----
    fd = openSync(image, 'r+');
    const records = saved.map((bytes) => {
      const r = newRecord(virtqueueStateDescriptor);
      decodeInto(virtqueueStateDescriptor, bytes, virtqueueStateDescriptor.version, r);
      return r;
    });
    const restored = new FakeTransport(new VirtioBlk({ fd }), { restoredFrom: { memory: old.memory, records } });
    restored.start();
    restored.kick(0); // restored() signals queue 0 of an active device
    for (let turns = 0; restored.servedLater.splice(0).length > 0; turns++) {
      assert.ok(turns < 100, 'the queue drains in bounded turns');
      restored.kick(0);
    }

    const after = driver.takeUsed();
    const heads = [...before, ...after].map((u) => u.id).sort((a, b) => a - b);
    assert.equal(
      heads,
      requests.map((r) => r.added.head).sort((a, b) => a - b),
      'every request completed, none twice',
    );
    for (const r of requests) {
      const status = r.added.buffers.at(-1)!;
      assert.is(old.memory.readU8(status.gpa), VIRTIO_BLK_S_OK, `request ${r.type}/${r.index} status`);
      if (r.type === VIRTIO_BLK_T_IN) {
        const got = old.memory.read(r.data, REQUEST_BYTES);
        assert.ok(Buffer.compare(got, pattern(r.index)) === 0, `read ${r.index} returns write ${r.index}'s data`);
      }
    }
    const disk = new Uint8Array(REQUEST_BYTES);
    for (let i = 0; i < WRITES; i++) {
      readSync(fd, disk, 0, REQUEST_BYTES, i * REQUEST_BYTES);
      assert.ok(Buffer.compare(disk, pattern(i)) === 0, `write ${i} is in the image`);
    }
    assert.equal([...old.failures, ...restored.failures], [], 'no device failed');
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
