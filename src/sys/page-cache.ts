// How much of a file sits in the page cache (what fincore(1) prints): mincore(2) over a read-only shared mapping
// of it. Mapping does not fault pages in, so measuring does not change the answer.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { MAP_SHARED, PROT_READ, mincore, mmap, munmap } from './libc.js';

const PAGE = 4096;

/** Bytes of the file at `path` resident in the page cache (whole pages; a hole never is). */
export function residentBytes(path: string): number {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return 0;
    const address = mmap(null, size, PROT_READ, MAP_SHARED, fd, 0);
    try {
      const vec = new Uint8Array(Math.ceil(size / PAGE));
      mincore(address, size, vec);
      let pages = 0;
      for (const b of vec) pages += b & 1;
      return pages * PAGE;
    } finally {
      munmap(address, size);
    }
  } finally {
    closeSync(fd);
  }
}
