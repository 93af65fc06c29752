// vmstate descriptors: a declarative description of a device's state, in the spirit of QEMU's VMStateDescription.
//
// A descriptor is data. From it this module computes a fixed binary layout, and `StateRecord` gives typed
// accessors over that layout inside a SharedArrayBuffer. The same record is therefore the device's live state (seen
// by every vCPU thread and the main thread) and exactly what a checkpoint copies. Subsection fields live in the same
// record; a subsection only decides what a checkpoint writes.
import { alignUp } from '../../src/util/align.js';
import { SetupError } from '../../src/util/setup-error.js';

export type IntType = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64';
export type ScalarType = IntType | 'bool';

type BigType = 'u64' | 'i64';
export type ScalarValue<T extends ScalarType> = T extends BigType ? bigint : T extends 'bool' ? boolean : number;

export type TypedArrayOf<T extends IntType> = T extends 'u8'
  ? Uint8Array
  : T extends 'u16'
    ? Uint16Array
    : T extends 'u32'
      ? Uint32Array
      : T extends 'u64'
        ? BigUint64Array
        : T extends 'i8'
          ? Int8Array
          : T extends 'i16'
            ? Int16Array
            : T extends 'i32'
              ? Int32Array
              : BigInt64Array;

interface FieldBase<N extends string> {
  readonly name: N;
  /** The descriptor version that introduced this field; loading an older stream leaves it at its reset value. */
  readonly since?: number;
}

export interface ScalarField<N extends string = string, T extends ScalarType = ScalarType> extends FieldBase<N> {
  readonly kind: 'scalar';
  readonly type: T;
}

/** A fixed array of integers, or a variable one: `lengthField` names the scalar that holds how many are in use. */
export interface ArrayField<N extends string = string, T extends IntType = IntType> extends FieldBase<N> {
  readonly kind: 'array';
  readonly type: T;
  readonly length: number;
  readonly lengthField?: string;
}

export interface StructField<N extends string = string, D extends Descriptor = Descriptor> extends FieldBase<N> {
  readonly kind: 'struct';
  readonly descriptor: D;
}

export interface StructArrayField<N extends string = string, D extends Descriptor = Descriptor> extends FieldBase<N> {
  readonly kind: 'structArray';
  readonly descriptor: D;
  readonly length: number;
  readonly lengthField?: string;
}

export type Field = ScalarField | ArrayField | StructField | StructArrayField;

/**
 * Pure state fix-ups around a checkpoint (QEMU's pre_save / post_load). They see only the record: side effects on
 * the outside world (re-raising an interrupt line, re-arming a host timer) belong in the device's `restored()`.
 */
// biome-ignore lint/suspicious/noExplicitAny: hooks take the descriptor's own record type, which `unknown` would refuse
export interface Hooks<S = any> {
  /** Runs on the live record just before it is encoded (e.g. fold a derived value into a saved field). */
  readonly preSave?: (state: S) => void;
  /** Runs after a stream was fully validated and copied into the record; `streamVersion` is what wrote it. */
  readonly postLoad?: (state: S, streamVersion: number) => void;
  /**
   * Refuses a record that decoded but cannot be right — an index beyond its array, a count beyond its capacity —
   * by throwing (see `within`). It sees the decoded copy before the live record changes, so a refused checkpoint
   * leaves the device as it was: a restore checks every section this way before it commits any.
   */
  readonly check?: (state: S, streamVersion: number) => void;
}

/** For `check` hooks: refuses `value` unless it is an integer in 0..max, naming the field and the limit's reason. */
export function within(value: number, max: number, field: string, why: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max)
    throw new VmstateError(`field '${field}' is ${value}, beyond ${max} (${why})`);
}

export interface Descriptor<
  F extends readonly Field[] = readonly Field[],
  S extends readonly Subsection[] = readonly Subsection[],
> extends Hooks {
  readonly name: string;
  readonly version: number;
  /** The oldest stream version this descriptor can still load (1 when absent: `since` keeps older streams readable). */
  readonly minVersion?: number;
  readonly fields: F;
  /** Optional parts written only when `needed` says so (QEMU subsections). Their fields share the record. */
  readonly subsections?: S;
}

export interface Subsection<F extends readonly Field[] = readonly Field[]> extends Hooks {
  readonly name: string;
  readonly version: number;
  readonly minVersion?: number;
  readonly fields: F;
  // biome-ignore lint/suspicious/noExplicitAny: as in Hooks, the predicate takes the descriptor's own record type
  readonly needed: (state: any) => boolean;
}

