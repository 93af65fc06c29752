// Device-DAX RAM (/dev/daxX.Y: persistent memory or a reserved physical range exposed as a character device, used
// through QEMU's memory-backend-file,mem-path=/dev/dax0.0). The device is the memory: it outlives the process, so a
// new process maps the same RAM by path. Device DAX only supports MAP_SHARED and mappings aligned to the device's
// alignment (2 MiB at least); MAP_SYNC asks the kernel to refuse the mapping unless CPU stores reach persistence
// without an fsync, and MAP_SHARED_VALIDATE makes a kernel that does not know MAP_SYNC say so instead of ignoring it.
import { fstatSync, readFileSync, statSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import { Errno, SysError } from '../sys/errno.js';
import { heldElsewhereText, lockWholeFile } from '../sys/file-lock.js';
import {
  MappedRam,
  RamBackendError,
  closeQuietly,
  errorText,
  formatBytes,
  mapAligned,
  preallocate,
  type RamBackend,
} from './backend.js';

/** The smallest device-DAX alignment: mappings, sizes and offsets are multiples of it. */
export const DEVDAX_ALIGN = 2 * 1024 * 1024;

export interface DevdaxOptions {
  path: string;
  size: number;
  /** Where the RAM starts on the device: a multiple of the device's alignment. */
  offset?: number;
  prealloc?: boolean;
  /** Use this open fd for the device (fd passing); the backend owns it once created. */
  fd?: number;
}

/** Checks what can be checked without the device: alignment of size and offset. Throws RamBackendError. */
export function checkDevdaxAlignment(path: string, size: number, offset: number, align = DEVDAX_ALIGN): void {
  const what = `devdax ${path}`;
  if (!Number.isSafeInteger(size) || size <= 0 || size % align !== 0) {
    throw new RamBackendError(
      `${what}: size ${size} (0x${size.toString(16)}) is not a positive multiple of the device alignment ${formatBytes(align)}`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % align !== 0) {
    throw new RamBackendError(
      `${what}: offset ${offset} (0x${offset.toString(16)}) is not a multiple of the device alignment ${formatBytes(align)}`,
    );
  }
}

export function createDevdaxBackend(options: DevdaxOptions): RamBackend {
  const { path, size, offset = 0, prealloc = false } = options;
  const what = `devdax ${path}`;
  checkDevdaxAlignment(path, size, offset);

  const info = deviceInfo(path, what);
  // A device may demand more than 2 MiB (1 GiB alignment is common for large namespaces).
  checkDevdaxAlignment(path, size, offset, info.align);
  if (info.size !== null && offset + size > info.size) {
    throw new RamBackendError(
      `${what}: offset ${offset} + size ${formatBytes(size)} runs past the end of the ${formatBytes(info.size)} device`,
    );
  }

  let fd: number;
  try {
    fd = options.fd ?? libc.open(path, libc.O_RDWR | libc.O_CLOEXEC | libc.O_NOFOLLOW);
  } catch (e) {
    throw new RamBackendError(`${what}: ${errorText(e)}`, { cause: e });
  }
  try {
    // The opened node is the device that was checked by path, and no other VM maps it (an fd handed over by a
    // cpr-transfer or kept by a cpr-exec carries the old process's lock, so taking it again succeeds).
    if (!fstatSync(fd).isCharacterDevice())
      throw new RamBackendError(`${what}: not a character device (device DAX is /dev/daxX.Y)`);
    if (lockWholeFile(fd, 'exclusive') === 'held-elsewhere')
      throw new RamBackendError(`${what}: ${heldElsewhereText('exclusive')}`);
    const align = Math.max(info.align, DEVDAX_ALIGN);
    let address: bigint;
    try {
      address = mapAligned(size, libc.MAP_SHARED_VALIDATE | libc.MAP_SYNC, fd, offset, align);
    } catch (e) {
      // Device DAX gained MAP_SYNC later than DAX itself: without it, stores are still durable on device DAX.
      if (!(e instanceof SysError) || (e.errno !== Errno.EOPNOTSUPP && e.errno !== Errno.EINVAL)) throw e;
      address = mapAligned(size, libc.MAP_SHARED, fd, offset, align);
    }
    try {
      if (prealloc) preallocate(address, size, what);
    } catch (e) {
      libc.munmap(address, size);
      throw e;
    }
    return new MappedRam({
      kind: 'devdax',
      size,
      fd,
      hostAddress: address,
      shared: true,
      transferable: true,
      record: { offset, share: true, hugetlb: false, hugetlbSize: 0, path },
    });
  } catch (e) {
    if (options.fd === undefined) closeQuietly(fd);
    if (e instanceof RamBackendError) throw e;
    throw new RamBackendError(`${what}: mmap of ${formatBytes(size)} at offset ${offset} failed (${errorText(e)})`, {
      cause: e,
    });
  }
}

/** The device's size and alignment from sysfs (/sys/dev/char/MAJOR:MINOR/), when the kernel says. */
function deviceInfo(path: string, what: string): { size: number | null; align: number } {
  let rdev: bigint;
  try {
    const st = statSync(path, { bigint: true });
    if (!st.isCharacterDevice())
      throw new RamBackendError(`${what}: not a character device (device DAX is /dev/daxX.Y)`);
    rdev = st.rdev;
  } catch (e) {
    if (e instanceof RamBackendError) throw e;
    throw new RamBackendError(`${what}: ${(e as Error).message}`, { cause: e });
  }
  // glibc's gnu_dev_major/minor encoding of dev_t.
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const sys = `/sys/dev/char/${major}:${minor}`;
  const readNumber = (file: string): number | null => {
    try {
      return Number(readFileSync(`${sys}/${file}`, 'utf8').trim());
    } catch {
      return null;
    }
  };
  return { size: readNumber('size'), align: readNumber('align') ?? DEVDAX_ALIGN };
}
