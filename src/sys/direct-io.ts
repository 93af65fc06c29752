// O_DIRECT on Linux: the alignment a file's direct I/O needs, buffers that meet it, and opening a second,
// direct descriptor onto a file already open. Direct I/O bypasses the page cache, so writing a large file this
// way does not evict the host's cache; it needs the buffer address, the file offset and the length aligned.
import { constants, fstatSync, openSync, closeSync } from 'node:fs';
import { STATX_BYTES, addressOf, statxFd } from './libc.js';

/** statx mask bit for stx_dio_mem_align / stx_dio_offset_align (Linux 6.1+). */
const STATX_DIOALIGN = 0x2000;
const STX_MASK = 0;
const STX_DIO_MEM_ALIGN = 152;
const STX_DIO_OFFSET_ALIGN = 156;
/** What a file system answers to direct I/O it does not do: EINVAL (open(2)), EOPNOTSUPP (some FUSE and 9p). */
export const DIRECT_REFUSED: ReadonlySet<string> = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP']);
/** What to assume when the kernel does not say: a page, which every block size this side of 64 KiB pages divides. */
export const DEFAULT_DIRECT_ALIGNMENT = 4096;

export interface DirectIoAlignment {
  /** Buffer addresses must be multiples of this. */
  readonly memory: number;
  /** File offsets and lengths must be multiples of this. */
  readonly offset: number;
  /** Whether the kernel reported it (statx STATX_DIOALIGN) or it is the page-size default. */
  readonly source: 'statx' | 'default';
}

/**
 * The direct-I/O alignment of an open file, or a reason it has none: the kernel reports 0 for a file whose file
 * system does not do direct I/O. Kernels before 6.1 do not know STATX_DIOALIGN: then a page is assumed.
 */
export function directIoAlignment(fd: number): DirectIoAlignment | string {
  const buffer = new Uint8Array(STATX_BYTES);
  const assumed: DirectIoAlignment = {
    memory: DEFAULT_DIRECT_ALIGNMENT,
    offset: DEFAULT_DIRECT_ALIGNMENT,
    source: 'default',
  };
  try {
    statxFd(fd, STATX_DIOALIGN, buffer);
  } catch {
    return assumed; // no statx at all (before Linux 4.11, or a seccomp filter refusing it): as an old kernel
  }
  const view = new DataView(buffer.buffer);
  if ((view.getUint32(STX_MASK, true) & STATX_DIOALIGN) === 0) return assumed;
  const memory = view.getUint32(STX_DIO_MEM_ALIGN, true);
  const offset = view.getUint32(STX_DIO_OFFSET_ALIGN, true);
  if (memory === 0 || offset === 0) return 'the file system reports no direct I/O support (statx dio alignment 0)';
  return { memory, offset, source: 'statx' };
}

/**
 * A second descriptor onto the file `fd` has open at `path`, with O_DIRECT (write-only); a reason instead when
 * the file system refuses O_DIRECT (EINVAL on open). The new descriptor must be the same file: a path renamed or
 * replaced in between is refused.
 */
export function openDirect(path: string, fd: number): number | string {
  let direct: number;
  try {
    direct = openSync(path, constants.O_WRONLY | constants.O_DIRECT | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (DIRECT_REFUSED.has(code)) return `the file system refuses O_DIRECT (${code} on open)`;
    throw e;
  }
  const a = fstatSync(fd, { bigint: true });
  const b = fstatSync(direct, { bigint: true });
  if (a.dev !== b.dev || a.ino !== b.ino) {
    closeSync(direct);
    throw new Error(`${path} was replaced while it was being written`);
  }
  return direct;
}

/** Whether `buffer` starts at a multiple of `alignment` in memory. */
export function isAligned(buffer: Uint8Array, alignment: number): boolean {
  return buffer.byteLength === 0 || addressOf(buffer) % BigInt(alignment) === 0n;
}

/** `length` zeroed bytes starting at a multiple of `alignment` in memory (an over-allocated array, cut to fit). */
export function alignedBuffer(length: number, alignment: number): Uint8Array {
  const backing = new Uint8Array(length + alignment);
  const start = (alignment - Number(addressOf(backing) % BigInt(alignment))) % alignment;
  return backing.subarray(start, start + length);
}
