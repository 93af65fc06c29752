// Test support for the vmstate engine's property tests and the checkpoint fuzzer: a seeded PRNG, random
// descriptors (every field kind, nesting, variable arrays, subsections with varying `needed`), random values that
// respect length fields, older versions of a descriptor, and an independent model of what a stream carries.
import {
  layoutOf,
  newRecord,
  type Descriptor,
  type Field,
  type IntType,
  type ScalarType,
  type Subsection,
  type RecordInternals,
} from '../vmstate/vmstate.js';

/** sfc32: small, fast, and good enough for test data; the same seed gives the same sequence everywhere. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 2 ** 32) * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** The run's seed: VMSTATE_SEED when set (to replay a failure or try another), else `fixed`, else a fresh one. */
export function runSeed(fixed?: number): number {
  const fromEnv = process.env.VMSTATE_SEED;
  if (fromEnv !== undefined) return Number(fromEnv) >>> 0;
  return fixed !== undefined ? fixed >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Runs `cases` numbered cases; a failure names the seed and case so that it can be replayed. */
export function forEachCase(seed: number, cases: number, body: (rng: Rng, index: number) => void): void {
  const rng = new Rng(seed);
  for (let i = 0; i < cases; i++) {
    const caseSeed = rng.u32();
    try {
      body(new Rng(caseSeed), i);
    } catch (e) {
      const err = e as Error;
      err.message = `${err.message}\n    (seed ${seed}, case ${i}: rerun with VMSTATE_SEED=${seed})`;
      throw err;
    }
  }
}

const INT_TYPES: readonly IntType[] = ['u8', 'u16', 'u32', 'u64', 'i8', 'i16', 'i32', 'i64'];
const SCALAR_TYPES: readonly ScalarType[] = [...INT_TYPES, 'bool'];
const LENGTH_TYPES = ['u8', 'u16', 'u32'] as const;

interface GenState {
  rng: Rng;
  names: number;
  descriptors: number;
}

/** A random descriptor: up to `maxDepth` levels of nesting, subsections included. */
export function randomDescriptor(rng: Rng, maxDepth = 2): Descriptor {
  return genDescriptor({ rng, names: 0, descriptors: 0 }, maxDepth);
}

function genDescriptor(g: GenState, depth: number): Descriptor {
  const { rng } = g;
  const version = rng.int(1, 4);
  const name = `gen${g.descriptors++}`;
  const flag = `need${g.names++}`;
  const fields: Field[] = [{ kind: 'scalar', name: flag, type: 'bool' }, ...genFields(g, version, depth)];
  const subsections: Subsection[] = [];
  for (let i = rng.int(0, 3); i > 0; i--) {
    const subVersion = rng.int(1, 3);
    const rule = rng.pick(['always', 'never', 'flag', 'not-flag'] as const);
    subsections.push({
      name: `${name}/sub${i}`,
      version: subVersion,
      minVersion: rng.int(1, subVersion),
      fields: genFields(g, subVersion, depth),
      needed: (s: AnyRecord) =>
        rule === 'always' || (rule === 'flag' && s[flag] === true) || (rule === 'not-flag' && s[flag] === false),
    });
  }
  return { name, version, minVersion: rng.int(1, version), fields, subsections };
}

function genFields(g: GenState, version: number, depth: number): Field[] {
  const { rng } = g;
  const fields: Field[] = [];
  for (let n = rng.int(0, 7); n > 0; n--) {
    const since = rng.int(1, version);
    const name = `f${g.names++}`;
    const variable = rng.chance(0.5);
    const lengthField = (): string | undefined => {
      if (!variable) return undefined;
      const lf = `n${g.names++}`;
      fields.push({ kind: 'scalar', name: lf, type: rng.pick(LENGTH_TYPES), since: rng.int(1, since) });
      return lf;
    };
    const roll = rng.int(0, 9);
    if (roll < 5) {
      fields.push({ kind: 'scalar', name, type: rng.pick(SCALAR_TYPES), since });
    } else if (roll < 8 || depth === 0) {
      const lf = lengthField();
      fields.push({
        kind: 'array',
        name,
        type: rng.pick(INT_TYPES),
        length: rng.int(0, 12),
        since,
        ...(lf ? { lengthField: lf } : {}),
      });
    } else if (roll === 8) {
      fields.push({ kind: 'struct', name, descriptor: genDescriptor(g, depth - 1), since });
    } else {
      const lf = lengthField();
      fields.push({
        kind: 'structArray',
        name,
        descriptor: genDescriptor(g, depth - 1),
        length: rng.int(0, 4),
        since,
        ...(lf ? { lengthField: lf } : {}),
      });
    }
  }
  return fields;
}

// ---- values ------------------------------------------------------------------------------------------------------

type AnyRecord = RecordInternals & Record<string, unknown>;
/** A field's typed array (u8..u64, so numbers or bigints). */
type Elements = { readonly length: number; [index: number]: unknown };

const INT_RANGE: Record<Exclude<IntType, 'u64' | 'i64'>, [number, number]> = {
  u8: [0, 0xff],
  u16: [0, 0xffff],
  u32: [0, 0xffff_ffff],
  i8: [-0x80, 0x7f],
  i16: [-0x8000, 0x7fff],
  i32: [-0x8000_0000, 0x7fff_ffff],
};

export function randomScalar(rng: Rng, type: ScalarType): number | bigint | boolean {
  if (type === 'bool') return rng.chance(0.5);
  if (type === 'u64' || type === 'i64') {
    const raw = rng.chance(0.2)
      ? rng.pick([0n, 1n, (1n << 64n) - 1n, 1n << 63n, (1n << 53n) + 1n])
      : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
    return type === 'u64' ? BigInt.asUintN(64, raw) : BigInt.asIntN(64, raw);
  }
  const [lo, hi] = INT_RANGE[type];
  return rng.chance(0.2) ? rng.pick([lo, hi, 0]) : rng.int(lo, hi);
}

/** Fills every field (all array elements included) with random values; a length field gets one within capacity. */
export function fillRandom(rng: Rng, record: RecordInternals): void {
  const rec = record as AnyRecord;
  const layout = rec.$layout;
  const capacity = new Map<string, number>();
  for (const { field } of layout.byName.values()) {
    if ((field.kind === 'array' || field.kind === 'structArray') && field.lengthField !== undefined) {
      capacity.set(field.lengthField, Math.min(capacity.get(field.lengthField) ?? Infinity, field.length));
    }
  }
  for (const { field } of layout.byName.values()) {
    switch (field.kind) {
      case 'scalar': {
        const cap = capacity.get(field.name);
        rec[field.name] = cap !== undefined ? rng.int(0, cap) : randomScalar(rng, field.type);
        break;
      }
      case 'array': {
        const values = rec[field.name] as Elements;
        for (let i = 0; i < values.length; i++) values[i] = randomScalar(rng, field.type);
        break;
      }
      case 'struct':
        fillRandom(rng, rec[field.name] as AnyRecord);
        break;
      case 'structArray':
        for (const element of rec[field.name] as AnyRecord[]) fillRandom(rng, element);
        break;
    }
  }
}

// ---- older versions and the model of what a stream carries -------------------------------------------------------

/**
 * The same descriptor as an older tsvmm knew it: each (nested) descriptor and subsection at a random version within
 * its [minVersion, version], keeping only the fields that existed then; some subsections did not exist at all.
 */
export function olderVersion(rng: Rng, d: Descriptor): Descriptor {
  const version = rng.int(d.minVersion ?? 1, d.version);
  const keep = (fields: readonly Field[], v: number): Field[] =>
    fields
      .filter((f) => (f.since ?? 1) <= v)
      .map((f) =>
        f.kind === 'struct' || f.kind === 'structArray' ? { ...f, descriptor: olderVersion(rng, f.descriptor) } : f,
      );
  const subsections = (d.subsections ?? [])
    .filter(() => rng.chance(0.8))
    .map((s) => {
      const v = rng.int(s.minVersion ?? 1, s.version);
      return { ...s, version: v, fields: keep(s.fields, v) };
    });
  return { ...d, version, fields: keep(d.fields, version), subsections };
}

/**
 * What loading `from`'s stream must produce: a fresh record of `into` holding exactly the values the stream
 * carries (fields that existed, needed subsections, the used part of variable arrays), zero everywhere else.
 * Written independently of the engine: it walks records by field name.
 */
export function expectedAfterLoad(from: RecordInternals, into: Descriptor): RecordInternals {
  const expected = newRecord(into, false);
  copyCarried(from as AnyRecord, expected as AnyRecord);
  return expected;
}

function copyCarried(from: AnyRecord, to: AnyRecord): void {
  const layout = from.$layout;
  const lists = [layout.fields, ...layout.subsections.filter((s) => s.subsection.needed(from)).map((s) => s.fields)];
  for (const list of lists) {
    for (const { field } of list) {
      const n =
        (field.kind === 'array' || field.kind === 'structArray') && field.lengthField !== undefined
          ? (from[field.lengthField] as number)
          : ((field as { length?: number }).length ?? 0);
      switch (field.kind) {
        case 'scalar':
          to[field.name] = from[field.name];
          break;
        case 'array':
          for (let i = 0; i < n; i++) (to[field.name] as Elements)[i] = (from[field.name] as Elements)[i];
          break;
        case 'struct':
          copyCarried(from[field.name] as AnyRecord, to[field.name] as AnyRecord);
          break;
        case 'structArray':
          for (let i = 0; i < n; i++)
            copyCarried((from[field.name] as AnyRecord[])[i], (to[field.name] as AnyRecord[])[i]);
          break;
      }
    }
  }
}

/** Layout size, for tests that want to skip degenerate descriptors. */
export const recordSize = (d: Descriptor): number => layoutOf(d).size;
