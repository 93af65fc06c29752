// Reading a checkpoint file: the whole file is verified — magic, format version, every section header, the end
// marker, no trailing bytes, the checksum — before readCheckpoint returns. It streams: small sections are read
// into memory (each length checked against the file size and MAX_SECTION_BYTES first), the RAM section is only
// checksummed and located, for the loader to stream into guest memory with readRam. The file is opened read-only.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import {
  CheckpointError,
  FORMAT_VERSION,
  HEADER_BYTES,
  MAGIC,
  MAX_PADDING_BYTES,
  MAX_RETAINED_BYTES,
  MAX_SECTION_BYTES,
  MAX_SECTIONS,
  MIN_FORMAT_VERSION,
  TRAILER_BYTES,
  crc32,
  crc32Chunk,
  kindOfCode,
  printable,
  type Section,
  type SectionKind,
} from './format.js';
import { hex } from '../../src/util/hex.js';

/** Where the RAM section's bytes are in the file. */
export interface RamLocation {
  readonly name: string;
  readonly instance: number;
  readonly version: number;
  /** File offset of the first RAM byte. */
  readonly offset: number;
  readonly length: number;
}

/** The file that was verified, so readRam can refuse a file that was replaced or changed since. */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
}

export interface Checkpoint {
  readonly path: string;
  readonly formatVersion: number;
  readonly fileBytes: number;
  readonly checksum: number;
  /** Every section but RAM, in file order. */
  readonly sections: readonly Section[];
  readonly ram?: RamLocation;
  readonly identity: FileIdentity;
}

/** Buffered reads of at most this much; also the unit in which the RAM section is checksummed. */
const READ_CHUNK = 8 << 20;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A forward-only reader over the file that keeps the running checksum of what it consumed. */
class Scanner {
  pos = 0;
  crc = 0;
  private readonly buf: Uint8Array;
  private bufStart = 0;
  private bufEnd = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {
    this.buf = new Uint8Array(Math.max(1, Math.min(size, READ_CHUNK)));
  }

  /** Bytes buffered at `pos` (reads more when none are). */
  private available(): number {
    if (this.pos < this.bufStart || this.pos >= this.bufEnd) {
      const want = Math.min(this.buf.length, this.size - this.pos);
      const got = want > 0 ? readSync(this.fd, this.buf, 0, want, this.pos) : 0;
      if (got <= 0)
        throw new CheckpointError(`checkpoint truncated at byte ${this.pos}: the file shrank while it was read`);
      this.bufStart = this.pos;
      this.bufEnd = this.pos + got;
    }
    return this.bufEnd - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.size - this.pos) {
      throw new CheckpointError(
        `checkpoint truncated at byte ${this.size}: ${what} at byte ${this.pos} needs ${n} bytes, ${this.size - this.pos} remain`,
      );
    }
  }

  /** The next `n` bytes as a new array. */
  take(n: number, what: string, checksummed = true): Uint8Array {
    this.need(n, what);
    const out = new Uint8Array(n);
    for (let done = 0; done < n; ) {
      const k = Math.min(this.available(), n - done);
      const from = this.pos - this.bufStart;
      out.set(this.buf.subarray(from, from + k), done);
      done += k;
      this.pos += k;
    }
    if (checksummed) this.crc = crc32(out, this.crc);
    return out;
  }

  /** Passes over `n` bytes (RAM), checksumming them; all-zero stretches take the shortcut. */
  skip(n: number, what: string): void {
    this.need(n, what);
    while (n > 0) {
      const k = Math.min(this.available(), n);
      const from = this.pos - this.bufStart;
      this.crc = crc32Chunk(this.buf.subarray(from, from + k), this.crc).crc;
      this.pos += k;
      n -= k;
    }
  }
}

