// The vmstate stream: one engine that encodes and decodes any descriptor (cpr/vmstate/vmstate.ts).
//
// Stream layout (little-endian), for a descriptor written at its current version:
//   body        = main fields in order, then zero or more subsection blocks up to the end of the body
//   scalar      = its bytes (bool: one byte, 0 or 1)
//   array       = `length` elements, or `record[lengthField]` elements for a variable array
//   struct      = u32 nested version, u32 body length, body
//   structArray = u32 nested version, then per element (all, or `lengthField` many): u32 body length, body
//   subsection  = u8 SUBSECTION_MARKER, u8 name length, name (UTF-8), u32 version, u32 payload length, payload
//                 (payload = the subsection's fields)
// The top-level version is not in the stream: the checkpoint section header carries it. Nested bodies carry their
// own version and length, so a nested descriptor evolves on its own and may have subsections of its own.
//
// Decoding never touches the record until the whole stream has been validated: it decodes into a scratch copy of
// the record (so fields the stream lacks keep the record's reset values), copies the scratch back, then runs the
// postLoad hooks, deepest first.
import { endianness } from 'node:os';
import {
  layoutOf,
  makeRecord,
  scalarSize,
  VmstateError,
  type Descriptor,
  type Layout,
  type PlacedField,
  type RecordInternals,
  type StateOf,
  type Hooks,
} from './vmstate.js';
import { u32At } from '../../src/util/le-bytes.js';

export { VmstateError } from './vmstate.js';

/** Starts a subsection block (QEMU_VM_SUBSECTION). */
export const SUBSECTION_MARKER = 0x05;
const U32_MAX = 0xffff_ffff;

// Records are typed arrays in host byte order; the stream is little-endian. tsvmm runs on x86-64 (KVM), where the
// two are the same, which is what lets the engine copy field bytes instead of converting them.
if (endianness() !== 'LE') throw new Error('cpr/vmstate/stream: the vmstate engine assumes a little-endian host');

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

// ---- descriptor checks (once per descriptor) -------------------------------------------------------------------

const checked = new WeakSet<Layout>();

/** Rejects descriptors the stream cannot represent: bad versions, a length field after its array, bad names. */
function checkDescriptor(layout: Layout): void {
  if (checked.has(layout)) return;
  const d = layout.descriptor;
  const bad = (problem: string): never => {
    throw new VmstateError(`vmstate ${d.name}: ${problem}`);
  };
  checkVersions(d.name, d.version, d.minVersion, bad);
  const mainNames = checkFieldList(layout.fields, d.version, new Set(), bad);
  const subNames = new Set<string>();
  for (const { subsection, fields } of layout.subsections) {
    const nameBytes = utf8Encoder.encode(subsection.name).length;
    if (nameBytes === 0 || nameBytes > 255) bad(`subsection name '${subsection.name}' must be 1-255 bytes of UTF-8`);
    if (subNames.has(subsection.name)) bad(`duplicate subsection '${subsection.name}'`);
    subNames.add(subsection.name);
    checkVersions(`${d.name} subsection '${subsection.name}'`, subsection.version, subsection.minVersion, bad);
    checkFieldList(fields, subsection.version, mainNames, bad);
  }
  checked.add(layout);
}

function checkVersions(what: string, version: number, minVersion: number | undefined, bad: (p: string) => never): void {
  if (!Number.isInteger(version) || version < 1 || version > U32_MAX)
    bad(`${what}: version ${version} must be an integer ≥ 1`);
  const min = minVersion ?? 1;
  if (!Number.isInteger(min) || min < 1 || min > version)
    bad(`${what}: minVersion ${min} must be within [1, ${version}]`);
}

/** Each field's `since` within the version; a length field must come before its array (the decoder needs it first). */
function checkFieldList(
  fields: readonly PlacedField[],
  version: number,
  before: ReadonlySet<string>,
  bad: (p: string) => never,
): Set<string> {
  const seen = new Set(before);
  for (const { field, layout } of fields) {
    const since = field.since ?? 1;
    if (!Number.isInteger(since) || since < 1 || since > version)
      bad(`field '${field.name}': since ${since} is outside [1, ${version}]`);
    if (
      (field.kind === 'array' || field.kind === 'structArray') &&
      field.lengthField !== undefined &&
      !seen.has(field.lengthField)
    ) {
      bad(`field '${field.name}': its length field '${field.lengthField}' must come before it`);
    }
    if (layout) checkDescriptor(layout);
    seen.add(field.name);
  }
  return seen;
}

