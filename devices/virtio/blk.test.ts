import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
  ftruncateSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  VirtioBlk,
  SECTOR_SIZE,
  BLK_SEG_MAX,
  BLK_MAX_SEGMENTS,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_BLK_SIZE,
  BLK_CFG_CAPACITY,
  BLK_CFG_SEG_MAX,
  BLK_CFG_BLK_SIZE,
  BLK_CFG_MAX_DISCARD_SEG,
  BLK_CFG_MAX_DISCARD_SECTORS,
  BLK_CFG_WRITE_ZEROES_MAY_UNMAP,
} from './blk.js';
import { VIRTIO_ID_BLOCK } from './types.js';
import { FakeTransport } from './testing/transport.js';
import { SERVE_MAX_BYTES, SERVE_MAX_CHAINS } from './queue.js';
import { testIf } from '../../test/support/skip.js';
import type { BufferSpec } from './testing/driver.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-blk-'));
let files = 0;

/** A raw image of `sectors` sectors, each filled with its sector number's low byte. */
function image(sectors: number, readOnly = false): { path: string; fd: number } {
  const path = join(dir, `disk-${files++}.img`);
  const bytes = new Uint8Array(sectors * SECTOR_SIZE);
  for (let s = 0; s < sectors; s++) bytes.fill(s & 0xff, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
  writeFileSync(path, bytes);
  return { path, fd: openSync(path, readOnly ? 'r' : 'r+') };
}

function setup(options: { sectors?: number; readOnly?: boolean; serial?: string; withoutFeatures?: bigint } = {}) {
  const img = image(options.sectors ?? 64, options.readOnly);
  const blk = new VirtioBlk({ fd: img.fd, readOnly: options.readOnly, serial: options.serial });
  const t = new FakeTransport(blk, { withoutFeatures: options.withoutFeatures }).start();
  const q = t.drivers[0];
  const header = (type: number, sector: bigint | number) => {
    const h = new Uint8Array(16);
    const v = new DataView(h.buffer);
    v.setUint32(0, type, true);
    v.setBigUint64(8, BigInt(sector), true);
    return h;
  };
  /** Sends one request; returns its status byte, the used length and the chain's placed buffers. */
  const send = (specs: BufferSpec[], opts: { indirect?: boolean } = {}) => {
    const added = q.add(specs, opts);
    t.kick(0);
    const used = q.takeUsed();
    assert.is(used.length, 1, 'one request completed');
    assert.is(used[0].id, added.head);
    const status = added.buffers.at(-1)!;
    return { status: t.memory.readU8(status.gpa + status.length - 1), len: used[0].len, buffers: added.buffers };
  };
  const request = (type: number, sector: bigint | number, data: BufferSpec[] = []) =>
    send([{ data: header(type, sector) }, ...data, { length: 1, write: true }]);
  const fileBytes = () => new Uint8Array(readFileSync(img.path));
  return { img, blk, t, q, header, send, request, fileBytes };
}

const pattern = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff);

test('virtio-blk: device type, features and config space describe the image', () => {
  const { blk } = setup({ sectors: 100 });
  assert.is(blk.deviceType, VIRTIO_ID_BLOCK);
  assert.equal(blk.queueMaxSizes, [256]);
  for (const f of [
    VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_DISCARD,
    VIRTIO_BLK_F_WRITE_ZEROES,
  ]) {
    assert.ok(blk.deviceFeatures & (1n << f), `feature ${f}`);
  }
  assert.not.ok(blk.deviceFeatures & (1n << VIRTIO_BLK_F_RO));
  assert.is(blk.readConfig(BLK_CFG_CAPACITY, 4), 100);
  assert.is(blk.readConfig(BLK_CFG_CAPACITY + 4, 4), 0);
  assert.is(blk.readConfig(BLK_CFG_SEG_MAX, 4), BLK_SEG_MAX);
  assert.is(blk.readConfig(BLK_CFG_BLK_SIZE, 4), 512);
  assert.is(blk.readConfig(BLK_CFG_BLK_SIZE, 2), 512);
  assert.is(blk.readConfig(BLK_CFG_MAX_DISCARD_SEG, 4), BLK_MAX_SEGMENTS);
  // QEMU's value: Linux's queue/discard_max_bytes shows 2147483136 under both.
  assert.is(blk.readConfig(BLK_CFG_MAX_DISCARD_SECTORS, 4), 4194303);
  assert.is(blk.readConfig(BLK_CFG_WRITE_ZEROES_MAY_UNMAP, 1), 1);
  assert.is(blk.readConfig(200, 4), 0, 'beyond the config space reads 0');
  blk.writeConfig(); // ignored
});

