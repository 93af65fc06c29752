// The checkpoint file format: constants, section kinds, the error type and the checksum.
//
//   header   "TSVMMCPR" (8 bytes), format version u32
//   section  kind u8, name length u16, name (UTF-8), instance u32, version u32, payload length u64, payload
//            … repeated; exactly one `config`, at most one `ram`; (kind, name, instance) unique …
//            (format 2) at most one `padding` section, zeros, so that the RAM payload after it starts at an offset
//            aligned for O_DIRECT writes (see ram-writer.ts); it is checksummed like the rest and otherwise ignored
//   end      a section of kind `end` with an empty name, instance 0, version 0 and no payload
//   trailer  CRC-32 (u32) of every byte before it
// All integers little-endian. A reader checks every length against the file size before it allocates anything.
import zlib from 'node:zlib';
import { SetupError } from '../../src/util/setup-error.js';

export const MAGIC = new TextEncoder().encode('TSVMMCPR');
/**
 * The format this tsvmm writes; it reads versions MIN_FORMAT_VERSION..FORMAT_VERSION. 2 added the padding section
 * (a format-1 reader would refuse it as an unknown kind; the version says why in its words).
 */
export const FORMAT_VERSION = 2;
export const MIN_FORMAT_VERSION = 1;
export const HEADER_BYTES = MAGIC.length + 4;
/** kind, name length, (name), instance, version, payload length. */
export const SECTION_HEADER_BYTES = 1 + 2 + 4 + 4 + 8;
export const TRAILER_BYTES = 4;
/** Device, vCPU, config… sections are small; refusing huge ones keeps a hostile file from forcing a big allocation. */
export const MAX_SECTION_BYTES = 64 << 20;
export const MAX_NAME_BYTES = 0xffff;
/**
 * Most sections (RAM and the end marker aside) a checkpoint may hold. A real one has a config, one per device
 * (dozens), one per vCPU (at most 255), six `kvm`, timings and a description: well under 300. The cap keeps a
 * hostile file of millions of empty sections from costing a header allocation and a map entry each.
 */
export const MAX_SECTIONS = 4096;
/**
 * Most payload bytes a reader keeps in memory over all sections (the RAM section is streamed, never kept). A real
 * checkpoint keeps under 8 MiB (255 vCPUs of XSAVE, MSRs and CPUID are the bulk); without this cap a file of many
 * sections each just under MAX_SECTION_BYTES would make the reader hold gigabytes before its checksum is known.
 */
export const MAX_RETAINED_BYTES = 128 << 20;

/** What a section holds. Codes are part of the format: never renumber, only add. */
export const SECTION_KINDS = {
  end: 0,
  config: 1, // machine configuration incl. the RAM backend record
  device: 2, // one device instance's vmstate stream
  vcpu: 3, // one vCPU's state
  kvm: 4, // in-kernel irqchip (PIC, IOAPIC), PIT, kvmclock
  ram: 5, // guest RAM, when it is not on a persistent shared backend
  timings: 6, // per-phase timestamps of the save (JSON)
  description: 7, // optional human-readable layout (JSON)
  generation: 8, // the generation of the guest RAM left in its file that the checkpoint describes (JSON)
  padding: 9, // zeros aligning the RAM section's payload in the file (format 2); not kept by the reader
} as const;

export type SectionKind = Exclude<keyof typeof SECTION_KINDS, 'end' | 'padding'>;
/** The most padding a reader accepts (the largest RAM alignment, plus nothing). */
export const MAX_PADDING_BYTES = 1 << 20;

const kindByCode = new Map<number, keyof typeof SECTION_KINDS>(
  Object.entries(SECTION_KINDS).map(([k, v]) => [v, k as keyof typeof SECTION_KINDS]),
);

export function kindOfCode(code: number): keyof typeof SECTION_KINDS | undefined {
  return kindByCode.get(code);
}

/** A section as written and as read back (the RAM section is streamed instead, see RamSource / Checkpoint.ram). */
export interface Section {
  readonly kind: Exclude<SectionKind, 'ram'>;
  readonly name: string;
  readonly instance: number;
  readonly version: number;
  readonly payload: Uint8Array;
}

/** Text from a file made safe for a one-line message: control characters escaped, at most 80 characters. */
export function printable(text: string): string {
  const escaped = text.replace(/[\p{Cc}\u2028\u2029]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > 80 ? `${escaped.slice(0, 80)}…` : escaped;
}

/** A checkpoint file that cannot be written, or is refused on reading; the message is one line. */
export class CheckpointError extends SetupError {
  override readonly name = 'CheckpointError';
}

/** A JSON section (timings, description, or a JSON config). */
export function jsonSection(
  kind: Exclude<SectionKind, 'ram'>,
  name: string,
  value: unknown,
  version = 1,
  instance = 0,
): Section {
  return { kind, name, instance, version, payload: new TextEncoder().encode(JSON.stringify(value)) };
}

/** A JSON section's value; malformed JSON is a CheckpointError naming the section. */
export function parseJsonSection(section: Section): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(section.payload));
  } catch (e) {
    throw new CheckpointError(
      `section ${section.kind} '${printable(section.name)}' is not valid JSON: ${printable((e as Error).message)}`,
    );
  }
}

