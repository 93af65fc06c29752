// devices/virtio/blk.ts — virtio-blk (virtio 1.x, 5.2 "Block Device") over a raw image file.
//
// One request queue. A request is a chain: a 16-byte header (le32 type, le32 reserved, le64 sector) in readable
// buffers, then data (readable for writes, writable for reads), then one writable status byte at the very end. The
// layout of the chain is not assumed (the header may be split over descriptors, data may share a buffer with it):
// offsets are counted over the chain's readable and writable bytes.
//
// I/O is synchronous on the thread that serves the queue (the I/O thread, which holds the machine lock while a back
// end runs): pread/pwrite on the fd the machine opened (node:fs readSync/writeSync with a position, straight into
// guest memory through memory.slice), fdatasync for FLUSH, fallocate for DISCARD and WRITE_ZEROES. Reads, writes
// and flushes go through VirtioContext.outsideLock, which releases the machine lock around the file I/O so vCPUs
// do not wait for the disk; a request whose device was reset meanwhile is dropped (QueueAbandoned), not completed.
// The rest (reading the header, GET_ID, DISCARD, WRITE_ZEROES, completing the request) runs with the lock held, as
// everything does where the transport has no lock to release. The device has no mutable state of its own — each
// request is completed, dropped, or (when the thread must park mid-request: QueueYield) given back to the ring to be
// done again — so it has no vmstate record; the fd and the options are configuration that a new process re-opens.
//
// Guest errors never escape: a request that is malformed but has a status byte completes with IOERR (or UNSUPP for
// an unknown type or flag); a chain without any writable byte cannot be answered and fails the device
// (context.fail via serveQueue). Sectors are checked against the capacity with 64-bit arithmetic.
//
// Host errors are reported to the guest, never to the VMM (QEMU's werror=report,rerror=report): a read, write or
// flush whose pread/pwrite/fdatasync fails (EIO from a failing disk, ENOSPC from a full file system under a sparse
// image) completes with IOERR, the VM keeps running and the next request is served as usual. Once a flush has
// failed, every later flush fails too (see flush()). QEMU's default for writes, werror=enospc (pause the VM on
// ENOSPC until `cont`), is not offered: README "Disk errors".
import { fstatSync, readSync, writeSync } from 'node:fs';
import type { Descriptor } from '../../cpr/vmstate/vmstate.js';
import { fallocate } from '../../src/sys/libc.js';
import { ImageSync } from '../../src/sys/image-sync.js';
import { forEachSegment, serveQueue, QueueAbandoned, QueueYield, VirtqueueError } from './queue.js';
import {
  VIRTIO_ID_BLOCK,
  readConfigImage,
  type DescriptorChain,
  type VirtQueue,
  type VirtioBackend,
  type VirtioBackendRegistration,
  type VirtioContext,
} from './types.js';

// ---- feature bits (5.2.3) ------------------------------------------------------------------------------------
export const VIRTIO_BLK_F_SIZE_MAX = 1n; // size_max: largest single segment
export const VIRTIO_BLK_F_SEG_MAX = 2n; // seg_max: most segments in one request
export const VIRTIO_BLK_F_GEOMETRY = 4n; // legacy CHS geometry (not offered)
export const VIRTIO_BLK_F_RO = 5n; // the device is read-only
export const VIRTIO_BLK_F_BLK_SIZE = 6n; // blk_size: logical block size
export const VIRTIO_BLK_F_FLUSH = 9n; // FLUSH requests supported
export const VIRTIO_BLK_F_TOPOLOGY = 10n; // physical block exponent, alignment, min/optimal I/O size
export const VIRTIO_BLK_F_CONFIG_WCE = 11n; // writeback toggle in config (not offered)
export const VIRTIO_BLK_F_MQ = 12n; // several request queues (not offered)
export const VIRTIO_BLK_F_DISCARD = 13n; // DISCARD requests supported
export const VIRTIO_BLK_F_WRITE_ZEROES = 14n; // WRITE_ZEROES requests supported