/** A descriptor, a stream or a value that vmstate cannot accept; the message names the descriptor and the field. */
export class VmstateError extends SetupError {
  override readonly name = 'VmstateError';
}

// ---- field constructors -------------------------------------------------------------------------------------

type Opts = { since?: number };
const scalar =
  <T extends ScalarType>(type: T) =>
  <N extends string>(name: N, opts: Opts = {}): ScalarField<N, T> => ({ kind: 'scalar', name, type, ...opts });

export const u8 = scalar('u8');
export const u16 = scalar('u16');
export const u32 = scalar('u32');
export const u64 = scalar('u64');
export const i8 = scalar('i8');
export const i16 = scalar('i16');
export const i32 = scalar('i32');
export const i64 = scalar('i64');
export const bool = scalar('bool');

/** `array('regs', 'u32', 16)` — a fixed array; with `{ lengthField: 'count' }` only `count` entries are saved. */
export function array<N extends string, T extends IntType>(
  name: N,
  type: T,
  length: number,
  opts: Opts & { lengthField?: string } = {},
): ArrayField<N, T> {
  return { kind: 'array', name, type, length, ...opts };
}

/** A byte buffer of at most `max` bytes whose used length lives in `lengthField`. */
export function bytes<N extends string>(
  name: N,
  max: number,
  opts: Opts & { lengthField?: string } = {},
): ArrayField<N, 'u8'> {
  return array(name, 'u8', max, opts);
}

export function struct<N extends string, D extends Descriptor>(
  name: N,
  descriptor: D,
  opts: Opts = {},
): StructField<N, D> {
  return { kind: 'struct', name, descriptor, ...opts };
}

export function structArray<N extends string, D extends Descriptor>(
  name: N,
  descriptor: D,
  length: number,
  opts: Opts & { lengthField?: string } = {},
): StructArrayField<N, D> {
  return { kind: 'structArray', name, descriptor, length, ...opts };
}

/**
 * A UTF-8 string of at most `max` bytes: `fields: [..., ...str('path', 4096)]` declares the bytes `path` and their
 * length `pathLength` (u32, placed first so a stream carries the length before the bytes). Read and write it with
 * `getString` / `setString`.
 */
export function str<N extends string>(
  name: N,
  max: number,
  opts: Opts = {},
): readonly [ScalarField<`${N}Length`, 'u32'>, ArrayField<N, 'u8'>] {
  const lengthField = `${name}Length` as const;
  return [u32(lengthField, opts), bytes(name, max, { ...opts, lengthField })] as const;
}

/** The descriptor with typed hooks: `withHooks(fields, { postLoad(s, v) { … } })` (inline hooks cannot name StateOf). */
export function withHooks<D extends Descriptor>(descriptor: D, hooks: Hooks<StateOf<D>>): D {
  return { ...descriptor, ...hooks };
}

// ---- the state type a descriptor describes ------------------------------------------------------------------

type ValueOf<F> =
  F extends ScalarField<string, infer T>
    ? ScalarValue<T>
    : F extends ArrayField<string, infer T>
      ? TypedArrayOf<T>
      : F extends StructField<string, infer D>
        ? StateOf<D>
        : F extends StructArrayField<string, infer D>
          ? readonly StateOf<D>[]
          : never;

type FieldsState<F extends readonly Field[]> = { -readonly [K in F[number] as K['name']]: ValueOf<K> };
// A descriptor without `subsections` infers the constraint `readonly Subsection[]` (not a tuple): it adds nothing,
// rather than an index signature that would let any property name through.
type SubsectionsState<S> = S extends readonly Subsection[]
  ? number extends S['length']
    ? unknown
    : UnionToIntersection<{ [I in keyof S]: S[I] extends Subsection<infer F> ? FieldsState<F> : never }[number]>
  : unknown;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/** The live state a descriptor describes: scalars as numbers/bigints/booleans, arrays as typed-array views. */
export type StateOf<D> =
  D extends Descriptor<infer F, infer S>
    ? FieldsState<F> & (unknown extends SubsectionsState<S> ? unknown : SubsectionsState<S>) & RecordInternals
    : never;

export interface RecordInternals {
  readonly $layout: Layout;
  readonly $buffer: SharedArrayBuffer | ArrayBuffer;
  readonly $offset: number;
}

// ---- layout ---------------------------------------------------------------------------------------------------