test('virtio-blk: OUT then IN moves a pattern to and from the right sectors', () => {
  const { request, fileBytes, t } = setup();
  const data = pattern(3 * SECTOR_SIZE, 1);
  const w = request(VIRTIO_BLK_T_OUT, 5, [{ data: data.subarray(0, 1024) }, { data: data.subarray(1024) }]);
  assert.is(w.status, VIRTIO_BLK_S_OK);
  assert.is(w.len, 1, 'a write returns only the status byte');
  assert.equal(fileBytes().subarray(5 * 512, 8 * 512), data);
  assert.ok(
    fileBytes()
      .subarray(4 * 512, 5 * 512)
      .every((b) => b === 4),
    'the sector before is untouched',
  );
  assert.ok(
    fileBytes()
      .subarray(8 * 512, 9 * 512)
      .every((b) => b === 8),
    'the sector after is untouched',
  );
  const r = request(VIRTIO_BLK_T_IN, 5, [
    { length: 512, write: true },
    { length: 1024, write: true },
  ]);
  assert.is(r.status, VIRTIO_BLK_S_OK);
  assert.is(r.len, 1536 + 1);
  const got = new Uint8Array([...t.memory.read(r.buffers[1].gpa, 512), ...t.memory.read(r.buffers[2].gpa, 1024)]);
  assert.equal(got, data);
  assert.ok(t.takeInterrupts().length >= 1);
});

test('virtio-blk: reads, writes and flushes run outside the machine lock; a request whose device was reset meanwhile is dropped', () => {
  const { request, t, q, header, fileBytes } = setup();
  request(VIRTIO_BLK_T_OUT, 1, [{ data: pattern(512, 3) }]);
  request(VIRTIO_BLK_T_IN, 1, [{ length: 512, write: true }]);
  request(VIRTIO_BLK_T_FLUSH, 0);
  assert.is(t.outsideLockCalls, 3);
  // Another thread resets the device while the write's I/O runs: the data may have reached the file (as on real
  // hardware), but the request is not completed into the reset queue and nothing fails.
  t.duringOutsideLock = () => false;
  q.add([{ data: header(VIRTIO_BLK_T_OUT, 2) }, { data: pattern(512, 9) }, { length: 1, write: true }]);
  t.kick(0);
  assert.equal(q.takeUsed(), []);
  assert.equal(t.failures, []);
  assert.equal(fileBytes().subarray(512, 1024), pattern(512, 3), 'the completed write is in the file');
});

test('virtio-blk: the chain layout is not assumed (split header, data sharing the header buffer, status with data)', () => {
  const { send, header, fileBytes, t, q } = setup();
  const data = pattern(512, 9);
  const h = header(VIRTIO_BLK_T_OUT, 2);
  const w = send([
    { data: h.subarray(0, 3) },
    { data: new Uint8Array([...h.subarray(3), ...data.subarray(0, 100)]) },
    { data: data.subarray(100) },
    { length: 1, write: true },
  ]);
  assert.is(w.status, VIRTIO_BLK_S_OK);
  assert.equal(fileBytes().subarray(1024, 1536), data);
  // A read whose last buffer holds both the data tail and the status byte.
  const added = q.add([
    { data: header(VIRTIO_BLK_T_IN, 2) },
    { length: 500, write: true },
    { length: 13, write: true },
  ]);
  t.kick(0);
  assert.equal(q.takeUsed()[0].len, 513);
  assert.is(t.memory.readU8(added.buffers[2].gpa + 12), VIRTIO_BLK_S_OK);
  assert.equal(t.memory.read(added.buffers[2].gpa, 12), data.subarray(500));
});