// ---- encoding ----------------------------------------------------------------------------------------------------

class Writer {
  buf = new Uint8Array(256);
  pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    this.ensure(4);
    const b = this.buf;
    const p = this.pos;
    b[p] = v & 0xff;
    b[p + 1] = (v >>> 8) & 0xff;
    b[p + 2] = (v >>> 16) & 0xff;
    b[p + 3] = v >>> 24;
    this.pos += 4;
  }

  bytes(src: Uint8Array, from: number, length: number): void {
    this.ensure(length);
    if (length <= 16) for (let i = 0; i < length; i++) this.buf[this.pos + i] = src[from + i];
    else this.buf.set(src.subarray(from, from + length), this.pos);
    this.pos += length;
  }

  /** Room for a u32 written later by `patchU32` (the length of what follows). */
  reserveU32(): number {
    const at = this.pos;
    this.u32(0);
    return at;
  }

  patchU32(at: number, v: number): void {
    if (v > U32_MAX) throw new VmstateError(`vmstate: a nested body of ${v} bytes exceeds the 4 GiB stream limit`);
    const b = this.buf;
    b[at] = v & 0xff;
    b[at + 1] = (v >>> 8) & 0xff;
    b[at + 2] = (v >>> 16) & 0xff;
    b[at + 3] = v >>> 24;
  }
}

type AnyRecord = RecordInternals & Record<string, unknown>;

const byteViews = new WeakMap<ArrayBufferLike, Uint8Array>();
function bytesOf(buffer: ArrayBufferLike): Uint8Array {
  let v = byteViews.get(buffer);
  if (!v) {
    v = new Uint8Array(buffer);
    byteViews.set(buffer, v);
  }
  return v;
}

/** The record's state as a vmstate stream (runs preSave hooks first, then each needed subsection's). */
export function encodeRecord<D extends Descriptor>(descriptor: D, record: StateOf<D>): Uint8Array {
  const rec = record as unknown as AnyRecord;
  if (rec.$layout?.descriptor !== descriptor) {
    throw new VmstateError(
      `vmstate ${descriptor.name}: the record given to encodeRecord is not a ${descriptor.name} record`,
    );
  }
  checkDescriptor(rec.$layout);
  const w = new Writer();
  encodeBody(w, rec, descriptor.name);
  return w.buf.slice(0, w.pos);
}

function encodeBody(w: Writer, rec: AnyRecord, path: string): void {
  const layout = rec.$layout;
  layout.descriptor.preSave?.(rec);
  encodeFields(w, rec, layout.fields, path);
  for (const { subsection, fields } of layout.subsections) {
    if (!subsection.needed(rec)) continue;
    subsection.preSave?.(rec);
    const name = utf8Encoder.encode(subsection.name);
    w.u8(SUBSECTION_MARKER);
    w.u8(name.length);
    w.bytes(name, 0, name.length);
    w.u32(subsection.version);
    const lengthAt = w.reserveU32();
    encodeFields(w, rec, fields, `${path}{${subsection.name}}`);
    w.patchU32(lengthAt, w.pos - lengthAt - 4);
  }
}

function encodeFields(w: Writer, rec: AnyRecord, fields: readonly PlacedField[], path: string): void {
  const src = bytesOf(rec.$buffer);
  for (const placed of fields) {
    const { field } = placed;
    const at = rec.$offset + placed.offset;
    switch (field.kind) {
      case 'scalar':
        if (field.type === 'bool') w.u8(src[at] !== 0 ? 1 : 0);
        else w.bytes(src, at, scalarSize[field.type]);
        break;
      case 'array': {
        const n = usedLength(rec, field.name, field.length, field.lengthField, path);
        w.bytes(src, at, n * scalarSize[field.type]);
        break;
      }
      case 'struct': {
        w.u32(field.descriptor.version);
        const lengthAt = w.reserveU32();
        encodeBody(w, rec[field.name] as AnyRecord, `${path}.${field.name}`);
        w.patchU32(lengthAt, w.pos - lengthAt - 4);
        break;
      }
      case 'structArray': {
        const n = usedLength(rec, field.name, field.length, field.lengthField, path);
        const elements = rec[field.name] as AnyRecord[];
        w.u32(field.descriptor.version);
        for (let i = 0; i < n; i++) {
          const lengthAt = w.reserveU32();
          encodeBody(w, elements[i], `${path}.${field.name}[${i}]`);
          w.patchU32(lengthAt, w.pos - lengthAt - 4);
        }
        break;
      }
    }
  }
}

