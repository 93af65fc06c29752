// An ELF kernel read the cheap way: only the bytes the loader parses (ELF header, program and section header tables,
// the notes) are read into an image the size of the file — the rest stays untouched, zero-filled-on-demand memory —
// and the PT_LOAD contents are read from the file straight into guest RAM when the kernel is loaded (see
// LinuxBootOptions.readSegment). A 53 MB vmlinux then costs one copy at boot instead of a read into the heap and a
// copy out of it, and no 53 MB buffer is kept for the life of the VM.
import { readSync } from 'node:fs';
import { ElfError, ElfFile, PT_NOTE, SHT_NOTE } from '../elf.js';

const HEAD_BYTES = 64 << 10;

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

/**
 * The headers, program/section header tables and notes of the ELF file open on `fd` (`size` bytes), in place. A
 * malformed file stops the reading where the ELF reader refuses it; parsing the image then reports why.
 */
export function readElfMetadata(fd: number, size: number): Uint8Array {
  const image = new Uint8Array(size);
  readRange(fd, image, 0, HEAD_BYTES);
  try {
    const elf = ElfFile.read(image);
    readRange(fd, image, Number(elf.phoff), elf.phnum * elf.phentsize);
    for (const ph of elf.programHeaders()) {
      if (ph.type === PT_NOTE) readRange(fd, image, Number(ph.offset), Number(ph.filesz));
    }
    if (elf.shoff !== 0n && elf.shnum !== 0) {
      readRange(fd, image, Number(elf.shoff), elf.shnum * elf.shentsize);
      for (const sh of elf.sectionHeaders()) {
        if (sh.type === SHT_NOTE) readRange(fd, image, Number(sh.offset), Number(sh.size));
      }
    }
  } catch (e) {
    if (!(e instanceof ElfError)) throw e;
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
