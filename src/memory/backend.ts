// What every RAM backend is: an owner of one mapping (and usually one fd), plus the record that lets a new process
// map the same RAM again (checkpoint/restart). The kinds live in their own files: anon-backend.ts, memfd-backend.ts,
// file-backend.ts, devdax-backend.ts; backends.ts picks one from a spec or a record.
import { readFileSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import { Errno, SysError } from '../sys/errno.js';
import { SetupError } from '../util/setup-error.js';

export type BackendKind = 'anon' | 'memfd' | 'file' | 'devdax';

/**
 * Everything needed to map the same RAM again in a new process, as plain JSON. For a memfd (and an unlinked file)
 * only the fd reaches the same memory: the new process receives it by fd passing and hands it to
 * openBackendFromRecord. For anon RAM nothing does: `shared: false` backends must have their contents copied.
 */
export interface BackendRecord {
  kind: BackendKind;
  /** Bytes of guest RAM in this backend. */
  size: number;
  /** Byte offset of the RAM inside the file or device (0 for anon and memfd). */
  offset: number;
  /** MAP_SHARED (true) or MAP_PRIVATE (false). */
  share: boolean;
  /** Backed by hugetlbfs pages (memfd with MFD_HUGETLB, or a file on hugetlbfs). */
  hugetlb: boolean;
  /** The huge page size in bytes when `hugetlb`, else 0. */
  hugetlbSize: number;
  /** The file or device path; null for anon, memfd and a file unlinked after creation. */
  path: string | null;
  /** The fd number in the process that wrote the record (-1 if none): informative, the new process has its own. */
  fd: number;
}

/** One block of guest RAM mapped into this process. */
export interface RamBackend {
  readonly kind: BackendKind;
  readonly size: number;
  /** The fd behind the mapping, or -1 (anon). Owned by the backend: close() closes it. */
  readonly fd: number;
  /** Where the RAM is mapped in this process. Meaningless after close(). */
  readonly hostAddress: bigint;
  /** The RAM outlives this process and a new process reaches it by path (file with share=on, devdax). */
  readonly shared: boolean;
  /** Passing `fd` to another process and mapping it there reaches the same RAM (MAP_SHARED with an fd). */
  readonly transferable: boolean;
  readonly closed: boolean;
  record(): BackendRecord;
  /**
   * Unmaps the RAM and closes the fd. Every view of this RAM (GuestRam.release() in every thread) must be dropped
   * first: touching a view of unmapped memory kills the process. Idempotent.
   */
  close(): void;
}

/** A backend could not be created or reopened: one line naming the backend, the path or size, and the cause. */
export class RamBackendError extends SetupError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RamBackendError';
  }
}

export const PAGE_SIZE = 4096;
/** Mappings are aligned to 2 MiB so that the host can back them with transparent or hugetlb huge pages. */
export const HUGE_ALIGN = 2 * 1024 * 1024;
/** Fault in every page, writable, without touching it from user space (Linux 5.14+). */
export const MADV_POPULATE_WRITE = 23;
export const HUGETLBFS_MAGIC = 0x958458f6;

export function errorText(e: unknown): string {
  return e instanceof SysError ? `${e.call} failed: ${e.code}` : (e as Error).message;
}

/**
 * mmap of `size` bytes at an address aligned to `align` (a power of two ≥ 4 KiB): reserve size+align bytes of
 * address space, map over the aligned part with MAP_FIXED, and give back the rest. QEMU aligns guest RAM the same
 * way, so that huge pages (and KVM's large-page mappings) can be used.
 */
export function mapAligned(size: number, flags: number, fd: number, offset: number, align = HUGE_ALIGN): bigint {
  const reserveLength = size + align;
  const base = libc.mmap(
    null,
    reserveLength,
    libc.PROT_NONE,
    libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE,
    -1,
    0,
  );
  const alignBig = BigInt(align);
  const aligned = (base + alignBig - 1n) & ~(alignBig - 1n);
  try {
    libc.mmap(aligned, size, libc.PROT_READ | libc.PROT_WRITE, flags | libc.MAP_FIXED, fd, offset);
  } catch (e) {
    libc.munmap(base, reserveLength);
    throw e;
  }
  const head = Number(aligned - base);
  if (head > 0) libc.munmap(base, head);
  const tail = reserveLength - head - size;
  if (tail > 0) libc.munmap(aligned + BigInt(size), tail);
  return aligned;
}

