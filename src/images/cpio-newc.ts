// The "newc" cpio format (SVR4, no CRC) that the Linux kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst):
//   file    := ALGN(4) + header + name + "\0" + ALGN(4) + data
//   trailer := ALGN(4) + header + "TRAILER!!!\0" + ALGN(4)
// The header is the 6-byte magic "070701" and 13 fields of 8 ASCII hex digits. Alignment is relative to the start
// of the archive. This module writes and reads that byte format and nothing else: which entries an initramfs holds
// is decided in initramfs.ts.
import { alignUp } from '../util/align.js';
import { hexDigits } from '../util/hex.js';

/** newc magic (no CRC); "070702" is the CRC variant, which we read but never write. */
const MAGIC_NEWC = '070701';
const MAGIC_CRC = '070702';
/** 6 magic bytes + 13 fields × 8 hex digits. */
export const HEADER_SIZE = 110;
/** The name of the entry that ends an archive. */
export const TRAILER_NAME = 'TRAILER!!!';
/** cpio(1) and the kernel's gen_init_cpio pad a finished archive to a 512-byte block; the kernel skips the zeros. */
const ARCHIVE_BLOCK = 512;
/** The kernel's PATH_MAX: longer names are refused by the unpacker. */
export const MAX_NAME_BYTES = 4095;

/** File type bits of st_mode (<sys/stat.h>). */
export const S_IFMT = 0o170000;
/** Directory. */
export const S_IFDIR = 0o040000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Symbolic link: the entry's data is the link target. */
export const S_IFLNK = 0o120000;
/** Character device: rdevmajor/rdevminor name it. */
export const S_IFCHR = 0o020000;
/** Block device. */
export const S_IFBLK = 0o060000;

export type CpioEntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev';

/** One archive member, as written or as read back. */
export interface CpioEntry {
  /** Path inside the archive, without a leading '/' (the kernel unpacks relative to its rootfs). */
  name: string;
  type: CpioEntryType;
  /** Permission bits (0o7777), without the type bits. */
  perm: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** File contents, or the target of a symlink (as bytes); empty for directories and device nodes. */
  data: Uint8Array;
  /** Device number of a chardev/blockdev node. */
  rdevMajor: number;
  rdevMinor: number;
}

const TYPE_BITS: Record<CpioEntryType, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  chardev: S_IFCHR,
  blockdev: S_IFBLK,
};

function typeFromMode(mode: number): CpioEntryType | null {
  for (const [type, bits] of Object.entries(TYPE_BITS)) if ((mode & S_IFMT) === bits) return type as CpioEntryType;
  return null;
}

function hex8(value: number, field: string, entry: string): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`cpio: ${field} ${value} of '${entry}' does not fit in 32 bits`);
  }
  return hexDigits(value, 8);
}

/**
 * Serialises `entries` in the order given, then the trailer, padded to 512 bytes. Inode numbers are assigned
 * 1, 2, 3… in that order and every entry has its own (nlink 1, directories 2), so the kernel never links two
 * entries together as hard links. Same entries in the same order → same bytes.
 */
export function writeCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  const pad = (): void => {
    const n = alignUp(offset, 4) - offset;
    if (n) push(Buffer.alloc(n));
  };

  const member = (e: CpioEntry, ino: number): void => {
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    if (name.length - 1 > MAX_NAME_BYTES)
      throw new RangeError(`cpio: name longer than ${MAX_NAME_BYTES} bytes: '${e.name.slice(0, 60)}…'`);
    if (e.name.includes('\0')) throw new RangeError(`cpio: name contains NUL: ${JSON.stringify(e.name)}`);
    if ((e.perm & ~0o7777) !== 0)
      throw new RangeError(`cpio: permission bits 0o${e.perm.toString(8)} of '${e.name}' exceed 0o7777`);
    const fields = [
      ino, // c_ino
      TYPE_BITS[e.type] | e.perm, // c_mode
      e.uid,
      e.gid, // c_uid, c_gid
      e.type === 'dir' ? 2 : 1, // c_nlink
      e.mtime, // c_mtime
      e.data.length, // c_filesize
      0,
      0, // c_maj, c_min: the device holding the file (unused)
      e.rdevMajor,
      e.rdevMinor, // c_rmaj, c_rmin: a device node's own number
      name.length, // c_namesize, including the NUL
      0, // c_chksum: 0 in newc
    ];
    const names = [
      'ino',
      'mode',
      'uid',
      'gid',
      'nlink',
      'mtime',
      'filesize',
      'devmajor',
      'devminor',
      'rdevmajor',
      'rdevminor',
      'namesize',
      'check',
    ];
    push(Buffer.from(MAGIC_NEWC + fields.map((v, i) => hex8(v, names[i], e.name)).join(''), 'ascii'));
    push(name);
    pad();
    if (e.data.length) {
      push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.length));
      pad();
    }
  };

  entries.forEach((e, i) => {
    if (e.name === TRAILER_NAME)
      throw new RangeError(`cpio: '${TRAILER_NAME}' is reserved for the end-of-archive entry`);
    if ((e.type === 'dir' || e.type === 'chardev' || e.type === 'blockdev') && e.data.length) {
      throw new RangeError(`cpio: ${e.type} '${e.name}' cannot carry data`);
    }
    member(e, i + 1);
  });
  member(
    {
      name: TRAILER_NAME,
      type: 'file',
      perm: 0,
      uid: 0,
      gid: 0,
      mtime: 0,
      data: new Uint8Array(0),
      rdevMajor: 0,
      rdevMinor: 0,
    },
    0,
  );
  const tail = (ARCHIVE_BLOCK - (offset % ARCHIVE_BLOCK)) % ARCHIVE_BLOCK;
  if (tail) push(Buffer.alloc(tail));
  return Buffer.concat(parts, offset);
}