test('virtio-blk: requests through an indirect table work', () => {
  const { send, header, fileBytes } = setup();
  const data = pattern(1024, 3);
  const r = send([{ data: header(VIRTIO_BLK_T_OUT, 10) }, { data }, { length: 1, write: true }], { indirect: true });
  assert.is(r.status, VIRTIO_BLK_S_OK);
  assert.equal(fileBytes().subarray(10 * 512, 12 * 512), data);
});

test('virtio-blk: out-of-range and partial-sector transfers fail with IOERR and touch nothing', () => {
  const { request, fileBytes } = setup({ sectors: 16 });
  const before = fileBytes();
  for (const [type, sector, length] of [
    [VIRTIO_BLK_T_OUT, 15, 1024],
    [VIRTIO_BLK_T_OUT, 16, 512],
    [VIRTIO_BLK_T_OUT, 2n ** 63n, 512],
    [VIRTIO_BLK_T_OUT, 2n ** 64n - 1n, 512],
    [VIRTIO_BLK_T_OUT, 0, 100],
    [VIRTIO_BLK_T_IN, 15, 1024],
    [VIRTIO_BLK_T_IN, 0, 511],
  ] as const) {
    const data = type === VIRTIO_BLK_T_OUT ? [{ data: pattern(length, 5) }] : [{ length, write: true }];
    const r = request(type, sector, data);
    assert.is(r.status, VIRTIO_BLK_S_IOERR, `type ${type} sector ${sector} length ${length}`);
    assert.is(r.len, 1);
  }
  assert.equal(fileBytes(), before);
  assert.is(
    request(VIRTIO_BLK_T_IN, 15, [{ length: 512, write: true }]).status,
    VIRTIO_BLK_S_OK,
    'the last sector is readable',
  );
});

test('virtio-blk: a read-only device offers RO and refuses writes with IOERR', () => {
  const { blk, request, fileBytes } = setup({ readOnly: true });
  assert.ok(blk.deviceFeatures & (1n << VIRTIO_BLK_F_RO));
  assert.not.ok(blk.deviceFeatures & (1n << VIRTIO_BLK_F_DISCARD));
  const before = fileBytes();
  assert.is(request(VIRTIO_BLK_T_OUT, 0, [{ data: pattern(512, 1) }]).status, VIRTIO_BLK_S_IOERR);
  const seg = new Uint8Array(16);
  new DataView(seg.buffer).setUint32(8, 8, true);
  assert.is(request(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg }]).status, VIRTIO_BLK_S_IOERR);
  assert.is(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg }]).status, VIRTIO_BLK_S_IOERR);
  assert.equal(fileBytes(), before);
  assert.is(request(VIRTIO_BLK_T_IN, 3, [{ length: 512, write: true }]).status, VIRTIO_BLK_S_OK);
  assert.is(request(VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
});