function usedLength(
  rec: AnyRecord,
  name: string,
  capacity: number,
  lengthField: string | undefined,
  path: string,
): number {
  if (lengthField === undefined) return capacity;
  const n = rec[lengthField] as number;
  if (n < 0 || n > capacity) {
    throw new VmstateError(
      `vmstate ${path}: field '${name}': length field '${lengthField}' is ${n}, outside its capacity of ${capacity}`,
    );
  }
  return n;
}

// ---- decoding ----------------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

interface DecodeContext {
  readonly root: string;
  readonly src: Uint8Array;
  pos: number;
  /** The scratch record's bytes. */
  readonly dst: Uint8Array;
  /** postLoad hooks to run on the live record, in order: where the state is (steps from the root) and the version. */
  readonly hooks: { hooks: Hooks; steps: readonly (string | number)[]; version: number }[];
  /** check hooks to run on the decoded scratch record before anything is committed (same shape). */
  readonly checks: { hooks: Hooks; steps: readonly (string | number)[]; version: number }[];
}

function fail(ctx: DecodeContext, path: string, problem: string): never {
  throw new VmstateError(`vmstate ${ctx.root}: ${path ? `field '${path}': ` : ''}${problem}`);
}

function need(ctx: DecodeContext, end: number, n: number, path: string): void {
  if (n > end - ctx.pos)
    fail(ctx, path, `stream ends at byte ${end}, ${n - (end - ctx.pos)} bytes short (needs ${n} at byte ${ctx.pos})`);
}

function readU32(ctx: DecodeContext, end: number, path: string): number {
  need(ctx, end, 4, path);
  const value = u32At(ctx.src, ctx.pos);
  ctx.pos += 4;
  return value;
}

function checkVersion(
  ctx: DecodeContext,
  path: string,
  what: string,
  version: number,
  min: number | undefined,
  max: number,
): void {
  if (version < (min ?? 1))
    fail(ctx, path, `${what} stream version ${version} is older than the oldest supported (${min ?? 1})`);
  if (version > max) fail(ctx, path, `${what} stream version ${version} is newer than this tsvmm supports (${max})`);
}

/** Validates `bytes` as a `streamVersion` stream of `descriptor` and only then loads it into `record`, then postLoad. */
export function decodeInto<D extends Descriptor>(
  descriptor: D,
  bytes: Uint8Array,
  streamVersion: number,
  record: StateOf<D>,
): void {
  prepareDecode(descriptor, bytes, streamVersion, record)();
}

/**
 * The two halves of decodeInto, for a loader that must check every section before it changes anything: this
 * validates and decodes into a scratch copy of `record` now (throwing VmstateError), and returns the commit that
 * copies the result into `record` and runs postLoad. `record` must not change in between.
 */
export function prepareDecode<D extends Descriptor>(
  descriptor: D,
  bytes: Uint8Array,
  streamVersion: number,
  record: StateOf<D>,
): () => void {
  const rec = record as unknown as AnyRecord;
  if (rec.$layout?.descriptor !== descriptor) {
    throw new VmstateError(`vmstate ${descriptor.name}: the record to decode into is not a ${descriptor.name} record`);
  }
  const live = new Uint8Array(rec.$buffer, rec.$offset, rec.$layout.size);
  const scratch = scratchFor(rec, descriptor);
  scratch.bytes.set(live);
  const ctx = decodeScratch(
    descriptor,
    bytes,
    streamVersion,
    scratch.bytes.buffer as ArrayBuffer,
    undefined,
    scratch.record,
  );
  for (const { hooks, steps, version } of ctx.checks) {
    try {
      hooks.check!(stateAt(scratch.record, steps), version);
    } catch (e) {
      const where = steps.length ? ` at ${steps.join('.')}` : '';
      throw new VmstateError(`vmstate ${descriptor.name}${where}: ${(e as Error).message}`);
    }
  }
  return () => {
    live.set(scratch.bytes);
    for (const { hooks, steps, version } of ctx.hooks) hooks.postLoad!(stateAt(rec, steps), version);
  };
}

/** The nested state `steps` lead to from a record (a struct field, a struct array element). */
function stateAt(rec: unknown, steps: readonly (string | number)[]): unknown {
  let state = rec;
  for (const step of steps) state = (state as Record<string, unknown>)[step];
  return state;
}

/** The stream as plain JSON: bigints as numbers when safe else strings, byte arrays as hex, subsections by name. */
export function decodeToJson(descriptor: Descriptor, bytes: Uint8Array, streamVersion: number): unknown {
  const json: Json = {};
  decodeScratch(descriptor, bytes, streamVersion, new ArrayBuffer(layoutOf(descriptor).size), json);
  return json;
}

