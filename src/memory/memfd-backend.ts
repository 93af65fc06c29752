// memfd RAM (QEMU's memory-backend-memfd): anonymous memory with an fd, so another process that receives the fd
// (cpr-transfer, vhost-user) maps the very same pages. share=on (MAP_SHARED) by default, as in QEMU: a private
// mapping of a memfd keeps the guest's writes out of the fd and defeats the point.
import { fstatSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import {
  MappedRam,
  RamBackendError,
  checkSize,
  closeQuietly,
  defaultHugePageSize,
  errorText,
  freeHugePages,
  formatBytes,
  mapAligned,
  preallocate,
  type BackendRecord,
  type RamBackend,
} from './backend.js';
import { isPowerOfTwo } from '../util/power-of-two.js';

/** fcntl(F_ADD_SEALS): forbid later changes to a memfd. */
export const F_ADD_SEALS = 1033;
/** No further seals may be added. */
export const F_SEAL_SEAL = 0x1;
/** The file may not shrink: a shrink under a live mapping would SIGBUS the guest. */
export const F_SEAL_SHRINK = 0x2;
/** The file may not grow. */
export const F_SEAL_GROW = 0x4;
/** memfd_create flags bits 26..31 carry log2 of the huge page size (MFD_HUGE_SHIFT). */
export const MFD_HUGE_SHIFT = 26;

export interface MemfdOptions {
  size: number;
  /** MAP_SHARED (default, as in QEMU) or MAP_PRIVATE. */
  share?: boolean;
  /** Back the memfd with hugetlbfs pages (MFD_HUGETLB). Needs huge pages reserved on the host. */
  hugetlb?: boolean;
  /** The huge page size in bytes (a power of two the host supports); default the host's default size. */
  hugetlbSize?: number;
  /** Seal the size (grow, shrink) and the seals, as QEMU does by default. */
  seal?: boolean;
  prealloc?: boolean;
  /** The name shown in /proc/PID/fd and /proc/PID/maps. */
  name?: string;
}

export function createMemfdBackend(options: MemfdOptions): RamBackend {
  const { size, share = true, hugetlb = false, seal = true, prealloc = false, name = 'tsvmm-ram' } = options;
  const pageSize = hugetlb ? (options.hugetlbSize ?? defaultHugePageSize()) : 0;
  const what = `memfd RAM of ${formatBytes(size)}${hugetlb ? ` on ${formatBytes(pageSize)} huge pages` : ''}`;
  if (options.hugetlbSize !== undefined && !hugetlb) throw new RamBackendError(`${what}: hugetlbsize needs hugetlb=on`);
  if (hugetlb && !isPowerOfTwo(pageSize))
    throw new RamBackendError(`${what}: huge page size ${pageSize} is not a power of two`);
  checkSize(what, size, hugetlb ? pageSize : undefined);

  let flags = libc.MFD_CLOEXEC;
  if (seal) flags |= libc.MFD_ALLOW_SEALING;
  if (hugetlb)
    flags |= libc.MFD_HUGETLB | (options.hugetlbSize === undefined ? 0 : Math.log2(pageSize) << MFD_HUGE_SHIFT);
  let fd: number;
  try {
    fd = libc.memfdCreate(name, flags >>> 0);
  } catch (e) {
    throw new RamBackendError(
      `${what}: memfd_create failed (${errorText(e)})${hugetlb ? ': the host does not support that huge page size' : ''}`,
      { cause: e },
    );
  }
  try {
    libc.ftruncate(fd, size);
    if (seal) libc.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    return mapMemfd(fd, { size, share, hugetlb, hugetlbSize: pageSize, prealloc, what });
  } catch (e) {
    closeQuietly(fd);
    if (e instanceof RamBackendError) throw e;
    throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
  }
}

/**
 * Maps a memfd received from another process (cpr-transfer) as the record describes. The backend takes ownership
 * of `fd` once this returns; on failure the fd stays the caller's. Refuses an fd whose size is not the record's.
 */
export function openMemfdFromRecord(record: BackendRecord, fd: number): RamBackend {
  const what = `memfd RAM of ${formatBytes(record.size)} from fd ${fd}`;
  let actual: number;
  try {
    actual = fstatSync(fd).size;
  } catch (e) {
    throw new RamBackendError(`${what}: the fd is not open (${(e as Error).message})`, { cause: e });
  }
  if (actual !== record.size) {
    throw new RamBackendError(
      `${what}: the fd holds ${formatBytes(actual)} (${actual} bytes) but the record says ${formatBytes(record.size)} (${record.size} bytes)`,
    );
  }
  return mapMemfd(fd, {
    size: record.size,
    share: record.share,
    hugetlb: record.hugetlb,
    hugetlbSize: record.hugetlbSize,
    prealloc: false,
    what,
  });
}

interface MapOptions {
  size: number;
  share: boolean;
  hugetlb: boolean;
  hugetlbSize: number;
  prealloc: boolean;
  what: string;
}

function mapMemfd(fd: number, o: MapOptions): RamBackend {
  const align = o.hugetlb ? Math.max(o.hugetlbSize, 2 * 1024 * 1024) : undefined;
  let address: bigint;
  try {
    address = mapAligned(o.size, o.share ? libc.MAP_SHARED : libc.MAP_PRIVATE, fd, 0, align);
  } catch (e) {
    if (o.hugetlb) {
      const free = freeHugePages(o.hugetlbSize);
      throw new RamBackendError(
        `${o.what}: mmap failed (${errorText(e)}): the host has ${free} free ${formatBytes(o.hugetlbSize)} huge pages and ` +
          `${o.size / o.hugetlbSize} are needed (reserve them in /sys/kernel/mm/hugepages/hugepages-${o.hugetlbSize / 1024}kB/nr_hugepages)`,
        { cause: e },
      );
    }
    throw new RamBackendError(`${o.what}: mmap failed (${errorText(e)})`, { cause: e });
  }
  try {
    if (o.prealloc) preallocate(address, o.size, o.what);
  } catch (e) {
    libc.munmap(address, o.size);
    throw e;
  }
  return new MappedRam({
    kind: 'memfd',
    size: o.size,
    fd,
    hostAddress: address,
    shared: false,
    transferable: o.share,
    record: { offset: 0, share: o.share, hugetlb: o.hugetlb, hugetlbSize: o.hugetlb ? o.hugetlbSize : 0, path: null },
  });
}