/**
 * Allocates every page of a mapping now (QEMU's prealloc), so that a host out of memory fails here with an error
 * instead of later, inside the guest, with SIGBUS.
 */
export function preallocate(address: bigint, size: number, what: string): void {
  try {
    libc.madvise(address, size, MADV_POPULATE_WRITE);
  } catch (e) {
    if (e instanceof SysError && e.errno === Errno.EINVAL) {
      touchEveryPage(address, size);
      return;
    }
    throw new RamBackendError(
      `${what}: preallocating ${size} bytes failed (${errorText(e)}): not enough host memory or huge pages`,
      { cause: e },
    );
  }
}

/**
 * Before Linux 5.14 there is no MADV_POPULATE_WRITE: write each page's first byte back to itself, as QEMU did. Runs
 * before the guest does, so the rewrite cannot race a guest store. (A file system that runs out of space here
 * raises SIGBUS, which is why the madvise is tried first.)
 */
function touchEveryPage(address: bigint, size: number): void {
  const window = 64 * 1024 * 1024;
  for (let offset = 0; offset < size; offset += window) {
    const bytes = new Uint8Array(libc.view(address + BigInt(offset), Math.min(window, size - offset)));
    // biome-ignore lint/correctness/noSelfAssign: the store is the point, it faults the page in for writing
    for (let i = 0; i < bytes.length; i += PAGE_SIZE) bytes[i] = bytes[i];
  }
}

/** The host's default huge page size (Hugepagesize in /proc/meminfo). */
export function defaultHugePageSize(): number {
  const m = /^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : HUGE_ALIGN;
}

/** How many huge pages of `pageSize` bytes the host has free (0 if that size is not supported). */
export function freeHugePages(pageSize: number): number {
  try {
    return Number(
      readFileSync(`/sys/kernel/mm/hugepages/hugepages-${pageSize / 1024}kB/free_hugepages`, 'utf8').trim(),
    );
  } catch {
    return 0;
  }
}

/** A byte count for messages: "512 MiB" when a binary unit divides it, else "N bytes". */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ];
  for (const [name, unit] of units) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit} ${name}`;
  }
  return `${bytes} bytes`;
}

export function checkSize(what: string, size: number, unit = PAGE_SIZE): void {
  if (!Number.isSafeInteger(size) || size <= 0)
    throw new RamBackendError(`${what}: size ${size} is not a positive byte count`);
  if (size % unit !== 0)
    throw new RamBackendError(
      `${what}: size 0x${size.toString(16)} is not a multiple of the page size 0x${unit.toString(16)}`,
    );
}

export interface MappedFields {
  kind: BackendKind;
  size: number;
  fd: number;
  hostAddress: bigint;
  shared: boolean;
  transferable: boolean;
  record: Omit<BackendRecord, 'kind' | 'size' | 'fd'>;
}

/** The one implementation behind every kind: a mapping, its fd and its record. */
export class MappedRam implements RamBackend {
  readonly kind: BackendKind;
  readonly size: number;
  readonly fd: number;
  readonly hostAddress: bigint;
  readonly shared: boolean;
  readonly transferable: boolean;
  private readonly details: MappedFields['record'];
  private isClosed = false;

  constructor(fields: MappedFields) {
    this.kind = fields.kind;
    this.size = fields.size;
    this.fd = fields.fd;
    this.hostAddress = fields.hostAddress;
    this.shared = fields.shared;
    this.transferable = fields.transferable;
    this.details = fields.record;
    // Keep guest RAM out of forked children (QEMU does the same): a fork must not share or copy it. Advisory only.
    try {
      libc.madvise(this.hostAddress, this.size, libc.MADV_DONTFORK);
    } catch {
      // a kernel that refuses the advice still maps the RAM correctly
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  record(): BackendRecord {
    return { kind: this.kind, size: this.size, fd: this.fd, ...this.details };
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    libc.munmap(this.hostAddress, this.size);
    if (this.fd >= 0) libc.close(this.fd);
  }
}

/** Closes `fd` while cleaning up after a failure, keeping the original error. */
export function closeQuietly(fd: number): void {
  try {
    libc.close(fd);
  } catch {
    // the original error is the one worth reporting
  }
}