/** Bytes per scalar, in the record and in the stream alike. */
export const scalarSize: Record<ScalarType, number> = {
  u8: 1,
  i8: 1,
  bool: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  u64: 8,
  i64: 8,
};

export interface PlacedField {
  readonly field: Field;
  readonly offset: number;
  readonly size: number;
  /** For nested structs: the nested layout. */
  readonly layout?: Layout;
  /** For struct arrays: the stride between elements. */
  readonly stride?: number;
}

export interface Layout {
  readonly descriptor: Descriptor;
  readonly size: number;
  readonly align: number;
  /** Main fields, in order. */
  readonly fields: readonly PlacedField[];
  /** Each subsection's fields, in order. */
  readonly subsections: readonly { readonly subsection: Subsection; readonly fields: readonly PlacedField[] }[];
  readonly byName: ReadonlyMap<string, PlacedField>;
}

const layouts = new WeakMap<Descriptor, Layout>();

/** The fixed layout of a descriptor: every field at its natural alignment, record size a multiple of 8. */
export function layoutOf(descriptor: Descriptor): Layout {
  const cached = layouts.get(descriptor);
  if (cached) return cached;
  let offset = 0;
  let align = 1;
  const byName = new Map<string, PlacedField>();
  const place = (fields: readonly Field[]): PlacedField[] =>
    fields.map((field) => {
      if (byName.has(field.name)) throw new Error(`vmstate ${descriptor.name}: duplicate field '${field.name}'`);
      let size: number;
      let a: number;
      let nested: Layout | undefined;
      let stride: number | undefined;
      switch (field.kind) {
        case 'scalar':
          size = a = scalarSize[field.type];
          break;
        case 'array':
          a = scalarSize[field.type];
          size = a * checkedLength(descriptor, field);
          break;
        case 'struct':
          nested = layoutOf(field.descriptor);
          a = nested.align;
          size = nested.size;
          break;
        case 'structArray':
          nested = layoutOf(field.descriptor);
          a = nested.align;
          stride = nested.size;
          size = stride * checkedLength(descriptor, field);
          break;
      }
      offset = alignUp(offset, a);
      align = Math.max(align, a);
      const placed: PlacedField = { field, offset, size, layout: nested, stride };
      byName.set(field.name, placed);
      offset += size;
      return placed;
    });
  const fields = place(descriptor.fields);
  const subsections = (descriptor.subsections ?? []).map((subsection) => ({
    subsection,
    fields: place(subsection.fields),
  }));
  for (const placed of byName.values()) checkLengthField(descriptor, placed.field, byName);
  const layout: Layout = {
    descriptor,
    size: alignUp(Math.max(offset, 1), 8),
    align: Math.max(align, 8),
    fields,
    subsections,
    byName,
  };
  layouts.set(descriptor, layout);
  return layout;
}

function checkedLength(d: Descriptor, f: ArrayField | StructArrayField): number {
  if (!Number.isInteger(f.length) || f.length < 0)
    throw new Error(`vmstate ${d.name}: field '${f.name}' has bad length ${f.length}`);
  return f.length;
}

function checkLengthField(d: Descriptor, f: Field, byName: Map<string, PlacedField>): void {
  if ((f.kind !== 'array' && f.kind !== 'structArray') || f.lengthField === undefined) return;
  const lf = byName.get(f.lengthField);
  if (lf?.field.kind !== 'scalar' || lf.field.type === 'bool' || lf.field.type === 'u64' || lf.field.type === 'i64') {
    throw new Error(`vmstate ${d.name}: length field '${f.lengthField}' of '${f.name}' must be a u8/u16/u32 scalar`);
  }
}

// ---- records: typed accessors over a buffer -------------------------------------------------------------------

interface Views {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  u32: Uint32Array;
  i32: Int32Array;
  u64: BigUint64Array;
  i64: BigInt64Array;
}

const viewCache = new WeakMap<ArrayBufferLike, Views>();
function viewsOf(buffer: ArrayBufferLike): Views {
  let v = viewCache.get(buffer);
  if (!v) {
    const n8 = Math.floor(buffer.byteLength / 8) * 8;
    v = {
      u8: new Uint8Array(buffer),
      i8: new Int8Array(buffer),
      u16: new Uint16Array(buffer, 0, Math.floor(buffer.byteLength / 2)),
      i16: new Int16Array(buffer, 0, Math.floor(buffer.byteLength / 2)),
      u32: new Uint32Array(buffer, 0, Math.floor(buffer.byteLength / 4)),
      i32: new Int32Array(buffer, 0, Math.floor(buffer.byteLength / 4)),
      u64: new BigUint64Array(buffer, 0, n8 / 8),
      i64: new BigInt64Array(buffer, 0, n8 / 8),
    };
    viewCache.set(buffer, v);
  }
  return v;
}