// ---- request types, status (5.2.6) ---------------------------------------------------------------------------
export const VIRTIO_BLK_T_IN = 0; // read sectors into the data buffers
export const VIRTIO_BLK_T_OUT = 1; // write the data buffers to sectors
export const VIRTIO_BLK_T_FLUSH = 4; // make completed writes stable
export const VIRTIO_BLK_T_GET_ID = 8; // the device ID string (serial)
export const VIRTIO_BLK_T_DISCARD = 11; // ranges may be deallocated
export const VIRTIO_BLK_T_WRITE_ZEROES = 13; // ranges read back as zeroes
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1; // device or driver error
export const VIRTIO_BLK_S_UNSUPP = 2; // request type or flag not supported
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1; // segment flags: the range may be deallocated

export const SECTOR_SIZE = 512;
export const VIRTIO_BLK_ID_BYTES = 20; // GET_ID: NUL-padded, no terminator at 20 bytes
export const VIRTIO_BLK_REQ_HEADER_SIZE = 16; // struct virtio_blk_outhdr
export const VIRTIO_BLK_SEGMENT_SIZE = 16; // struct virtio_blk_discard_write_zeroes

// ---- configuration space (struct virtio_blk_config, 5.2.4) -------------------------------------------------------
export const BLK_CFG_CAPACITY = 0; // le64, 512-byte sectors
export const BLK_CFG_SIZE_MAX = 8; // le32
export const BLK_CFG_SEG_MAX = 12; // le32
export const BLK_CFG_GEOMETRY = 16; // le16 cylinders, u8 heads, u8 sectors
export const BLK_CFG_BLK_SIZE = 20; // le32
export const BLK_CFG_PHYSICAL_BLOCK_EXP = 24; // u8: physical block = blk_size << exp
export const BLK_CFG_ALIGNMENT_OFFSET = 25; // u8, logical blocks
export const BLK_CFG_MIN_IO_SIZE = 26; // le16, logical blocks
export const BLK_CFG_OPT_IO_SIZE = 28; // le32, logical blocks
export const BLK_CFG_WRITEBACK = 32; // u8 (CONFIG_WCE)
export const BLK_CFG_NUM_QUEUES = 34; // le16 (MQ)
export const BLK_CFG_MAX_DISCARD_SECTORS = 36; // le32
export const BLK_CFG_MAX_DISCARD_SEG = 40; // le32
export const BLK_CFG_DISCARD_SECTOR_ALIGNMENT = 44; // le32
export const BLK_CFG_MAX_WRITE_ZEROES_SECTORS = 48; // le32
export const BLK_CFG_MAX_WRITE_ZEROES_SEG = 52; // le32
export const BLK_CFG_WRITE_ZEROES_MAY_UNMAP = 56; // u8
export const VIRTIO_BLK_CONFIG_SIZE = 60; // through unused1[3]

// ---- fallocate(2) modes (<linux/falloc.h>) -----------------------------------------------------------------------
export const FALLOC_FL_KEEP_SIZE = 0x01; // do not change the file size
export const FALLOC_FL_PUNCH_HOLE = 0x02; // deallocate; the range reads as zeroes (needs KEEP_SIZE)
export const FALLOC_FL_ZERO_RANGE = 0x10; // zero the range, keeping it allocated

// ---- what this device offers ------------------------------------------------------------------------------------
export const BLK_QUEUE_SIZE = 256;
/** Segments per request: the queue size less the header and status descriptors (what Linux assumes without indirect). */
export const BLK_SEG_MAX = BLK_QUEUE_SIZE - 2;
export const BLK_SIZE_MAX = 1 << 20; // bytes per segment
export const BLK_DISCARD_ALIGNMENT_SECTORS = 8; // 4 KiB: the host page cache and most file systems' block
// Per discard segment: QEMU's limit (its block layer's largest request, INT_MAX bytes: 2^22 - 1 sectors), so Linux's
// queue/discard_max_bytes reads the same under both (fallocate is cheap at any size).
export const BLK_MAX_DISCARD_SECTORS = (1 << 22) - 1;
export const BLK_MAX_WRITE_ZEROES_SECTORS = 1 << 16; // 32 MiB: bounds the write-a-buffer-of-zeroes fallback
export const BLK_MAX_SEGMENTS = 16; // discard / write-zeroes segments per request
/**
 * Reads and writes go to the file in pieces of at most this many bytes, with a park check before each: a chain can
 * describe 4 GiB (1024 descriptors onto one 4 MiB buffer), and a pause must not wait for all of it. An interrupted
 * request is given back to the ring and done again from the start later (the driver has not seen it complete).
 */