export class CpioFormatError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`cpio: ${message} (at byte ${offset})`);
    this.name = 'CpioFormatError';
  }
}

/**
 * Parses a newc (or crc) archive up to its trailer, as the kernel's unpacker would: zero padding between
 * archives is skipped, and several concatenated archives are read as one list. Every length is checked against
 * the buffer before it is used. Inode, link count and the holding device are not returned.
 */
export function readCpioNewc(archive: Uint8Array): CpioEntry[] {
  const buf = Buffer.from(archive.buffer, archive.byteOffset, archive.length);
  const entries: CpioEntry[] = [];
  let at = 0;
  while (at < buf.length) {
    // Between archives (and after the last) the format allows zero bytes, consumed 4 at a time.
    if (buf[at] === 0) {
      if (at + 4 > buf.length || buf.readUInt32LE(at) !== 0) throw new CpioFormatError('bad padding', at);
      at += 4;
      continue;
    }
    if (at + HEADER_SIZE > buf.length) throw new CpioFormatError('truncated header', at);
    const magic = buf.toString('ascii', at, at + 6);
    if (magic !== MAGIC_NEWC && magic !== MAGIC_CRC)
      throw new CpioFormatError(`bad magic ${JSON.stringify(magic)} (not a newc cpio archive)`, at);
    const fields: number[] = [];
    for (let i = 0; i < 13; i++) {
      const text = buf.toString('ascii', at + 6 + i * 8, at + 14 + i * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(text))
        throw new CpioFormatError(`header field ${i} is not 8 hex digits: ${JSON.stringify(text)}`, at);
      fields.push(parseInt(text, 16));
    }
    const field = (i: number): number => fields[i];
    const mode = field(1);
    const fileSize = field(6);
    const nameSize = field(11);
    if (nameSize < 1 || nameSize > MAX_NAME_BYTES + 1)
      throw new CpioFormatError(`name size ${nameSize} out of range`, at);
    const nameStart = at + HEADER_SIZE;
    if (nameStart + nameSize > buf.length) throw new CpioFormatError('truncated name', at);
    if (buf[nameStart + nameSize - 1] !== 0) throw new CpioFormatError('name not NUL-terminated', at);
    const name = buf.toString('utf8', nameStart, nameStart + nameSize - 1);
    const dataStart = alignUp(nameStart + nameSize, 4);
    if (dataStart + fileSize > buf.length)
      throw new CpioFormatError(`data of '${name}' (${fileSize} bytes) runs past the end`, at);
    const next = alignUp(dataStart + fileSize, 4);
    if (name === TRAILER_NAME) {
      at = next;
      continue;
    }
    const type = typeFromMode(mode);
    if (type === null)
      throw new CpioFormatError(`'${name}' has an unsupported file type (mode 0o${mode.toString(8)})`, at);
    entries.push({
      name,
      type,
      perm: mode & 0o7777,
      uid: field(2),
      gid: field(3),
      mtime: field(5),
      data: new Uint8Array(buf.subarray(dataStart, dataStart + fileSize)),
      rdevMajor: field(9),
      rdevMinor: field(10),
    });
    at = next;
  }
  return entries;
}