const typedArrayCtor = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
} as const;
/** Any one of them over part of a buffer (TypeScript cannot call the union of their constructors). */
type TypedArrayCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayBufferView;

const prototypes = new WeakMap<Layout, object>();

/** A prototype whose accessors read and write the layout's fields; instances carry only buffer and base offset. */
function prototypeFor(layout: Layout): object {
  let proto = prototypes.get(layout);
  if (proto) return proto;
  proto = {};
  for (const placed of layout.byName.values()) {
    const { field, offset } = placed;
    if (field.kind === 'scalar') {
      const type = field.type;
      const shift = Math.log2(scalarSize[type]);
      const views = type === 'bool' ? 'u8' : type;
      Object.defineProperty(
        proto,
        field.name,
        type === 'bool'
          ? {
              get(this: RecordImpl) {
                return this.$v.u8[this.$offset + offset] !== 0;
              },
              set(this: RecordImpl, value: boolean) {
                this.$v.u8[this.$offset + offset] = value ? 1 : 0;
              },
            }
          : {
              get(this: RecordImpl) {
                return this.$v[views][(this.$offset + offset) >> shift];
              },
              set(this: RecordImpl, value: number | bigint) {
                (this.$v[views] as Record<number, number | bigint>)[(this.$offset + offset) >> shift] = value;
              },
            },
      );
    }
    // Arrays and nested records are created per instance (see makeRecord): they are views, not values.
  }
  prototypes.set(layout, proto);
  return proto;
}

interface RecordImpl extends RecordInternals {
  $v: Views;
}

/** A record over `buffer` at `offset` (which must be 8-byte aligned and leave room for the layout's size). */
export function makeRecord<D extends Descriptor>(
  descriptor: D,
  buffer: SharedArrayBuffer | ArrayBuffer,
  offset = 0,
): StateOf<D> {
  const layout = layoutOf(descriptor);
  if (offset % 8 !== 0 || offset < 0 || offset + layout.size > buffer.byteLength) {
    throw new RangeError(
      `vmstate ${descriptor.name}: record of ${layout.size} bytes does not fit at offset ${offset} of ${buffer.byteLength}`,
    );
  }
  const record = Object.create(prototypeFor(layout)) as RecordImpl & Record<string, unknown>;
  Object.defineProperties(record, {
    $layout: { value: layout },
    $buffer: { value: buffer },
    $offset: { value: offset },
    $v: { value: viewsOf(buffer) },
  });
  for (const placed of layout.byName.values()) {
    const { field } = placed;
    const at = offset + placed.offset;
    let value: unknown;
    if (field.kind === 'array') value = new (typedArrayCtor[field.type] as TypedArrayCtor)(buffer, at, field.length);
    else if (field.kind === 'struct') value = makeRecord(field.descriptor, buffer, at);
    else if (field.kind === 'structArray') value = recordList(placed, buffer, at);
    else continue;
    Object.defineProperty(record, field.name, { value, enumerable: true });
  }
  return record as unknown as StateOf<D>;
}

/**
 * A struct array's elements, made on first access: a vCPU record has 784 element slots (CPUID entries, MSRs,
 * XCRs) of which a few dozen are used, and building them all took ~1 ms per record — inside a restore's pause.
 * Index access, `length`, iteration and Array methods work as on an array; elements are read-only slots.
 */
const listPrototypes = new WeakMap<PlacedField, object>();
interface RecordList {
  $items: unknown[];
  $buffer: SharedArrayBuffer | ArrayBuffer;
  $at: number;
}
function recordList(placed: PlacedField, buffer: SharedArrayBuffer | ArrayBuffer, at: number): unknown {
  let proto = listPrototypes.get(placed);
  if (!proto) {
    const field = placed.field as StructArrayField;
    const stride = placed.stride!;
    // Array.prototype's methods are generic: iteration, map, forEach… work over the index getters.
    const made: object = Object.create(Array.prototype, { length: { value: field.length } });
    for (let i = 0; i < field.length; i++) {
      Object.defineProperty(made, i, {
        enumerable: true,
        get(this: RecordList) {
          this.$items[i] ??= makeRecord(field.descriptor, this.$buffer, this.$at + i * stride);
          return this.$items[i];
        },
      });
    }
    listPrototypes.set(placed, made);
    proto = made;
  }
  const list = Object.create(proto) as RecordList;
  list.$items = [];
  list.$buffer = buffer;
  list.$at = at;
  return list;
}

