// virtio-blk (devices/virtio/blk.ts) over guest RAM the fuzzer writes (support/virtio-ram.ts), on a 64-sector image
// in a private scratch directory; besides the virtio rules, the image never grows.
import { fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SECTOR_SIZE,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VirtioBlk,
} from '../../devices/virtio/blk.js';
import { invariant } from '../support/contract.js';
import { ramSeed, serveFromRam } from '../support/virtio-ram.js';

export const instrumented = ['devices/virtio/blk.js', 'devices/virtio/queue.js'];

const IMAGE_BYTES = 64 * SECTOR_SIZE;
let fd = -1;

function image(): number {
  if (fd < 0) {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-fuzz-blk-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'disk.img'), new Uint8Array(IMAGE_BYTES), { mode: 0o600 });
    fd = openSync(join(dir, 'disk.img'), 'r+');
  }
  return fd;
}

export function fuzz(data: Uint8Array): void {
  serveFromRam({ backend: new VirtioBlk({ fd: image(), serial: 'fuzz' }) }, data);
  invariant(fstatSync(fd).size === IMAGE_BYTES, 'the image never grows');
}

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setBigUint64(8, BigInt(sector), true);
  return h;
}

export const seeds = (): Uint8Array[] => {
  const blk = () => new VirtioBlk({ fd: image(), serial: 'fuzz' });
  const status = { length: 1, write: true };
  return [
    ramSeed(blk(), 0, [[0, [{ data: header(VIRTIO_BLK_T_IN, 3) }, { length: 512, write: true }, status]]]),
    ramSeed(blk(), 1, [
      [0, [{ data: header(VIRTIO_BLK_T_OUT, 63) }, { data: new Uint8Array(512).fill(0xab) }, status], true],
      [0, [{ data: header(VIRTIO_BLK_T_GET_ID, 0) }, { length: 20, write: true }, status]],
    ]),
    ramSeed(blk(), 0, [[0, [{ data: header(4, 0) }, status]]]), // FLUSH
  ];
};