/**
 * The scratch copy a record is decoded into before commit, made once per live record: building a record's accessor
 * objects costs ~0.7 ms for a vCPU, too much for a restore inside a guest's pause. A new prepareDecode of the same
 * record reuses (and so invalidates) the previous one's scratch: commit or drop one before preparing the next.
 */
const scratches = new WeakMap<object, { bytes: Uint8Array; record: AnyRecord }>();
function scratchFor(rec: AnyRecord, descriptor: Descriptor): { bytes: Uint8Array; record: AnyRecord } {
  let s = scratches.get(rec);
  if (!s) {
    const buffer = new ArrayBuffer(rec.$layout.size);
    s = { bytes: new Uint8Array(buffer), record: makeRecord(descriptor, buffer) as unknown as AnyRecord };
    scratches.set(rec, s);
  }
  return s;
}

function decodeScratch(
  descriptor: Descriptor,
  bytes: Uint8Array,
  streamVersion: number,
  scratch: ArrayBuffer,
  json?: Json,
  record?: AnyRecord,
): DecodeContext {
  const layout = layoutOf(descriptor);
  checkDescriptor(layout);
  const ctx: DecodeContext = {
    root: descriptor.name,
    src: bytes,
    pos: 0,
    dst: new Uint8Array(scratch),
    hooks: [],
    checks: [],
  };
  if (!Number.isInteger(streamVersion)) fail(ctx, '', `stream version ${streamVersion} is not an integer`);
  checkVersion(ctx, '', descriptor.name, streamVersion, descriptor.minVersion, descriptor.version);
  decodeBody(
    ctx,
    record ?? (makeRecord(descriptor, scratch) as unknown as AnyRecord),
    streamVersion,
    bytes.length,
    '',
    [],
    json,
  );
  return ctx;
}

function decodeBody(
  ctx: DecodeContext,
  rec: AnyRecord,
  version: number,
  end: number,
  path: string,
  steps: readonly (string | number)[],
  json?: Json,
): void {
  const layout = rec.$layout;
  decodeFields(ctx, rec, layout.fields, version, end, path, steps, json);
  const seen = new Set<string>();
  while (ctx.pos < end) {
    const at = ctx.pos;
    const marker = ctx.src[ctx.pos++];
    if (marker !== SUBSECTION_MARKER) {
      fail(
        ctx,
        path,
        `unexpected byte 0x${marker.toString(16).padStart(2, '0')} at byte ${at} after the fields (expected a subsection or the end)`,
      );
    }
    need(ctx, end, 1, path);
    const nameLength = ctx.src[ctx.pos++];
    need(ctx, end, nameLength, path);
    let name: string;
    try {
      name = utf8Decoder.decode(ctx.src.subarray(ctx.pos, ctx.pos + nameLength));
    } catch {
      fail(ctx, path, `subsection name at byte ${ctx.pos} is not valid UTF-8`);
    }
    ctx.pos += nameLength;
    const entry = layout.subsections.find((s) => s.subsection.name === name);
    if (!entry) fail(ctx, path, `unknown subsection '${JSON.stringify(name).slice(1, -1)}' at byte ${at}`);
    if (seen.has(name)) fail(ctx, path, `subsection '${name}' appears twice (again at byte ${at})`);
    seen.add(name);
    const subPath = `${path}{${name}}`;
    const subVersion = readU32(ctx, end, subPath);
    checkVersion(
      ctx,
      subPath,
      `subsection '${name}'`,
      subVersion,
      entry.subsection.minVersion,
      entry.subsection.version,
    );
    const length = readU32(ctx, end, subPath);
    need(ctx, end, length, subPath);
    const subEnd = ctx.pos + length;
    const subJson: Json | undefined = json ? { $version: subVersion } : undefined;
    decodeFields(ctx, rec, entry.fields, subVersion, subEnd, subPath, steps, subJson);
    if (ctx.pos !== subEnd)
      fail(ctx, subPath, `${subEnd - ctx.pos} bytes left over at the end of subsection '${name}'`);
    if (json) {
      json.$subsections ??= {};
      (json.$subsections as Json)[name] = subJson;
    }
    if (entry.subsection.postLoad) ctx.hooks.push({ hooks: entry.subsection, steps, version: subVersion });
    if (entry.subsection.check) ctx.checks.push({ hooks: entry.subsection, steps, version: subVersion });
  }
  if (layout.descriptor.postLoad) ctx.hooks.push({ hooks: layout.descriptor, steps, version });
  if (layout.descriptor.check) ctx.checks.push({ hooks: layout.descriptor, steps, version });
}

