// Open-file-description locks (F_OFD_SETLK), as QEMU locks its disk images: exclusive for a file tsvmm writes (guest
// RAM with share=on, a writable disk image), shared for one it only reads. An OFD lock belongs to the open file
// description, not to the process: every fd dup'd from it or passed over SCM_RIGHTS (cpr-transfer) or kept across
// an exec (cpr-exec) holds the same lock, so taking it again through such an fd succeeds, while a second open of
// the same file, by any process, is refused. The lock goes away when the last fd of the description is closed,
// which is also what happens when the process ends, however it ends.
import { Errno, SysError } from './errno.js';
import { fcntlPtr } from './libc.js';

const F_OFD_SETLK = 37;
const F_RDLCK = 0;
const F_WRLCK = 1;
const SEEK_SET = 0;

/** struct flock on x86-64: l_type (short), l_whence (short), l_start, l_len (off_t), l_pid (int), padded to 32. */
const FLOCK_BYTES = 32;

function flock(type: number): DataView {
  const view = new DataView(new ArrayBuffer(FLOCK_BYTES));
  view.setInt16(0, type, true);
  view.setInt16(2, SEEK_SET, true);
  // l_start = 0 and l_len = 0: the whole file, however long it grows. l_pid must be 0 for an OFD lock.
  return view;
}

export type LockMode = 'exclusive' | 'shared';

/**
 * What became of a lock request: `locked` (held from now on by this fd's description), `held-elsewhere` (another
 * open of the file holds a conflicting lock: another tsvmm, a QEMU, a `flock`-aware tool), or `unsupported` (the
 * file system cannot lock: the file is used unlocked, as QEMU does with locking=auto).
 */
export type LockResult = 'locked' | 'held-elsewhere' | 'unsupported';

/** Locks the whole file behind `fd` without waiting. Throws SysError only for errors that are not about the lock. */
export function lockWholeFile(fd: number, mode: LockMode): LockResult {
  try {
    fcntlPtr(fd, F_OFD_SETLK, flock(mode === 'exclusive' ? F_WRLCK : F_RDLCK));
    return 'locked';
  } catch (e) {
    if (!(e instanceof SysError)) throw e;
    if (e.errno === Errno.EAGAIN || e.errno === Errno.EACCES) return 'held-elsewhere';
    if (e.errno === Errno.ENOLCK || e.errno === Errno.EINVAL || e.errno === Errno.EOPNOTSUPP) return 'unsupported';
    throw e;
  }
}

/** How a refusal reads, after the file's name: QEMU says 'Failed to get "write" lock'. */
export function heldElsewhereText(mode: LockMode): string {
  return `another process holds a lock on it (failed to get the ${mode === 'exclusive' ? 'write' : 'read'} lock: is another tsvmm or QEMU using it?)`;
}