test('virtio-blk: FLUSH succeeds; without FLUSH negotiated, writes still complete (each made stable)', () => {
  assert.is(setup().request(VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
  const { request, fileBytes } = setup({ withoutFeatures: 1n << VIRTIO_BLK_F_FLUSH });
  assert.is(request(VIRTIO_BLK_T_OUT, 1, [{ data: pattern(512, 2) }]).status, VIRTIO_BLK_S_OK);
  assert.equal(fileBytes().subarray(512, 1024), pattern(512, 2));
});

test('virtio-blk: GET_ID returns the serial, NUL-padded to 20 bytes', () => {
  const { request, t } = setup({ serial: 'tsvmm-disk-0' });
  const r = request(VIRTIO_BLK_T_GET_ID, 0, [{ length: 20, write: true }]);
  assert.is(r.status, VIRTIO_BLK_S_OK);
  assert.is(r.len, 21);
  const id = t.memory.read(r.buffers[1].gpa, 20);
  assert.is(new TextDecoder().decode(id.subarray(0, 12)), 'tsvmm-disk-0');
  assert.ok(id.subarray(12).every((b) => b === 0));
  const long = setup({ serial: 'abcdefghijklmnopqrstuvwxyz' });
  const r2 = long.request(VIRTIO_BLK_T_GET_ID, 0, [{ length: 20, write: true }]);
  assert.is(new TextDecoder().decode(long.t.memory.read(r2.buffers[1].gpa, 20)), 'abcdefghijklmnopqrst');
});

test('virtio-blk: an unknown request type completes with UNSUPP', () => {
  const { request } = setup();
  assert.is(request(2, 0).status, VIRTIO_BLK_S_UNSUPP); // legacy SCSI command
  assert.is(request(0x1234, 0, [{ length: 512, write: true }]).status, VIRTIO_BLK_S_UNSUPP);
});

test('virtio-blk: a short header fails the request; a chain without a status byte fails the device', () => {
  const { send, t, q } = setup();
  const r = send([{ data: new Uint8Array(8) }, { length: 1, write: true }]);
  assert.is(r.status, VIRTIO_BLK_S_IOERR);
  q.add([{ data: new Uint8Array(16) }]);
  t.kick(0);
  assert.is(t.failures.length, 1);
  assert.match(t.failures[0], /virtio-blk request queue: request at descriptor \d+ has no writable status byte/);
});

function segments(list: [number, number, number][]): Uint8Array {
  const b = new Uint8Array(16 * list.length);
  const v = new DataView(b.buffer);
  list.forEach(([sector, count, flags], i) => {
    v.setBigUint64(16 * i, BigInt(sector), true);
    v.setUint32(16 * i + 8, count, true);
    v.setUint32(16 * i + 12, flags, true);
  });
  return b;
}

test('virtio-blk: DISCARD punches holes; the unmap flag or too many segments are refused', () => {
  const { request, fileBytes, img } = setup({ sectors: 256 });
  const blocksBefore = fstatSync(img.fd).blocks;
  const r = request(VIRTIO_BLK_T_DISCARD, 0, [
    {
      data: segments([
        [64, 64, 0],
        [160, 32, 0],
      ]),
    },
  ]);
  assert.is(r.status, VIRTIO_BLK_S_OK);
  const after = fileBytes();
  assert.ok(
    after.subarray(64 * 512, 128 * 512).every((b) => b === 0),
    'discarded range reads zero on this file system',
  );
  assert.ok(after.subarray(63 * 512, 64 * 512).every((b) => b === 63));
  assert.ok(after.subarray(128 * 512, 129 * 512).every((b) => b === 128));
  assert.ok(fstatSync(img.fd).blocks < blocksBefore, 'blocks were deallocated');
  assert.is(
    request(VIRTIO_BLK_T_DISCARD, 0, [{ data: segments([[0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP]]) }]).status,
    VIRTIO_BLK_S_UNSUPP,
  );
  assert.is(request(VIRTIO_BLK_T_DISCARD, 0, [{ data: segments([[0, 8, 0x80]]) }]).status, VIRTIO_BLK_S_UNSUPP);
  const many = Array.from({ length: BLK_MAX_SEGMENTS + 1 }, (_, i): [number, number, number] => [i * 8, 8, 0]);
  assert.is(request(VIRTIO_BLK_T_DISCARD, 0, [{ data: segments(many) }]).status, VIRTIO_BLK_S_IOERR);
  assert.is(
    request(VIRTIO_BLK_T_DISCARD, 0, [{ data: segments([[250, 8, 0]]) }]).status,
    VIRTIO_BLK_S_IOERR,
    'beyond capacity',
  );
  assert.is(
    request(VIRTIO_BLK_T_DISCARD, 0, [{ data: new Uint8Array(20) }]).status,
    VIRTIO_BLK_S_IOERR,
    'not whole segments',
  );
});

test('virtio-blk: WRITE_ZEROES zeroes ranges (with and without unmap); an out-of-range segment changes nothing', () => {
  const { request, fileBytes } = setup({ sectors: 64 });
  assert.is(
    request(VIRTIO_BLK_T_WRITE_ZEROES, 0, [
      {
        data: segments([
          [3, 2, 0],
          [10, 5, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP],
        ]),
      },
    ]).status,
    VIRTIO_BLK_S_OK,
  );
  const f = fileBytes();
  assert.ok(f.subarray(3 * 512, 5 * 512).every((b) => b === 0));
  assert.ok(f.subarray(10 * 512, 15 * 512).every((b) => b === 0));
  assert.ok(f.subarray(5 * 512, 6 * 512).every((b) => b === 5));
  assert.ok(f.subarray(15 * 512, 16 * 512).every((b) => b === 15));
  assert.is(
    request(VIRTIO_BLK_T_WRITE_ZEROES, 0, [
      {
        data: segments([
          [20, 1, 0],
          [63, 2, 0],
        ]),
      },
    ]).status,
    VIRTIO_BLK_S_IOERR,
  );
  assert.ok(
    fileBytes()
      .subarray(20 * 512, 21 * 512)
      .every((b) => b === 20),
    'validated before any segment was applied',
  );
  assert.is(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: segments([[0, 1, 2]]) }]).status, VIRTIO_BLK_S_UNSUPP);
});