/** Reads and verifies a checkpoint; any problem is a one-line CheckpointError and the file is not modified. */
export function readCheckpoint(path: string): Checkpoint {
  const fd = openForReading(path);
  try {
    const stat = fstatSync(fd, { bigint: true });
    if (!stat.isFile()) throw new CheckpointError(`checkpoint ${path} is not a regular file`);
    if (stat.size > BigInt(Number.MAX_SAFE_INTEGER))
      throw new CheckpointError(`checkpoint ${path} is impossibly large (${stat.size} bytes)`);
    const identity: FileIdentity = { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs };
    const scan = new Scanner(fd, Number(stat.size));
    const formatVersion = readHeader(scan);
    const sections: Section[] = [];
    let ram: RamLocation | undefined;
    const seen = new Set<string>();
    let configs = 0;
    let retained = 0;
    let padded = false;
    for (;;) {
      const at = scan.pos;
      const head = new DataView(scan.take(3, 'a section header').buffer);
      const code = head.getUint8(0);
      const kind = kindOfCode(code);
      if (kind === undefined) throw new CheckpointError(`unknown section kind ${code} at byte ${at}`);
      const nameBytes = scan.take(head.getUint16(1, true), `the name of a ${kind} section`);
      let name: string;
      try {
        name = utf8.decode(nameBytes);
      } catch {
        throw new CheckpointError(`the name of the ${kind} section at byte ${at} is not valid UTF-8`);
      }
      const tail = new DataView(scan.take(16, `the header of ${kind} section '${printable(name)}'`).buffer);
      const instance = tail.getUint32(0, true);
      const version = tail.getUint32(4, true);
      const length64 = tail.getBigUint64(8, true);
      const what = `${kind} section '${printable(name)}' (at byte ${at})`;
      if (kind === 'end') {
        if (name !== '' || instance !== 0 || version !== 0 || length64 !== 0n)
          throw new CheckpointError(`malformed end marker at byte ${at}`);
        break;
      }
      if (length64 > BigInt(scan.size - scan.pos)) {
        throw new CheckpointError(
          `checkpoint truncated at byte ${scan.size}: ${what} claims ${length64} bytes, ${scan.size - scan.pos} remain`,
        );
      }
      const length = Number(length64);
      if (kind === 'padding') {
        if (formatVersion < 2) throw new CheckpointError(`${what}: padding is not part of format ${formatVersion}`);
        if (padded) throw new CheckpointError(`${what}: a second padding section`);
        if (length > MAX_PADDING_BYTES)
          throw new CheckpointError(`${what}: ${length} bytes of padding, over the ${MAX_PADDING_BYTES} allowed`);
        padded = true;
        scan.skip(length, `the payload of ${what}`);
        continue;
      }
      const key = `${kind}\0${name}\0${instance}`;
      if (seen.has(key) || (kind === 'ram' && ram))
        throw new CheckpointError(`duplicate ${kind} section '${printable(name)}' instance ${instance} at byte ${at}`);
      seen.add(key);
      if (kind === 'ram') {
        ram = { name, instance, version, offset: scan.pos, length };
        scan.skip(length, `the payload of ${what}`);
        continue;
      }
      if (length > MAX_SECTION_BYTES)
        throw new CheckpointError(
          `${what}: payload of ${length} bytes exceeds the ${MAX_SECTION_BYTES >> 20} MiB section limit`,
        );
      if (sections.length >= MAX_SECTIONS)
        throw new CheckpointError(`${what}: more than ${MAX_SECTIONS} sections (the limit a checkpoint may hold)`);
      retained += length;
      if (retained > MAX_RETAINED_BYTES)
        throw new CheckpointError(
          `${what}: the sections so far hold ${retained} bytes, over the ${MAX_RETAINED_BYTES >> 20} MiB a checkpoint may keep in memory`,
        );
      if (kind === 'config') configs++;
      sections.push({ kind, name, instance, version, payload: scan.take(length, `the payload of ${what}`) });
    }
    const computed = scan.crc;
    const stored = new DataView(scan.take(TRAILER_BYTES, 'the checksum', false).buffer).getUint32(0, true);
    if (scan.pos !== scan.size)
      throw new CheckpointError(
        `trailing garbage: ${scan.size - scan.pos} bytes after the checksum at byte ${scan.pos}`,
      );
    if (stored !== computed) {
      throw new CheckpointError(
        `checksum mismatch: the file says ${hex(stored, 8)}, its contents give ${hex(computed, 8)}`,
      );
    }
    if (configs !== 1)
      throw new CheckpointError(
        configs === 0 ? 'checkpoint has no config section' : `checkpoint has ${configs} config sections`,
      );
    return { path, formatVersion, fileBytes: scan.size, checksum: computed, sections, ram, identity };
  } finally {
    closeSync(fd);
  }
}

