// A cpr-save in reboot mode makes the disk images durable before it writes the state: the host may kexec into a new
// kernel next, and what the guest was told is written must not live only in the old kernel's page cache.
import { fdatasyncSync } from 'node:fs';
import { CprError } from './cpr-error.js';

export interface SyncedImage {
  readonly id: string;
  readonly fd: number;
  readonly readOnly: boolean;
}

/** fdatasync on every writable image; a failure (EIO, ENOSPC) fails the save with the drive's name. */
export function syncImages(images: readonly SyncedImage[]): void {
  for (const image of images) {
    if (image.readOnly) continue;
    try {
      fdatasyncSync(image.fd);
    } catch (e) {
      throw new CprError(
        `cannot save: drive ${image.id}'s image could not be synced: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
}
