// A cpr-save in reboot mode makes the disk images durable before it writes the state: the host may kexec into a new
// kernel next, and what the guest was told is written must not live only in the old kernel's page cache.
import { ImageSync } from '../../src/sys/image-sync.js';
import { CprError } from './cpr-error.js';

export interface SyncedImage {
  readonly id: string;
  readonly fd: number;
  readonly readOnly: boolean;
  /**
   * The flag shared with the image's virtio-blk back end: a failure here fails the guest's next FLUSH (the error
   * is reported once by Linux, and this sync consumed it), and a flush that failed fails this sync.
   */
  readonly syncFailure?: SharedArrayBuffer;
}

/** fdatasync on every writable image; a failure (EIO, ENOSPC) fails the save with the drive's name. */
export function syncImages(images: readonly SyncedImage[]): void {
  for (const image of images) {
    if (image.readOnly) continue;
    try {
      new ImageSync(image.fd, image.syncFailure).sync();
    } catch (e) {
      throw new CprError(
        `cannot save: drive ${image.id}'s image could not be synced: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
}