test('virtio-blk: capacity rounds the image down to whole sectors; reads past a short file return zeroes', () => {
  const img = image(4);
  ftruncateSync(img.fd, 4 * 512 + 100);
  assert.is(new VirtioBlk({ fd: img.fd }).capacity, 4n);
  const blk = new VirtioBlk({ fd: img.fd, sizeBytes: 8 * 512 });
  const t = new FakeTransport(blk).start();
  const h = new Uint8Array(16);
  new DataView(h.buffer).setBigUint64(8, 4n, true);
  const added = t.drivers[0].add([{ data: h }, { length: 1024, write: true }, { length: 1, write: true }]);
  t.memory.fill(added.buffers[1].gpa, 1024, 0xee);
  t.kick(0);
  assert.is(t.memory.readU8(added.buffers[2].gpa), VIRTIO_BLK_S_OK);
  const got = t.memory.read(added.buffers[1].gpa, 1024);
  assert.ok(
    got.subarray(100).every((b) => b === 0),
    'past EOF reads as zero',
  );
});

/** A sparse image of `bytes` whose first byte of each MiB is its MiB number + 1 (the rest reads as zeroes). */
function sparseImage(bytes: number): number {
  const path = join(dir, `sparse-${files++}.img`);
  writeFileSync(path, new Uint8Array(0));
  const fd = openSync(path, 'r+');
  ftruncateSync(fd, bytes);
  for (let mib = 0; mib < bytes >> 20; mib++) writeSync(fd, Uint8Array.of(mib + 1), 0, 1, mib << 20);
  return fd;
}

test('virtio-blk: one kick serves a bounded share of huge requests and asks to be served again; all complete, in order', () => {
  const blk = new VirtioBlk({ fd: sparseImage(8 << 20) });
  const t = new FakeTransport(blk, { ramSize: 8 << 20 }).start();
  const q = t.drivers[0];
  // Each request reads 4 MiB: four 1 MiB descriptors onto one guest buffer (a guest can make a chain of 4 GiB so).
  const data = t.allocator.alloc(1 << 20, 4096);
  const h = new Uint8Array(16); // IN, sector 0
  const heads: number[] = [];
  for (let i = 0; i < 40; i++) {
    const data4 = Array.from({ length: 4 }, (): BufferSpec => ({ gpa: data, length: 1 << 20, write: true }));
    heads.push(q.add([{ data: h }, ...data4, { length: 1, write: true }], { indirect: true }).head);
  }
  const served: number[] = [];
  let kicks = 0;
  do {
    t.servedLater.length = 0;
    t.kick(0);
    kicks++;
    const used = q.takeUsed();
    // (The turn that ends exactly at the budget asks again, and that last turn finds nothing: harmless.)
    assert.ok(used.length >= 1 || t.servedLater.length === 0, 'every turn but a last empty one makes progress');
    assert.ok(used.length <= SERVE_MAX_CHAINS);
    assert.ok((used.length - 1) * (4 << 20) < SERVE_MAX_BYTES, `a kick reads about ${SERVE_MAX_BYTES} bytes at most`);
    for (const u of used) assert.is(u.len, (4 << 20) + 1);
    served.push(...used.map((u) => u.id));
  } while (t.servedLater.length > 0 && kicks < 1000);
  assert.equal(served, heads, 'every request completed once, in order');
  assert.ok(kicks >= 40 / (SERVE_MAX_BYTES / (4 << 20)), `${kicks} turns`);
  assert.is(t.memory.readU8(data), 4, 'the buffer holds the last MiB read into it');
});