export const HOST_IO_PIECE = 1 << 20;
const ZERO_CHUNK = 1 << 20;

export interface VirtioBlkOptions {
  /** The image, opened by the machine (O_RDWR, or O_RDONLY with readOnly). */
  readonly fd: number;
  readonly readOnly?: boolean;
  /** GET_ID string (ASCII, at most 20 bytes are used). */
  readonly serial?: string;
  /** Image size in bytes (default: the file's size now; required for block devices, whose st_size is 0). */
  readonly sizeBytes?: number;
  /** Offer DISCARD and WRITE_ZEROES (default true; never on a read-only device). */
  readonly discard?: boolean;
  /** The image's sync-failure flag (src/sys/image-sync.ts), shared with the machine's cpr-save (default: own). */
  readonly syncFailure?: SharedArrayBuffer;
}

/** A request the guest got wrong but that can still be answered through its status byte. */
class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class VirtioBlk implements VirtioBackend {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly queueMaxSizes = [BLK_QUEUE_SIZE] as const;
  readonly deviceFeatures: bigint;
  readonly configSize = VIRTIO_BLK_CONFIG_SIZE;
  /** Capacity in 512-byte sectors. */
  readonly capacity: bigint;
  private readonly fd: number;
  private readonly readOnly: boolean;
  private readonly id: Uint8Array;
  private readonly config: Uint8Array;
  private context: VirtioContext | null = null;
  /** Last request failure (for logs and tests); not guest-visible state. */
  lastError: string | null = null;
  /**
   * The image's fdatasync, shared with the machine's other syncs of the fd: once one failed, all fail (the host
   * page cache may differ from the disk for good). A condition of this process's fd, not device state.
   */
  private readonly sync: ImageSync;