function readHeader(scan: Scanner): number {
  const header = scan.take(HEADER_BYTES, 'the header');
  for (let i = 0; i < MAGIC.length; i++) {
    if (header[i] !== MAGIC[i]) {
      throw new CheckpointError(
        `bad magic: not a tsvmm checkpoint (starts with ${Buffer.from(header.subarray(0, MAGIC.length)).toString('hex')})`,
      );
    }
  }
  const version = new DataView(header.buffer).getUint32(MAGIC.length, true);
  if (version > FORMAT_VERSION)
    throw new CheckpointError(
      `checkpoint format version ${version} is newer than this tsvmm supports (${FORMAT_VERSION})`,
    );
  if (version < MIN_FORMAT_VERSION)
    throw new CheckpointError(
      `checkpoint format version ${version} is older than this tsvmm supports (${MIN_FORMAT_VERSION})`,
    );
  return version;
}

/** Read-only, and non-blocking so that a FIFO in its place is refused rather than waited on. */
function openForReading(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new CheckpointError(`cannot open checkpoint ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The first section of `kind` (and `name`, `instance` when given). */
export function findSection(
  checkpoint: Checkpoint,
  kind: Exclude<SectionKind, 'ram'>,
  name?: string,
  instance?: number,
): Section | undefined {
  return checkpoint.sections.find(
    (s) =>
      s.kind === kind && (name === undefined || s.name === name) && (instance === undefined || s.instance === instance),
  );
}

/** A reader of the verified RAM section; `close()` it when done. */
export interface RamReader {
  /** Copies RAM bytes [offset, offset + length) into `into[0, length)`. */
  read(offset: number, length: number, into: Uint8Array): void;
  close(): void;
}

/** Opens the checkpoint's RAM section again, refusing a file that changed since readCheckpoint verified it. */
export function openRam(checkpoint: Checkpoint): RamReader {
  const ram = checkpoint.ram;
  if (!ram) throw new CheckpointError(`checkpoint ${checkpoint.path} has no RAM section`);
  const fd = openForReading(checkpoint.path);
  try {
    const s = fstatSync(fd, { bigint: true });
    const id = checkpoint.identity;
    if (s.dev !== id.dev || s.ino !== id.ino || s.size !== id.size || s.mtimeNs !== id.mtimeNs) {
      throw new CheckpointError(`checkpoint ${checkpoint.path} changed since it was verified`);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    read(offset, length, into) {
      if (!open) throw new CheckpointError('RAM reader is closed');
      if (
        !Number.isSafeInteger(offset) ||
        !Number.isSafeInteger(length) ||
        offset < 0 ||
        length < 0 ||
        offset + length > ram.length
      ) {
        throw new CheckpointError(
          `RAM read of ${length} bytes at offset ${offset} is outside the ${ram.length}-byte RAM section`,
        );
      }
      if (into.length < length)
        throw new CheckpointError(`RAM read of ${length} bytes into a buffer of ${into.length}`);
      for (let done = 0; done < length; ) {
        const got = readSync(fd, into, done, Math.min(length - done, 1 << 30), ram.offset + offset + done);
        if (got <= 0)
          throw new CheckpointError(
            `checkpoint ${checkpoint.path} truncated at byte ${ram.offset + offset + done} while reading RAM`,
          );
        done += got;
      }
    },
    close() {
      if (open) {
        open = false;
        closeSync(fd);
      }
    },
  };
}

/** One read of RAM bytes [offset, offset + length) into `into` (opens and closes the file; see openRam for many). */
export function readRam(checkpoint: Checkpoint, offset: number, length: number, into: Uint8Array): void {
  const reader = openRam(checkpoint);
  try {
    reader.read(offset, length, into);
  } finally {
    reader.close();
  }
}
