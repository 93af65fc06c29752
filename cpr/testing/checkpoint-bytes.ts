// Test support: checkpoint files built byte by byte (to craft exactly the malformed file a test wants), the checksum
// fixed up after a mutation, and the section map of a well-formed file (for the fuzzer to aim at headers).
import { MAGIC, FORMAT_VERSION, SECTION_KINDS, crc32 } from '../file/format.js';

export interface RawSection {
  readonly code: number;
  readonly name?: string | Uint8Array;
  readonly instance?: number;
  readonly version?: number;
  readonly payload?: Uint8Array;
  /** The payload length the header claims, when it should differ from the payload's. */
  readonly claimedLength?: bigint;
}

export interface RawOptions {
  readonly magic?: Uint8Array;
  readonly formatVersion?: number;
  /** Append the end marker (default true). */
  readonly end?: boolean;
  /** Append the trailer (default true), with the right checksum unless `checksum` is given. */
  readonly trailer?: boolean;
  readonly checksum?: number;
}

export const CONFIG = (payload = new TextEncoder().encode('{"ram":1}')): RawSection => ({
  code: SECTION_KINDS.config,
  name: 'config',
  payload,
});

export function rawSectionBytes(s: RawSection): Uint8Array {
  const name = typeof s.name === 'string' || s.name === undefined ? new TextEncoder().encode(s.name ?? '') : s.name;
  const payload = s.payload ?? new Uint8Array(0);
  const out = new Uint8Array(19 + name.length + payload.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, s.code);
  v.setUint16(1, name.length, true);
  out.set(name, 3);
  v.setUint32(3 + name.length, s.instance ?? 0, true);
  v.setUint32(7 + name.length, s.version ?? 1, true);
  v.setBigUint64(11 + name.length, s.claimedLength ?? BigInt(payload.length), true);
  out.set(payload, 19 + name.length);
  return out;
}

/** A checkpoint file's bytes: header, the sections as given, end marker and trailer unless told otherwise. */
export function rawCheckpoint(sections: readonly RawSection[], opts: RawOptions = {}): Uint8Array {
  const header = new Uint8Array(12);
  header.set(opts.magic ?? MAGIC);
  new DataView(header.buffer).setUint32(8, opts.formatVersion ?? FORMAT_VERSION, true);
  const parts = [header, ...sections.map(rawSectionBytes)];
  if (opts.end ?? true) parts.push(rawSectionBytes({ code: SECTION_KINDS.end, version: 0 }));
  const body = concat(parts);
  if (opts.trailer === false) return body;
  const trailer = new Uint8Array(4);
  new DataView(trailer.buffer).setUint32(0, opts.checksum ?? crc32(body), true);
  return concat([body, trailer]);
}

/** The same bytes with the trailer recomputed over everything before it (a mutation the checksum cannot catch). */
export function withFixedChecksum(file: Uint8Array): Uint8Array {
  const out = new Uint8Array(file); // a copy, even of a Buffer (whose slice() is a view)
  if (out.length < 4) return out;
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

export interface SectionSpan {
  readonly code: number;
  /** File offset of the section header. */
  readonly start: number;
  /** File offset of its payload-length field (u64). */
  readonly lengthAt: number;
  readonly payloadStart: number;
  /** One past the payload. */
  readonly end: number;
}

/** Where each section of a well-formed file lies (the end marker included, as the last span). */
export function sectionSpans(file: Uint8Array): SectionSpan[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const spans: SectionSpan[] = [];
  for (let at = 12; ; ) {
    const code = v.getUint8(at);
    const nameLength = v.getUint16(at + 1, true);
    const lengthAt = at + 11 + nameLength;
    const payloadStart = lengthAt + 8;
    const end = payloadStart + Number(v.getBigUint64(lengthAt, true));
    spans.push({ code, start: at, lengthAt, payloadStart, end });
    if (code === SECTION_KINDS.end) return spans;
    at = end;
  }
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