  constructor(options: VirtioBlkOptions) {
    this.fd = options.fd;
    this.sync = new ImageSync(options.fd, options.syncFailure);
    this.readOnly = options.readOnly ?? false;
    const bytes = options.sizeBytes ?? fstatSync(options.fd).size;
    this.capacity = BigInt(Math.floor(bytes / SECTOR_SIZE));
    this.id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.id.set(new TextEncoder().encode(options.serial ?? '').subarray(0, VIRTIO_BLK_ID_BYTES));
    const discard = !this.readOnly && (options.discard ?? true);

    let features =
      (1n << VIRTIO_BLK_F_SIZE_MAX) |
      (1n << VIRTIO_BLK_F_SEG_MAX) |
      (1n << VIRTIO_BLK_F_BLK_SIZE) |
      (1n << VIRTIO_BLK_F_FLUSH) |
      (1n << VIRTIO_BLK_F_TOPOLOGY);
    if (this.readOnly) features |= 1n << VIRTIO_BLK_F_RO;
    if (discard) features |= (1n << VIRTIO_BLK_F_DISCARD) | (1n << VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = features;

    const c = new Uint8Array(VIRTIO_BLK_CONFIG_SIZE);
    const v = new DataView(c.buffer);
    v.setBigUint64(BLK_CFG_CAPACITY, this.capacity, true);
    v.setUint32(BLK_CFG_SIZE_MAX, BLK_SIZE_MAX, true);
    v.setUint32(BLK_CFG_SEG_MAX, BLK_SEG_MAX, true);
    v.setUint32(BLK_CFG_BLK_SIZE, SECTOR_SIZE, true);
    c[BLK_CFG_PHYSICAL_BLOCK_EXP] = 3; // 4 KiB physical blocks: guests align their I/O to the host page cache
    c[BLK_CFG_ALIGNMENT_OFFSET] = 0;
    v.setUint16(BLK_CFG_MIN_IO_SIZE, 8, true);
    v.setUint32(BLK_CFG_OPT_IO_SIZE, 0, true);
    if (discard) {
      v.setUint32(BLK_CFG_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS, true);
      v.setUint32(BLK_CFG_MAX_DISCARD_SEG, BLK_MAX_SEGMENTS, true);
      v.setUint32(BLK_CFG_DISCARD_SECTOR_ALIGNMENT, BLK_DISCARD_ALIGNMENT_SECTORS, true);
      v.setUint32(BLK_CFG_MAX_WRITE_ZEROES_SECTORS, BLK_MAX_WRITE_ZEROES_SECTORS, true);
      v.setUint32(BLK_CFG_MAX_WRITE_ZEROES_SEG, BLK_MAX_SEGMENTS, true);
      c[BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
    }
    this.config = c;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigImage(this.config, offset, size);
  }

  writeConfig(): void {
    // Nothing is writable without CONFIG_WCE (not offered): writes are ignored.
  }

  activate(context: VirtioContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
  }

  notify(index: number): void {
    const context = this.context;
    if (!context || index !== 0) return;
    serveQueue(context, 0, (chain, queue) => this.handle(context, chain, queue));
  }

  /** Serves one request; returns the used length (bytes written into the chain: data, then the status byte). */
  private handle(context: VirtioContext, chain: DescriptorChain, queue: VirtQueue): number {
    if (chain.writableBytes < 1) {
      throw new VirtqueueError(
        `virtio-blk request queue`,
        `request at descriptor ${chain.head} has no writable status byte`,
      );
    }
    const statusAt = chain.writableBytes - 1;
    let status = VIRTIO_BLK_S_OK;
    let dataWritten = 0;
    try {
      if (chain.readableBytes < VIRTIO_BLK_REQ_HEADER_SIZE) {
        throw new RequestError(VIRTIO_BLK_S_IOERR, `request header of ${chain.readableBytes} bytes (16 needed)`);
      }
      const header = new DataView(queue.readFrom(chain, 0, VIRTIO_BLK_REQ_HEADER_SIZE).buffer);
      const type = header.getUint32(0, true);
      const sector = header.getBigUint64(8, true);
      switch (type) {
        case VIRTIO_BLK_T_IN:
          dataWritten = this.hostIo(context, () => this.read(context, chain, sector, statusAt));
          break;
        case VIRTIO_BLK_T_OUT:
          this.hostIo(context, () => this.write(context, chain, sector));
          break;
        case VIRTIO_BLK_T_FLUSH:
          this.hostIo(context, () => this.flush());
          break;
        case VIRTIO_BLK_T_GET_ID:
          dataWritten = queue.writeTo(chain, 0, this.id.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, statusAt)));
          break;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
          this.discardOrZero(context, chain, queue, type);
          break;
        default:
          throw new RequestError(VIRTIO_BLK_S_UNSUPP, `request type ${type} is not supported`);
      }
    } catch (e) {
      if (e instanceof RequestError) {
        status = e.status;
      } else if (isHostIoError(e)) {
        status = VIRTIO_BLK_S_IOERR;
      } else {
        throw e;
      }
      this.lastError = (e as Error).message;
      dataWritten = 0;
    }
    queue.writeTo(chain, statusAt, Uint8Array.of(status));
    return dataWritten + 1;
  }

  /**
   * Runs a request's file I/O with the machine lock released (a flush can take milliseconds on a real disk, and
   * vCPUs must not wait for it); `io` touches only guest RAM and the image fd. If the driver reset the device
   * meanwhile, the request is dropped.
   */
  private hostIo<T>(context: VirtioContext, io: () => T): T {
    let result: T | undefined;
    if (
      !context.outsideLock(() => {
        result = io();
      })
    )
      throw new QueueAbandoned('virtio-blk request queue');
    return result as T;
  }

