// File-backed RAM (QEMU's memory-backend-file and -mem-path): a file such as /dev/shm/vm0 or one on hugetlbfs.
// With share=on the guest's RAM *is* the file, so it outlives the process and a new process (cpr-reboot) maps it
// again by path with the content intact. A missing file is created and sized with ftruncate (sparse: untouched RAM
// costs nothing); an existing one is reopened and must have exactly the expected size. A directory gets a fresh
// temp file that is unlinked at once, as QEMU's -mem-path does: only its fd reaches that RAM afterwards.
// An existing file is trusted only when it is a regular file of this user that nobody else can write, reached without
// a symlink; the file is locked (src/sys/file-lock.ts) so that two VMs never map the same RAM.
import { fstatSync, lstatSync, statSync, statfsSync, unlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as libc from '../sys/libc.js';
import { Errno, SysError } from '../sys/errno.js';
import { heldElsewhereText, lockWholeFile } from '../sys/file-lock.js';
import {
  HUGETLBFS_MAGIC,
  MappedRam,
  PAGE_SIZE,
  RamBackendError,
  checkSize,
  closeQuietly,
  errorText,
  formatBytes,
  mapAligned,
  preallocate,
  type RamBackend,
} from './backend.js';

export interface FileOptions {
  /** A file (created if missing) or a directory (an unlinked temp file is made there); null only with `fd`. */
  path: string | null;
  size: number;
  /** MAP_SHARED: writes reach the file. Default false (MAP_PRIVATE), as in QEMU. */
  share?: boolean;
  /** Where the RAM starts in the file; a multiple of the page size. The file holds offset + size bytes. */
  offset?: number;
  prealloc?: boolean;
  /** Never create the file (reopening RAM from a checkpoint record: a missing file means the RAM is gone). */
  mustExist?: boolean;
  /**
   * Use this already-open fd instead of opening `path` (fd passing). The backend owns it once created; on failure
   * it stays the caller's.
   */
  fd?: number;
}

const OPEN_FLAGS = libc.O_RDWR | libc.O_CLOEXEC;
/** What tsvmm creates is its own: never through a planted symlink, never an existing file, readable by its user only. */
const CREATE_FLAGS = OPEN_FLAGS | libc.O_CREAT | libc.O_EXCL | libc.O_NOFOLLOW;

interface Opened {
  fd: number;
  path: string | null;
  created: boolean;
  createdPath: string | null;
  adopted: boolean;
}

export function createFileBackend(options: FileOptions): RamBackend {
  const { size, share = false, offset = 0, prealloc = false, mustExist = false } = options;
  const what = `memory-backend-file ${options.path ?? `fd ${options.fd}`}`;
  checkSize(what, size);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) {
    throw new RamBackendError(`${what}: offset ${offset} is not a non-negative multiple of the page size ${PAGE_SIZE}`);
  }

  let opened: Opened;
  if (options.fd !== undefined) opened = adopt(options.fd, options.path, what);
  else if (options.path !== null) opened = openOrCreate(options.path, what, mustExist);
  else throw new RamBackendError(`${what}: neither a path nor an fd was given`);
  const fail = (e: unknown): never => {
    if (!opened.adopted) closeQuietly(opened.fd);
    if (opened.createdPath !== null) unlinkQuietly(opened.createdPath);
    if (e instanceof RamBackendError) throw e;
    throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
  };

  try {
    // Before the file is grown or mapped: one RAM file, one VM. Exclusive when the guest writes the file (share=on),
    // shared when it only reads it under a private mapping (writes by another VM would show through there too).
    // An fd handed over by cpr-transfer or kept by cpr-exec carries the old process's lock: taking it again succeeds.
    // (An unlinked temp file has no path another VM could open: nothing to lock.)
    const mode = share ? 'exclusive' : 'shared';
    if (opened.path !== null && lockWholeFile(opened.fd, mode) === 'held-elsewhere')
      throw new RamBackendError(`${what}: ${heldElsewhereText(mode)}`);
    // On hugetlbfs the file system's block size is the huge page size, and everything must be a multiple of it.
    const hugePage = hugetlbfsPageSize(`/proc/self/fd/${opened.fd}`);
    if (hugePage !== 0) {
      if (size % hugePage !== 0 || offset % hugePage !== 0) {
        throw new RamBackendError(
          `${what}: on hugetlbfs, size ${formatBytes(size)} and offset ${offset} must be multiples of the huge page size ${formatBytes(hugePage)}`,
        );
      }
    }
    const expected = offset + size;
    const actual = fstatSync(opened.fd).size;
    if (opened.created || actual === 0) {
      // A new (or empty) file is grown to fit, as QEMU does; the blocks are allocated on first touch.
      libc.ftruncate(opened.fd, expected);
    } else if (actual !== expected) {
      throw new RamBackendError(
        `${what}: the file holds ${formatBytes(actual)} (${actual} bytes) but ${offset ? `offset ${offset} + ` : ''}size=${formatBytes(size)} needs ${expected} bytes`,
      );
    }

    let address: bigint;
    try {
      address = mapAligned(
        size,
        share ? libc.MAP_SHARED : libc.MAP_PRIVATE,
        opened.fd,
        offset,
        Math.max(hugePage, 2 * 1024 * 1024),
      );
    } catch (e) {
      throw new RamBackendError(`${what}: mmap of ${formatBytes(size)} failed (${errorText(e)})`, { cause: e });
    }
    try {
      if (prealloc) preallocate(address, size, what);
    } catch (e) {
      libc.munmap(address, size);
      throw e;
    }
    return new MappedRam({
      kind: 'file',
      size,
      fd: opened.fd,
      hostAddress: address,
      shared: share && opened.path !== null,
      transferable: share,
      record: { offset, share, hugetlb: hugePage !== 0, hugetlbSize: hugePage, path: opened.path },
    });
  } catch (e) {
    return fail(e);
  }
}

