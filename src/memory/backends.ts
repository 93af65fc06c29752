// Choosing a RAM backend: from a spec (what the command line asked for) or from a record (what a checkpoint says
// the RAM was, to map it again in a new process).
import { RamBackendError, type BackendRecord, type RamBackend } from './backend.js';
import { createAnonBackend } from './anon-backend.js';
import { createMemfdBackend, openMemfdFromRecord } from './memfd-backend.js';
import { createFileBackend } from './file-backend.js';
import { createDevdaxBackend } from './devdax-backend.js';

export type { BackendKind, BackendRecord, RamBackend } from './backend.js';
export { RamBackendError } from './backend.js';

/** What to create: plain data, as config.ts produces it from QEMU flags. */
export type BackendSpec =
  | { kind: 'anon'; size: number; share?: boolean; transparentHugePages?: boolean; prealloc?: boolean }
  | {
      kind: 'memfd';
      size: number;
      share?: boolean;
      hugetlb?: boolean;
      hugetlbSize?: number;
      seal?: boolean;
      prealloc?: boolean;
    }
  | { kind: 'file'; size: number; path: string; share?: boolean; offset?: number; prealloc?: boolean }
  | { kind: 'devdax'; size: number; path: string; offset?: number; prealloc?: boolean };

/** Device DAX is reached through memory-backend-file with a /dev/dax path, as in QEMU. */
export function isDevdaxPath(path: string): boolean {
  return /^\/dev\/dax\d+\.\d+$/.test(path);
}

export function openBackend(spec: BackendSpec): RamBackend {
  switch (spec.kind) {
    case 'anon':
      return createAnonBackend(spec);
    case 'memfd':
      return createMemfdBackend(spec);
    case 'file':
      return createFileBackend(spec);
    case 'devdax':
      return createDevdaxBackend(spec);
  }
}

/**
 * Maps the RAM a record describes, in this (new) process:
 * - file: reopens the path (never creates it: a missing file means the RAM is gone), or uses `fd` if given;
 * - devdax: reopens the device (or `fd`);
 * - memfd: needs `fd`, received from the old process by fd passing;
 * - anon: nothing survives, so this is fresh zeroed RAM of the same size; the caller restores the contents.
 * A given `fd` belongs to the backend once this returns.
 */
export function openBackendFromRecord(record: BackendRecord, options: { fd?: number } = {}): RamBackend {
  checkRecord(record);
  const { fd } = options;
  switch (record.kind) {
    case 'anon':
      return createAnonBackend({ size: record.size, share: record.share });
    case 'memfd':
      if (fd === undefined)
        throw new RamBackendError(
          `memfd RAM of ${record.size} bytes: its fd must be passed in (memfd RAM has no path)`,
        );
      return openMemfdFromRecord(record, fd);
    case 'file':
      if (record.path === null && fd === undefined) {
        throw new RamBackendError(
          `file RAM of ${record.size} bytes: the file was unlinked, so only its fd can reach it, and none was passed in`,
        );
      }
      return createFileBackend({
        path: record.path,
        fd,
        size: record.size,
        offset: record.offset,
        share: record.share,
        mustExist: true,
      });
    case 'devdax':
      if (record.path === null) throw new RamBackendError('devdax record without a path');
      return createDevdaxBackend({ path: record.path, fd, size: record.size, offset: record.offset });
  }
}

/** A record comes from a checkpoint file: check its shape before trusting any of it. */
function checkRecord(r: BackendRecord): void {
  const bad = (why: string): never => {
    throw new RamBackendError(`RAM backend record ${JSON.stringify(r)}: ${why}`);
  };
  if (typeof r !== 'object' || r === null) bad('not an object');
  if (!['anon', 'memfd', 'file', 'devdax'].includes(r.kind)) bad(`unknown kind '${String(r.kind)}'`);
  if (!Number.isSafeInteger(r.size) || r.size <= 0) bad('size is not a positive integer');
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) bad('offset is not a non-negative integer');
  if (typeof r.share !== 'boolean' || typeof r.hugetlb !== 'boolean') bad('share and hugetlb must be booleans');
  if (!Number.isSafeInteger(r.hugetlbSize) || r.hugetlbSize < 0) bad('hugetlbSize is not a non-negative integer');
  if (r.path !== null && typeof r.path !== 'string') bad('path must be a string or null');
}