  /** The byte offset of [sector, sector + bytes/512) after checking it lies within the capacity. */
  private range(sector: bigint, bytes: number): number {
    if (bytes % SECTOR_SIZE !== 0)
      throw new RequestError(VIRTIO_BLK_S_IOERR, `transfer of ${bytes} bytes is not whole sectors`);
    const end = sector + BigInt(bytes / SECTOR_SIZE);
    if (end > this.capacity) {
      throw new RequestError(VIRTIO_BLK_S_IOERR, `sectors ${sector}..${end} are beyond the capacity ${this.capacity}`);
    }
    return Number(sector) * SECTOR_SIZE; // < capacity * 512, a file size: exact in a double
  }

  private read(context: VirtioContext, chain: DescriptorChain, sector: bigint, length: number): number {
    const position = this.range(sector, length);
    const memory = context.memory;
    forEachSegment(chain.writable, 0, length, (gpa, n, at) => {
      const into = memory.slice(gpa, n);
      let done = 0;
      while (done < n) {
        yieldIfParkRequested(context);
        const got = readSync(this.fd, into, done, Math.min(n - done, HOST_IO_PIECE), position + at + done);
        if (got === 0) {
          into.fill(0, done);
          break;
        } // past the end of a file shorter than sizeBytes
        done += got;
      }
    });
    return length;
  }

  private write(context: VirtioContext, chain: DescriptorChain, sector: bigint): void {
    if (this.readOnly) throw new RequestError(VIRTIO_BLK_S_IOERR, 'write to a read-only device');
    const length = chain.readableBytes - VIRTIO_BLK_REQ_HEADER_SIZE;
    const position = this.range(sector, length);
    const memory = context.memory;
    forEachSegment(chain.readable, VIRTIO_BLK_REQ_HEADER_SIZE, length, (gpa, n, at) => {
      const from = memory.slice(gpa, n);
      let done = 0;
      while (done < n) {
        yieldIfParkRequested(context);
        done += writeSync(this.fd, from, done, Math.min(n - done, HOST_IO_PIECE), position + at + done);
      }
    });
    this.stableUnlessFlushNegotiated(context);
  }

  /**
   * fdatasync, failing for good once it has failed (here or in a cpr-save's sync of the image): after a failed
   * writeback Linux marks the pages clean and reports the error to one fdatasync only, so the next one "succeeds"
   * over lost writes. The guest is never told that a write is stable when it may not be (src/sys/image-sync.ts).
   */
  private flush(): void {
    this.sync.sync();
  }

  /**
   * FLUSH was offered: if the driver did not take it, every completed write must already be stable (5.2.6.2,
   * case 1 of the write-stability rule).
   */
  private stableUnlessFlushNegotiated(context: VirtioContext): void {
    if ((context.features & (1n << VIRTIO_BLK_F_FLUSH)) === 0n) this.flush();
  }