function openOrCreate(path: string, what: string, mustExist: boolean): Opened {
  let isDirectory = false;
  try {
    // Followed on purpose: a directory reached through a symlink is still fine, the temp file in it is ours alone.
    isDirectory = statSync(path).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new RamBackendError(`${what}: ${(e as Error).message}`, { cause: e });
    if (mustExist && lstatQuietly(path) === null)
      throw new RamBackendError(`${what}: the file does not exist (the RAM it held is gone)`);
  }

  if (isDirectory) {
    if (mustExist)
      throw new RamBackendError(`${what}: is a directory; an unlinked temp file can only be reopened through its fd`);
    const temp = join(path, `tsvmm_back_mem.${process.pid}.${randomBytes(6).toString('hex')}`);
    const fd = wrapOpen(what, () => libc.open(temp, CREATE_FLAGS, 0o600));
    unlinkQuietly(temp); // nobody else should find it; the fd keeps it alive
    return { fd, path: null, created: true, createdPath: null, adopted: false };
  }

  for (;;) {
    try {
      // O_NOFOLLOW: a symlink planted at the path is refused (ELOOP), not followed to someone else's file;
      // O_NONBLOCK: a FIFO planted there cannot block the open (it is refused below as not a regular file).
      const fd = libc.open(path, OPEN_FLAGS | libc.O_NOFOLLOW | libc.O_NONBLOCK);
      refuseUntrusted(fd, what);
      return { fd, path, created: false, createdPath: null, adopted: false };
    } catch (e) {
      if (e instanceof RamBackendError) throw e;
      if (e instanceof SysError && e.errno === Errno.ELOOP)
        throw new RamBackendError(`${what}: refused: the path is a symbolic link (give the file itself)`, { cause: e });
      if (!(e instanceof SysError) || e.errno !== Errno.ENOENT || mustExist)
        throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
    }
    try {
      return { fd: libc.open(path, CREATE_FLAGS, 0o600), path, created: true, createdPath: path, adopted: false };
    } catch (e) {
      // Lost a race with another creator: go round and open (and check) theirs.
      if (!(e instanceof SysError) || e.errno !== Errno.EEXIST)
        throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
    }
  }
}

/**
 * An existing file becomes guest RAM only if nobody else can read it through a door we did not open: it must be a
 * regular file owned by this user and writable by nobody else (QEMU trusts the file; a 0666 /dev/shm/vm0 planted
 * by another local user would let that user read and write the guest's memory). Checked on the opened fd, so the
 * file checked is the file mapped. A refused file is closed untouched. Throws RamBackendError.
 */
function refuseUntrusted(fd: number, what: string): void {
  const st = fstatSync(fd);
  const mode = `0${(st.mode & 0o7777).toString(8).padStart(3, '0')}`;
  const uid = process.geteuid?.() ?? st.uid;
  let why: string | null = null;
  if (!st.isFile()) why = `not a regular file or a directory (mode ${(st.mode >>> 0).toString(8)})`;
  else if (st.uid !== uid || (st.mode & 0o022) !== 0)
    why = `refused: the file is owned by uid ${st.uid} with mode ${mode}; guest RAM must be a file owned by this user (uid ${uid}) that no one else can write (chmod 600)`;
  if (why === null) return;
  closeQuietly(fd);
  throw new RamBackendError(`${what}: ${why}`);
}

function adopt(fd: number, path: string | null, what: string): Opened {
  try {
    if (!fstatSync(fd).isFile()) throw new RamBackendError(`${what}: fd ${fd} is not a regular file`);
  } catch (e) {
    if (e instanceof RamBackendError) throw e;
    throw new RamBackendError(`${what}: fd ${fd} is not open (${(e as Error).message})`, { cause: e });
  }
  return { fd, path, created: false, createdPath: null, adopted: true };
}

function wrapOpen(what: string, open: () => number): number {
  try {
    return open();
  } catch (e) {
    throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
  }
}

/** The huge page size if `path` is on hugetlbfs, else 0 (/proc/self/fd/N reaches even an unlinked file). */
function hugetlbfsPageSize(path: string): number {
  try {
    const fs = statfsSync(path);
    return fs.type === HUGETLBFS_MAGIC ? fs.bsize : 0;
  } catch {
    return 0;
  }
}

/** The path's own status (a symlink's, not its target's), or null when nothing is there. */
function lstatQuietly(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