function decodeFields(
  ctx: DecodeContext,
  rec: AnyRecord,
  fields: readonly PlacedField[],
  version: number,
  end: number,
  path: string,
  steps: readonly (string | number)[],
  json?: Json,
): void {
  for (const placed of fields) {
    const { field } = placed;
    if ((field.since ?? 1) > version) continue; // not in a stream this old: keeps the record's reset value
    const fieldPath = path ? `${path}.${field.name}` : field.name;
    const at = rec.$offset + placed.offset;
    switch (field.kind) {
      case 'scalar': {
        const size = scalarSize[field.type];
        need(ctx, end, size, fieldPath);
        if (field.type === 'bool' && ctx.src[ctx.pos] > 1)
          fail(ctx, fieldPath, `bool byte at ${ctx.pos} is ${ctx.src[ctx.pos]}, not 0 or 1`);
        ctx.dst.set(ctx.src.subarray(ctx.pos, ctx.pos + size), at);
        ctx.pos += size;
        if (json) json[field.name] = jsonScalar(rec[field.name]);
        break;
      }
      case 'array': {
        const n = streamLength(ctx, rec, field.lengthField, field.length, fieldPath);
        const size = n * scalarSize[field.type];
        need(ctx, end, size, fieldPath);
        ctx.dst.set(ctx.src.subarray(ctx.pos, ctx.pos + size), at);
        ctx.pos += size;
        if (json) {
          const values = (rec[field.name] as Uint8Array).subarray(0, n);
          json[field.name] =
            field.type === 'u8'
              ? Buffer.from(values.buffer, values.byteOffset, n).toString('hex')
              : Array.from(values as ArrayLike<number | bigint>, jsonScalar);
        }
        break;
      }
      case 'struct': {
        const nested = decodeNested(ctx, field.descriptor, end, fieldPath);
        const nestedJson: Json | undefined = json ? {} : undefined;
        decodeNestedBody(ctx, rec[field.name] as AnyRecord, nested, end, fieldPath, [...steps, field.name], nestedJson);
        if (json) json[field.name] = nestedJson;
        break;
      }
      case 'structArray': {
        const n = streamLength(ctx, rec, field.lengthField, field.length, fieldPath);
        const nested = decodeNested(ctx, field.descriptor, end, fieldPath);
        const list: Json[] = [];
        const elements = rec[field.name] as AnyRecord[];
        for (let i = 0; i < n; i++) {
          const elementJson: Json | undefined = json ? {} : undefined;
          decodeNestedBody(ctx, elements[i], nested, end, `${fieldPath}[${i}]`, [...steps, field.name, i], elementJson);
          if (elementJson) list.push(elementJson);
        }
        if (json) json[field.name] = list;
        break;
      }
    }
  }
}

/** The element count of a variable array, read from its (already decoded, or reset) length field and checked. */
function streamLength(
  ctx: DecodeContext,
  rec: AnyRecord,
  lengthField: string | undefined,
  capacity: number,
  path: string,
): number {
  if (lengthField === undefined) return capacity;
  const n = rec[lengthField] as number;
  if (n < 0 || n > capacity)
    fail(ctx, path, `length field '${lengthField}' is ${n}, outside its capacity of ${capacity}`);
  return n;
}

function decodeNested(ctx: DecodeContext, descriptor: Descriptor, end: number, path: string): number {
  const version = readU32(ctx, end, path);
  checkVersion(ctx, path, descriptor.name, version, descriptor.minVersion, descriptor.version);
  return version;
}

function decodeNestedBody(
  ctx: DecodeContext,
  rec: AnyRecord,
  version: number,
  end: number,
  path: string,
  steps: readonly (string | number)[],
  json?: Json,
): void {
  const length = readU32(ctx, end, path);
  need(ctx, end, length, path);
  const bodyEnd = ctx.pos + length;
  decodeBody(ctx, rec, version, bodyEnd, path, steps, json);
  if (ctx.pos !== bodyEnd)
    fail(ctx, path, `${bodyEnd - ctx.pos} bytes left over at the end of the nested ${rec.$layout.descriptor.name}`);
}

/** A JSON-safe scalar: bigints become numbers when exactly representable, else decimal strings. */
export function jsonScalar(v: unknown): unknown {
  if (typeof v !== 'bigint') return v;
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}