  private discardOrZero(context: VirtioContext, chain: DescriptorChain, queue: VirtQueue, type: number): void {
    const discard = type === VIRTIO_BLK_T_DISCARD;
    const feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    if ((this.deviceFeatures & (1n << feature)) === 0n) {
      throw new RequestError(
        this.readOnly ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP,
        `${discard ? 'discard' : 'write zeroes'} is not offered`,
      );
    }
    const bytes = chain.readableBytes - VIRTIO_BLK_REQ_HEADER_SIZE;
    const count = bytes / VIRTIO_BLK_SEGMENT_SIZE;
    if (!Number.isInteger(count) || count < 1 || count > BLK_MAX_SEGMENTS) {
      throw new RequestError(
        VIRTIO_BLK_S_IOERR,
        `${bytes} bytes of segments (1..${BLK_MAX_SEGMENTS} of 16 bytes expected)`,
      );
    }
    const segments = new DataView(queue.readFrom(chain, VIRTIO_BLK_REQ_HEADER_SIZE, bytes).buffer);
    const maxSectors = discard ? BLK_MAX_DISCARD_SECTORS : BLK_MAX_WRITE_ZEROES_SECTORS;
    // Check every segment before touching the file.
    const ranges: { position: number; length: number; unmap: boolean }[] = [];
    for (let i = 0; i < count; i++) {
      const sector = segments.getBigUint64(16 * i, true);
      const sectors = segments.getUint32(16 * i + 8, true);
      const flags = segments.getUint32(16 * i + 12, true);
      if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (discard && flags !== 0)) {
        throw new RequestError(VIRTIO_BLK_S_UNSUPP, `segment flags 0x${flags.toString(16)} are not supported`);
      }
      if (sectors > maxSectors)
        throw new RequestError(VIRTIO_BLK_S_IOERR, `segment of ${sectors} sectors exceeds ${maxSectors}`);
      const length = sectors * SECTOR_SIZE;
      ranges.push({ position: this.range(sector, length), length, unmap: flags !== 0 });
    }
    for (const r of ranges) {
      if (r.length === 0) continue;
      if (discard) this.punchHole(r.position, r.length, true);
      else this.zero(r.position, r.length, r.unmap);
    }
    this.stableUnlessFlushNegotiated(context);
  }

  /** Deallocates; returns false if the file system cannot. A discard may do nothing at all. */
  private punchHole(position: number, length: number, advisory: boolean): boolean {
    try {
      fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, position, length);
      return true;
    } catch (e) {
      if (advisory && isHostIoError(e)) return false;
      throw e;
    }
  }

  /** Makes the range read as zeroes: ZERO_RANGE, else (if unmapping is allowed) a hole, else written zeroes. */
  private zero(position: number, length: number, unmap: boolean): void {
    try {
      fallocate(this.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, position, length);
      return;
    } catch (e) {
      if (!isHostIoError(e)) throw e;
    }
    if (unmap && this.punchHole(position, length, true)) return;
    const zeroes = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; ) {
      done += writeSync(this.fd, zeroes, 0, Math.min(zeroes.length, length - done), position + done);
    }
  }
}

/** An error from the host's I/O calls (node:fs errors carry `code`, SysError carries `errno`). */
function isHostIoError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && ('errno' in e || 'code' in e) && !(e instanceof RangeError);
}

/** The back end keeps no record of its own (every request completes before notify() returns). */
export const virtioBlkState = {
  name: 'virtio-blk',
  version: 1,
  minVersion: 1,
  fields: [],
} as const satisfies Descriptor;

/** The back-end part of a virtio-blk-pci spec: the image the machine opened, and what the guest is told about it. */
export interface VirtioBlkSpec {
  readonly type: 'blk';
  readonly fd: number;
  readonly readOnly: boolean;
  readonly serial: string | null;
  readonly sizeBytes: number;
  /** Shared with the machine's DiskImage: a failed sync of the image, seen by either, fails both from then on. */
  readonly syncFailure: SharedArrayBuffer;
}

/** -device virtio-blk-pci,drive=… (or -drive if=virtio): one request queue, as QEMU's default. */
export const virtioBlkBackend: VirtioBackendRegistration<VirtioBlkSpec, unknown> = {
  type: 'blk',
  pciName: 'virtio-blk-pci',
  state: virtioBlkState,
  queues: 1,
  create: (_state, _env, spec) => ({
    backend: new VirtioBlk({
      fd: spec.fd,
      readOnly: spec.readOnly,
      serial: spec.serial ?? undefined,
      sizeBytes: spec.sizeBytes,
      syncFailure: spec.syncFailure,
    }),
  }),
};

/** Between pieces of a request's host I/O: stop it (to be redone after the pause) once the thread must park. */
function yieldIfParkRequested(context: VirtioContext): void {
  if (context.parkRequested()) throw new QueueYield('virtio-blk request queue');
}