/** A record in a fresh buffer of its own (tests, and state that is not shared between threads). */
export function newRecord<D extends Descriptor>(descriptor: D, shared = true): StateOf<D> {
  const size = layoutOf(descriptor).size;
  return makeRecord(descriptor, shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
}

/** Zero every byte of a record (the starting point of a device's power-on reset). */
export function clearRecord(record: RecordInternals): void {
  viewsOf(record.$buffer).u8.fill(0, record.$offset, record.$offset + record.$layout.size);
}

/** The record's bytes (a view, not a copy). */
export function recordBytes(record: RecordInternals): Uint8Array {
  return new Uint8Array(record.$buffer, record.$offset, record.$layout.size);
}

/**
 * The arena: one SharedArrayBuffer that holds every device's record, so a single transfer to each vCPU thread
 * shares the whole machine's device state. Records are placed in allocation order at 8-byte alignment.
 */
export class StateArena {
  readonly buffer: SharedArrayBuffer;
  private used = 0;

  constructor(bytes: number | SharedArrayBuffer) {
    this.buffer = typeof bytes === 'number' ? new SharedArrayBuffer(bytes) : bytes;
  }

  /** Reserve room for a descriptor's record and return its offset. */
  allocate(descriptor: Descriptor): number {
    const size = layoutOf(descriptor).size;
    const offset = alignUp(this.used, 8);
    if (offset + size > this.buffer.byteLength) {
      throw new RangeError(
        `state arena full: ${descriptor.name} needs ${size} bytes at ${offset} of ${this.buffer.byteLength}`,
      );
    }
    this.used = offset + size;
    return offset;
  }

  record<D extends Descriptor>(descriptor: D, offset: number): StateOf<D> {
    return makeRecord(descriptor, this.buffer, offset);
  }
}

// ---- strings ---------------------------------------------------------------------------------------------------

/** The names of a record's `str()` fields: byte arrays with a `<name>Length` companion. */
export type StringFieldName<R> = {
  [K in keyof R & string]: string extends K
    ? never
    : R[K] extends Uint8Array
      ? `${K}Length` extends keyof R
        ? K
        : never
      : never;
}[keyof R & string];

function stringField(record: RecordInternals, name: string): { bytes: Uint8Array; lengthField: string; max: number } {
  const placed = record.$layout.byName.get(name);
  const field = placed?.field;
  if (field?.kind !== 'array' || field.type !== 'u8' || field.lengthField === undefined) {
    throw new VmstateError(
      `vmstate ${record.$layout.descriptor.name}: '${name}' is not a string field (declare it with str())`,
    );
  }
  return {
    bytes: (record as unknown as Record<string, Uint8Array>)[name],
    lengthField: field.lengthField,
    max: field.length,
  };
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Store `value` as UTF-8; throws when it does not fit. Unused bytes are zeroed so equal strings give equal records. */
export function setString<R extends RecordInternals>(record: R, name: StringFieldName<R>, value: string): void {
  const { bytes: target, lengthField, max } = stringField(record, name);
  const encoded = utf8Encoder.encode(value);
  if (encoded.length > max) {
    throw new VmstateError(
      `vmstate ${record.$layout.descriptor.name}: field '${name}': string of ${encoded.length} bytes exceeds its capacity of ${max}`,
    );
  }
  target.set(encoded);
  target.fill(0, encoded.length);
  (record as unknown as Record<string, number>)[lengthField] = encoded.length;
}

/** The stored string; throws if its length field is out of range or the bytes are not UTF-8 (a corrupt record). */
export function getString<R extends RecordInternals>(record: R, name: StringFieldName<R>): string {
  const { bytes: source, lengthField, max } = stringField(record, name);
  const length = (record as unknown as Record<string, number>)[lengthField];
  if (!Number.isInteger(length) || length < 0 || length > max) {
    throw new VmstateError(
      `vmstate ${record.$layout.descriptor.name}: field '${name}': length ${length} exceeds its capacity of ${max}`,
    );
  }
  try {
    return utf8Decoder.decode(source.slice(0, length)); // slice: TextDecoder refuses views of shared memory
  } catch {
    throw new VmstateError(`vmstate ${record.$layout.descriptor.name}: field '${name}': not valid UTF-8`);
  }
}
