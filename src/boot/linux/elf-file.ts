// An ELF kernel read the cheap way: only the bytes the loader parses (ELF header, program and section header tables,
// the notes) are read into an image the size of the file — the rest stays untouched, zero-filled-on-demand memory —
// and the PT_LOAD contents are read from the file straight into guest RAM when the kernel is loaded (see
// LinuxBootOptions.readSegment). A 53 MB vmlinux then costs one copy at boot instead of a read into the heap and a
// copy out of it, and no 53 MB buffer is kept for the life of the VM.
import { readSync } from 'node:fs';

const HEAD_BYTES = 64 << 10;
const PT_NOTE = 4;
const SHT_NOTE = 7;

/** Reads [offset, offset + length) of `fd` into the same range of `into`, as far as both reach. */
function readRange(fd: number, into: Uint8Array, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= into.length) return;
  const end = Math.min(into.length, offset + Math.max(0, length));
  for (let at = offset; at < end; ) {
    const n = readSync(fd, into, at, end - at, at);
    if (n === 0) return; // the file is shorter than it said: the parser reports what is missing
    at += n;
  }
}

/** The headers, program/section header tables and notes of the ELF file open on `fd` (`size` bytes), in place. */
export function readElfMetadata(fd: number, size: number): Uint8Array {
  const image = new Uint8Array(size);
  readRange(fd, image, 0, HEAD_BYTES);
  const is64 = image[4] === 2;
  const dv = new DataView(image.buffer);
  if (size < (is64 ? 64 : 52)) return image;
  const word = (at: number) => (is64 ? Number(dv.getBigUint64(at, true)) : dv.getUint32(at, true));
  const phoff = word(is64 ? 32 : 28);
  const shoff = word(is64 ? 40 : 32);
  const phentsize = dv.getUint16(is64 ? 54 : 42, true);
  const phnum = dv.getUint16(is64 ? 56 : 44, true);
  const shentsize = dv.getUint16(is64 ? 58 : 46, true);
  const shnum = dv.getUint16(is64 ? 60 : 48, true);
  readRange(fd, image, phoff, phnum * phentsize);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + (is64 ? 56 : 32) > size) break;
    if (dv.getUint32(at, true) !== PT_NOTE) continue;
    readRange(fd, image, word(at + (is64 ? 8 : 4)), word(at + (is64 ? 32 : 16)));
  }
  if (shoff !== 0 && shnum !== 0) {
    readRange(fd, image, shoff, shnum * shentsize);
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * shentsize;
      if (at + (is64 ? 64 : 40) > size) break;
      if (dv.getUint32(at + 4, true) !== SHT_NOTE) continue;
      readRange(fd, image, word(at + (is64 ? 24 : 16)), word(at + (is64 ? 32 : 20)));
    }
  }
  return image;
}

/** Reads exactly `into.length` bytes at `offset`; a short read means the file changed since it was opened. */
export function readExactly(fd: number, into: Uint8Array, offset: number, what: string): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, offset + done);
    if (n === 0)
      throw new Error(
        `${what}: the file ended at ${offset + done}, inside a segment of ${into.length} bytes at ${offset} (it changed on disk?)`,
      );
    done += n;
  }
}
