// Which state of guest RAM a reboot-mode checkpoint describes. A checkpoint that leaves RAM in its file on /dev/shm
// (or any shared file) is only right for that RAM as it was at the save: once a guest has run on it again — the
// checkpoint was loaded and the guest went on, or a VM booted on the file — loading the same checkpoint would put
// old vCPU and device state over newer memory and corrupt the guest silently. So the RAM file carries a generation
// id in the extended attribute user.tsvmm.generation (tmpfs has user xattrs since Linux 6.6; most disk file
// systems have them), the checkpoint records it, a load refuses a mismatch, and every time a guest starts running
// on the RAM the id is replaced. A file system without user xattrs (ENOTSUP) cannot carry it: there the check is
// not made. memfd RAM needs none: it dies with the processes that hold its fd, and cpr-transfer/exec hand that fd on.
import { randomBytes } from 'node:crypto';
import { Errno, SysError } from '../sys/errno.js';
import { fgetxattr, fsetxattr } from '../sys/libc.js';
import type { RamBackend } from './backend.js';

export const GENERATION_XATTR = 'user.tsvmm.generation';
/** 128 random bits as hex: collisions between two saves of one file are out of the question. */
const GENERATION_BYTES = 16;

/** Whether this backend's RAM outlives the process in a file that can carry a generation. */
export function carriesGeneration(backend: RamBackend): boolean {
  return backend.kind === 'file' && backend.shared && backend.fd >= 0;
}

/**
 * The RAM file's generation: its id, null when it has none (never saved, or copied without xattrs), or undefined
 * when its file system has no user xattrs (nothing can be checked).
 */
export function readRamGeneration(backend: RamBackend): string | null | undefined {
  if (!carriesGeneration(backend)) return undefined;
  const buffer = new Uint8Array(64);
  try {
    const length = fgetxattr(backend.fd, GENERATION_XATTR, buffer);
    return new TextDecoder().decode(buffer.subarray(0, length));
  } catch (e) {
    if (e instanceof SysError && e.errno === Errno.ENODATA) return null;
    if (e instanceof SysError && (e.errno === Errno.ENOTSUP || e.errno === Errno.EOPNOTSUPP)) return undefined;
    // ERANGE: a value longer than any tsvmm writes — not ours, so it matches no checkpoint.
    if (e instanceof SysError && e.errno === Errno.ERANGE) return null;
    throw e;
  }
}

/** Gives the RAM file a fresh generation; returns it (undefined when the file system cannot carry one). */
export function newRamGeneration(backend: RamBackend): string | undefined {
  if (!carriesGeneration(backend)) return undefined;
  const id = randomBytes(GENERATION_BYTES).toString('hex');
  try {
    fsetxattr(backend.fd, GENERATION_XATTR, new TextEncoder().encode(id));
  } catch (e) {
    if (e instanceof SysError && (e.errno === Errno.ENOTSUP || e.errno === Errno.EOPNOTSUPP)) return undefined;
    throw e;
  }
  return id;
}

/** The generation a save records: the RAM's current one, given one first if it has none. */
export function ramGenerationForSave(backend: RamBackend): string | undefined {
  const current = readRamGeneration(backend);
  return current === null ? newRamGeneration(backend) : current;
}
