// Anonymous RAM (QEMU's memory-backend-ram): no fd, so it dies with the process. MAP_PRIVATE by default;
// share=on gives MAP_SHARED|MAP_ANONYMOUS (shared with forked children only, which MADV_DONTFORK rules out anyway).
import * as libc from '../sys/libc.js';
import {
  MappedRam,
  RamBackendError,
  checkSize,
  errorText,
  mapAligned,
  preallocate,
  type RamBackend,
} from './backend.js';

export interface AnonOptions {
  size: number;
  /** MAP_SHARED instead of MAP_PRIVATE. Default false, as in QEMU. */
  share?: boolean;
  /** madvise(MADV_HUGEPAGE): let the kernel back the RAM with transparent huge pages. Default true, as in QEMU. */
  transparentHugePages?: boolean;
  /** Fault in every page now. */
  prealloc?: boolean;
}

export function createAnonBackend(options: AnonOptions): RamBackend {
  const { size, share = false, transparentHugePages = true, prealloc = false } = options;
  const what = `anonymous RAM of ${size} bytes`;
  checkSize(what, size);
  let address: bigint;
  try {
    address = mapAligned(size, (share ? libc.MAP_SHARED : libc.MAP_PRIVATE) | libc.MAP_ANONYMOUS, -1, 0);
  } catch (e) {
    throw new RamBackendError(`${what}: mapping failed (${errorText(e)})`, { cause: e });
  }
  try {
    // THP is a hint: a kernel built without it refuses the advice, and the RAM still works with small pages.
    if (transparentHugePages) tryAdvise(address, size, libc.MADV_HUGEPAGE);
    if (prealloc) preallocate(address, size, what);
  } catch (e) {
    libc.munmap(address, size);
    throw e;
  }
  return new MappedRam({
    kind: 'anon',
    size,
    fd: -1,
    hostAddress: address,
    shared: false,
    transferable: false,
    record: { offset: 0, share, hugetlb: false, hugetlbSize: 0, path: null },
  });
}

function tryAdvise(address: bigint, size: number, advice: number): void {
  try {
    libc.madvise(address, size, advice);
  } catch {
    // advisory only
  }
}