// ---- checksum --------------------------------------------------------------------------------------------------
// CRC-32 (zlib's polynomial) rather than SHA-256: on this host zlib.crc32 runs at ~2.4 GB/s over a 64 MiB buffer
// and SHA-256 (with SHA-NI) at ~1.1 GB/s, and a RAM section can be many GiB, so the CRC halves the cost of writing
// and verifying it. The checksum guards against corruption (truncation, bit rot, a torn copy), not tampering:
// anyone able to rewrite the file could recompute a SHA-256 just as well. Node has zlib.crc32 from 20.15 / 22.2;
// older Nodes fall back to the table below (same function, ~10x slower).

type Crc32 = (data: Uint8Array, value?: number) => number;

let table: Uint32Array | undefined;

/** Table-driven CRC-32 (reflected 0xEDB88320), continuing from `value` like zlib.crc32. */
export function tableCrc32(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

export const crc32: Crc32 = (zlib as { crc32?: Crc32 }).crc32 ?? tableCrc32;

// ---- the CRC of zeros without reading them ------------------------------------------------------------------------
// A CRC register advanced over zero bytes is a linear map (a 32x32 matrix over GF(2)), as zlib's crc32_combine uses.
// Guest RAM is mostly zeros: the writer leaves all-zero chunks as holes and both sides checksum them with this,
// so an idle 16 GiB snapshot costs a memcmp per chunk rather than a CRC pass (~13 GB/s against ~2.4 GB/s here).

/** The operator as 32 columns: column i is the image of bit i. */
type Gf2Matrix = Uint32Array;

function times(m: Gf2Matrix, v: number): number {
  let sum = 0;
  for (let i = 0; v !== 0; i++, v >>>= 1) if (v & 1) sum ^= m[i];
  return sum >>> 0;
}

function square(m: Gf2Matrix): Gf2Matrix {
  const out = new Uint32Array(32);
  for (let i = 0; i < 32; i++) out[i] = times(m, m[i]);
  return out;
}

const zeroOperators = new Map<number, Gf2Matrix>();

/** The register operator for `length` zero bytes (cached: the writer and reader use one chunk size). */
function zeroOperator(length: number): Gf2Matrix {
  let cached = zeroOperators.get(length);
  if (cached) return cached;
  let power: Gf2Matrix = new Uint32Array(32); // one zero bit: shift right, folding in the polynomial
  power[0] = 0xedb88320;
  for (let i = 1; i < 32; i++) power[i] = 1 << (i - 1);
  for (let i = 0; i < 3; i++) power = square(power); // one zero byte
  let result: Gf2Matrix | undefined;
  for (let n = length; n > 0; n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = result ? combineOps(result, power) : power;
    if (n > 1) power = square(power);
  }
  cached = result ?? identity();
  if (zeroOperators.size > 16) zeroOperators.clear();
  zeroOperators.set(length, cached);
  return cached;
}

function combineOps(a: Gf2Matrix, b: Gf2Matrix): Gf2Matrix {
  const out = new Uint32Array(32);
  for (let i = 0; i < 32; i++) out[i] = times(b, a[i]);
  return out;
}

function identity(): Gf2Matrix {
  const m = new Uint32Array(32);
  for (let i = 0; i < 32; i++) m[i] = (1 << i) >>> 0;
  return m;
}

/** crc32(new Uint8Array(length), value) without the zeros: the CRC is ~(M·~value), M the zero-byte operator. */
export function crc32Zeros(length: number, value = 0): number {
  return ~times(zeroOperator(length), ~value >>> 0) >>> 0;
}

/** Every byte zero: a memcmp of the chunk against itself shifted by one byte, and the first byte zero. */
export function isAllZero(chunk: Uint8Array): boolean {
  return (
    chunk.length === 0 ||
    (chunk[0] === 0 && Buffer.compare(chunk.subarray(0, chunk.length - 1), chunk.subarray(1)) === 0)
  );
}

/** crc32, taking the shortcut for an all-zero chunk. */
export function crc32Chunk(chunk: Uint8Array, value: number): { crc: number; zero: boolean } {
  const zero = isAllZero(chunk);
  return { crc: zero ? crc32Zeros(chunk.length, value) : crc32(chunk, value), zero };
}
