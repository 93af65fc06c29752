// fdatasync of a disk image that fails for good once it has failed, whichever thread saw the failure.
//
// Linux reports a failed writeback to one fdatasync per open file and marks the pages clean: the next fdatasync
// returns 0 although the data never reached the disk. A guest's FLUSH (virtio-blk, on the I/O thread) and a
// cpr-save's sync-images phase (main thread) sync the same fd, so the failure one of them sees must fail the other
// too — as QEMU's file-posix does with page_cache_inconsistent. The remembered errno lives in a SharedArrayBuffer
// that the machine creates per image and hands to both.
import { fdatasyncSync } from 'node:fs';
import { constants } from 'node:os';

const EIO = constants.errno.EIO;

/** A sync refused because an earlier one failed; shaped like node:fs's errors (code, errno). */
export class ImageSyncError extends Error {
  readonly code: string;
  constructor(readonly errno: number) {
    const code = errnoName(errno);
    super(`${code}: an earlier fdatasync of this image failed; its writes may not have reached the disk`);
    this.code = code;
  }
}

export class ImageSync {
  private readonly failed: Int32Array;

  /** `shared`: the image's flag, the same buffer in every thread (a fresh one when nobody else syncs the fd). */
  constructor(
    readonly fd: number,
    shared: SharedArrayBuffer = newImageSyncFlag(),
  ) {
    this.failed = new Int32Array(shared, 0, 1);
  }

  /** fdatasync; throws its error, or ImageSyncError if any earlier sync of the image failed. */
  sync(): void {
    const earlier = Atomics.load(this.failed, 0);
    if (earlier !== 0) throw new ImageSyncError(earlier);
    try {
      fdatasyncSync(this.fd);
    } catch (e) {
      const errno = Math.abs((e as NodeJS.ErrnoException).errno ?? EIO) || EIO;
      Atomics.compareExchange(this.failed, 0, 0, errno);
      throw e;
    }
  }
}

/** The shared flag of one image: 0 while its syncs succeed, else the errno of the first that failed. */
export function newImageSyncFlag(): SharedArrayBuffer {
  return new SharedArrayBuffer(4);
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}
