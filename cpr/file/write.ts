// Writing a checkpoint file atomically: everything goes to `<path>.tmp-<pid>` in the same directory, which is
// fsynced, renamed over `path`, and the directory fsynced. A failure at any point removes the temp file, so `path`
// holds either the previous checkpoint or the complete new one, never a torn file. A writer that was killed cannot
// remove its temp file; the next save to the same path does (removeDeadWritersTemps). The RAM section goes out
// with O_DIRECT where the file system allows it (ram-writer.ts); the header, small sections and trailer through
// the page cache.
import { closeSync, constants, fsyncSync, lstatSync, openSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { RamWriter, writeAll, type RamIo } from './ram-writer.js';
import {
  CheckpointError,
  FORMAT_VERSION,
  HEADER_BYTES,
  MAGIC,
  MAX_NAME_BYTES,
  MAX_SECTION_BYTES,
  SECTION_HEADER_BYTES,
  SECTION_KINDS,
  TRAILER_BYTES,
  crc32,
  crc32Chunk,
  jsonSection,
  type Section,
} from './format.js';

/** Guest RAM as the writer sees it: `size` bytes, read in chunks (a view into guest memory is fine). */
export interface RamSource {
  readonly size: number;
  /** `length` bytes at `offset`; the writer is done with them before it asks for the next chunk. */
  read(offset: number, length: number): Uint8Array;
  /** Section name, instance and version (default 'ram', 0, 1). */
  readonly name?: string;
  readonly instance?: number;
  readonly version?: number;
}

export interface CheckpointContents {
  /** Written in this order; exactly one `config`. */
  readonly sections: readonly Section[];
  readonly ram?: RamSource;
  /** An optional human-readable description, written as a `description` section of JSON. */
  readonly description?: object;
}

/** Where the time went (monotonic nanoseconds, durations). */
export interface WriteTimings {
  /** Section headers, the checksum, and reading RAM from its source. */
  readonly serializeNs: number;
  readonly writeNs: number;
  readonly fsyncNs: number;
  /** rename() and the directory fsync that makes it durable. */
  readonly renameNs: number;
}

export interface WriteResult {
  readonly bytes: number;
  readonly timings: WriteTimings;
  /** How the RAM section was written (direct or buffered, and why), when there was one. */
  readonly ramIo?: RamIo;
}

/** RAM is streamed in chunks of this size: large enough to amortise syscalls, small enough to stay in cache. */
const RAM_CHUNK = 8 << 20;
const U32_MAX = 0xffff_ffff;
const utf8 = new TextEncoder();
const now = () => process.hrtime.bigint();

interface PlannedSection {
  readonly code: number;
  readonly name: Uint8Array;
  readonly instance: number;
  readonly version: number;
  readonly length: number;
}

export interface WriteOptions {
  /** Write the RAM section with O_DIRECT where the file system allows it (default); false: through the page cache. */
  readonly directIo?: boolean;
}

export function writeCheckpoint(path: string, contents: CheckpointContents, options: WriteOptions = {}): WriteResult {
  let t = now();
  let serializeNs = 0n;
  let writeNs = 0n;
  let fsyncNs = 0n;
  const lap = () => {
    const n = now();
    const d = n - t;
    t = n;
    return d;
  };

  const sections = [...contents.sections];
  if (contents.description !== undefined)
    sections.push(jsonSection('description', 'description', contents.description));
  const planned = sections.map(checkSection);
  checkUnique(sections);
  const ram = contents.ram && checkRam(contents.ram);
  const endAndTrailer = new Uint8Array(SECTION_HEADER_BYTES + TRAILER_BYTES);
  const tailView = new DataView(endAndTrailer.buffer);
  putSectionHeader(endAndTrailer, tailView, 0, {
    code: SECTION_KINDS.end,
    name: new Uint8Array(0),
    instance: 0,
    version: 0,
    length: 0,
  });
  serializeNs += lap();

  const temp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  let ramWriter: RamWriter | undefined;
  try {
    removeIfPresent(temp); // a stale temp file of an earlier attempt by a process with the same pid
    removeDeadWritersTemps(path);
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    if (ram) ramWriter = new RamWriter(temp, fd, options.directIo ?? true);
    writeNs += lap();
    const prefix = serializePrefix(sections, planned, ram, ramWriter?.alignment ?? 1);
    let crc = crc32(prefix);
    serializeNs += lap();
    writeAll(fd, prefix, 0);
    let position = prefix.length;
    writeNs += lap();
    if (ram && ramWriter) {
      for (let offset = 0; offset < ram.source.size; offset += RAM_CHUNK) {
        const length = Math.min(RAM_CHUNK, ram.source.size - offset);
        const chunk = readRamChunk(ram.source, offset, length);
        const { crc: next, zero } = crc32Chunk(chunk, crc);
        crc = next;
        serializeNs += lap();
        if (!zero) ramWriter.write(chunk, position); // all-zero chunks stay a hole in the file: it reads back as zeros
        position += length;
        writeNs += lap();
      }
    }
    const ramIo = ramWriter?.finish();
    crc = crc32(endAndTrailer.subarray(0, SECTION_HEADER_BYTES), crc);
    tailView.setUint32(SECTION_HEADER_BYTES, crc, true);
    serializeNs += lap();
    writeAll(fd, endAndTrailer, position);
    position += endAndTrailer.length;
    writeNs += lap();
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    fsyncNs += lap();
    renameSync(temp, path);
    const bytes = position;
    try {
      syncDirectory(dirname(path));
    } catch (e) {
      // The file is complete and in place; only its durability across a host crash is in doubt.
      throw new CheckpointError(
        `checkpoint ${path} written but its directory could not be synced: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const renameNs = lap();
    return {
      bytes,
      timings: {
        serializeNs: Number(serializeNs),
        writeNs: Number(writeNs),
        fsyncNs: Number(fsyncNs),
        renameNs: Number(renameNs),
      },
      ...(ramIo ? { ramIo } : {}),
    };
  } catch (e) {
    try {
      ramWriter?.closeDirect();
    } catch {
      /* already failing */
    }
    if (fd !== undefined)
      try {
        closeSync(fd);
      } catch {
        /* already failing */
      }
    try {
      removeIfPresent(temp);
    } catch {
      /* already failing; the original error says more */
    }
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`cannot write checkpoint ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The header and every small section in one buffer, so they take one write; with RAM, then a padding section and
 * the RAM section's header, the padding sized so that the RAM payload starts at a multiple of `ramAlignment`.
 */
function serializePrefix(
  sections: readonly Section[],
  planned: readonly PlannedSection[],
  ram: PlannedSection | undefined,
  ramAlignment: number,
): Uint8Array {
  let bytes = HEADER_BYTES;
  for (let i = 0; i < sections.length; i++) bytes += SECTION_HEADER_BYTES + planned[i].name.length + planned[i].length;
  let padding: PlannedSection | undefined;
  if (ram) {
    const unpadded = bytes + SECTION_HEADER_BYTES + SECTION_HEADER_BYTES + ram.name.length;
    const length = (ramAlignment - (unpadded % ramAlignment)) % ramAlignment;
    padding = { code: SECTION_KINDS.padding, name: new Uint8Array(0), instance: 0, version: 0, length };
    bytes = unpadded + length;
  }
  const prefix = new Uint8Array(bytes); // zeroed: the padding payload is zeros
  const view = new DataView(prefix.buffer);
  prefix.set(MAGIC, 0);
  view.setUint32(MAGIC.length, FORMAT_VERSION, true);
  let at = HEADER_BYTES;
  for (let i = 0; i < sections.length; i++) {
    at = putSectionHeader(prefix, view, at, planned[i]);
    prefix.set(sections[i].payload, at);
    at += planned[i].length;
  }
  if (ram && padding) {
    at = putSectionHeader(prefix, view, at, padding) + padding.length;
    putSectionHeader(prefix, view, at, ram);
  }
  return prefix;
}

function checkSection(s: Section): PlannedSection {
  const what = `section ${String(s.kind)} '${String(s.name)}'`;
  const code = (SECTION_KINDS as Record<string, number>)[s.kind];
  if (code === undefined || s.kind === ('end' as string) || s.kind === ('ram' as string)) {
    throw new CheckpointError(
      `${what}: kind must be one of config, device, vcpu, kvm, timings, description (RAM goes in contents.ram)`,
    );
  }
  if (typeof s.name !== 'string') throw new CheckpointError(`${what}: name must be a string`);
  const name = utf8.encode(s.name);
  if (name.length > MAX_NAME_BYTES)
    throw new CheckpointError(`${what}: name of ${name.length} bytes exceeds ${MAX_NAME_BYTES}`);
  checkU32(s.instance, `${what}: instance`);
  checkU32(s.version, `${what}: version`);
  if (!(s.payload instanceof Uint8Array)) throw new CheckpointError(`${what}: payload must be a Uint8Array`);
  if (s.payload.length > MAX_SECTION_BYTES) {
    throw new CheckpointError(
      `${what}: payload of ${s.payload.length} bytes exceeds the ${MAX_SECTION_BYTES >> 20} MiB section limit`,
    );
  }
  return { code, name, instance: s.instance, version: s.version, length: s.payload.length };
}

function checkUnique(sections: readonly Section[]): void {
  const seen = new Set<string>();
  let configs = 0;
  for (const s of sections) {
    const key = `${s.kind}\0${s.name}\0${s.instance}`;
    if (seen.has(key)) throw new CheckpointError(`duplicate section ${s.kind} '${s.name}' instance ${s.instance}`);
    seen.add(key);
    if (s.kind === 'config') configs++;
  }
  if (configs !== 1) throw new CheckpointError(`a checkpoint needs exactly one config section, got ${configs}`);
}

function checkRam(source: RamSource): PlannedSection & { source: RamSource } {
  if (!Number.isSafeInteger(source.size) || source.size < 0)
    throw new CheckpointError(`RAM size ${source.size} is not a byte count`);
  const name = utf8.encode(source.name ?? 'ram');
  if (name.length > MAX_NAME_BYTES)
    throw new CheckpointError(`RAM section name of ${name.length} bytes exceeds ${MAX_NAME_BYTES}`);
  const instance = source.instance ?? 0;
  const version = source.version ?? 1;
  checkU32(instance, 'RAM section instance');
  checkU32(version, 'RAM section version');
  return { code: SECTION_KINDS.ram, name, instance, version, length: source.size, source };
}

function checkU32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new CheckpointError(`${what} ${v} is not a u32`);
}

function putSectionHeader(buf: Uint8Array, view: DataView, at: number, s: PlannedSection): number {
  view.setUint8(at, s.code);
  view.setUint16(at + 1, s.name.length, true);
  buf.set(s.name, at + 3);
  at += 3 + s.name.length;
  view.setUint32(at, s.instance, true);
  view.setUint32(at + 4, s.version, true);
  view.setBigUint64(at + 8, BigInt(s.length), true);
  return at + 16;
}

function readRamChunk(source: RamSource, offset: number, length: number): Uint8Array {
  let chunk: Uint8Array;
  try {
    chunk = source.read(offset, length);
  } catch (e) {
    throw new CheckpointError(`RAM read of ${length} bytes at offset ${offset} failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!(chunk instanceof Uint8Array) || chunk.length !== length) {
    throw new CheckpointError(
      `RAM read at offset ${offset} returned ${(chunk as Uint8Array)?.length} bytes, expected ${length}`,
    );
  }
  return chunk;
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes `<path>.tmp-<pid>` files whose writer is gone (killed mid-save: nothing else removes them). Only regular
 * files owned by this user; a temp whose pid is alive is another save in progress and is left alone (a pid reused
 * since only delays the clean-up).
 */
function removeDeadWritersTemps(path: string): void {
  const dir = dirname(path);
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // the open of the new temp file reports an unusable directory
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processExists(pid)) continue;
    const temp = join(dir, name);
    try {
      const st = lstatSync(temp);
      if (st.isFile() && st.uid === process.getuid?.()) unlinkSync(temp);
    } catch {
      // Gone already, or not ours to remove: the save goes on either way.
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by someone else
  }
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
