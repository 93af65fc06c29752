// Paths inside an initramfs. The kernel unpacks the archive into its rootfs and follows whatever names it finds,
// so a name is checked here once, before it reaches the archive: relative to the archive root, no '..', no NUL.
import { MAX_NAME_BYTES } from './cpio-newc.js';

export class ArchivePathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchivePathError';
  }
}

/**
 * The canonical archive name of `path`: a leading '/' means the archive root ("/etc/x" and "etc/x" are the same
 * entry), repeated slashes and '.' components are dropped. A '..' component is refused even where it would stay
 * inside the root: an initramfs path never needs one, and refusing it keeps every name obviously contained.
 */
export function archivePath(path: string, what = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) throw new ArchivePathError(`initramfs: ${what} is empty`);
  if (path.includes('\0')) throw new ArchivePathError(`initramfs: ${what} ${JSON.stringify(path)} contains a NUL byte`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..'))
    throw new ArchivePathError(
      `initramfs: ${what} '${path}' contains '..': archive paths must stay under the archive root`,
    );
  if (parts.length === 0) throw new ArchivePathError(`initramfs: ${what} '${path}' names the archive root itself`);
  const name = parts.join('/');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw new ArchivePathError(`initramfs: ${what} is longer than ${MAX_NAME_BYTES} bytes`);
  return name;
}

/** Every proper ancestor of an archive name, outermost first: "a/b/c" → ["a", "a/b"]. */
export function parentsOf(name: string): string[] {
  const parts = name.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}