test('virtio-blk: a park asked for mid-request gives the chain back; after the pause it is done again from the start', () => {
  const blk = new VirtioBlk({ fd: sparseImage(8 << 20) });
  const t = new FakeTransport(blk, { ramSize: 8 << 20 }).start();
  const q = t.drivers[0];
  const h = new Uint8Array(16);
  new DataView(h.buffer).setBigUint64(8, 2048n, true); // sector 2048: the second MiB
  const added = q.add([{ data: h }, { length: 4 << 20, write: true }, { length: 1, write: true }]);
  let checks = 0;
  t.parkWanted = () => ++checks > 2; // the pause comes while the request's first pieces are read
  t.kick(0);
  assert.equal(q.takeUsed(), [], 'not completed');
  assert.equal(t.servedLater, [0], 'the queue is to be served again');
  assert.equal(t.takeInterrupts(), []);
  t.parkWanted = () => false; // resumed
  t.kick(0);
  const used = q.takeUsed();
  assert.equal(
    used.map((u) => [u.id, u.len]),
    [[added.head, (4 << 20) + 1]],
  );
  const into = added.buffers[1].gpa;
  assert.equal(
    [0, 1, 2, 3].map((mib) => t.memory.readU8(into + (mib << 20))),
    [2, 3, 4, 5],
  );
  assert.is(t.memory.readU8(added.buffers[2].gpa), VIRTIO_BLK_S_OK);
});

test('virtio-blk: many requests in one kick complete in order with one interrupt; nothing happens before activation', () => {
  const img = image(32);
  const blk = new VirtioBlk({ fd: img.fd });
  const t = new FakeTransport(blk);
  const h = new Uint8Array(16); // IN sector 0
  for (let i = 0; i < 5; i++) t.drivers[0].add([{ data: h }, { length: 512, write: true }, { length: 1, write: true }]);
  t.kick(0);
  assert.equal(t.drivers[0].takeUsed(), [], 'not activated: the queue is left alone');
  t.start();
  t.kick(0);
  assert.is(t.drivers[0].takeUsed().length, 5);
  assert.equal(t.takeInterrupts(), [0]);
  blk.reset();
  t.drivers[0].add([{ data: h }, { length: 512, write: true }, { length: 1, write: true }]);
  t.kick(0);
  assert.equal(t.drivers[0].takeUsed(), [], 'after reset the back end forgets the queues');
});

testIf(
  test,
  existsSync('/dev/shm') ? null : 'no /dev/shm (tmpfs)',
  'virtio-blk: WRITE_ZEROES falls back to punching a hole or writing zeroes where ZERO_RANGE is unsupported (tmpfs)',
  () => {
    const shm = mkdtempSync('/dev/shm/tsvmm-blk-');
    try {
      const path = join(shm, 'disk.img');
      writeFileSync(path, new Uint8Array(32 * 512).fill(0xaa));
      const fd = openSync(path, 'r+');
      const blk = new VirtioBlk({ fd });
      const t = new FakeTransport(blk).start();
      const h = new Uint8Array(16);
      new DataView(h.buffer).setUint32(0, VIRTIO_BLK_T_WRITE_ZEROES, true);
      const added = t.drivers[0].add([
        { data: h },
        {
          data: segments([
            [1, 2, 0],
            [8, 4, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP],
          ]),
        },
        { length: 1, write: true },
      ]);
      t.kick(0);
      assert.is(t.memory.readU8(added.buffers[2].gpa), VIRTIO_BLK_S_OK);
      const f = new Uint8Array(readFileSync(path));
      assert.ok(f.subarray(512, 3 * 512).every((b) => b === 0));
      assert.ok(f.subarray(8 * 512, 12 * 512).every((b) => b === 0));
      assert.ok(f.subarray(3 * 512, 8 * 512).every((b) => b === 0xaa));
      assert.is(blk.lastError, null);
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  },
);

test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test.run();
