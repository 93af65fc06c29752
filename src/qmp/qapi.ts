// A small declarative type system for QMP arguments, in the spirit of QEMU's QAPI schema, and the validator that
// checks a command's `arguments` against it with QEMU's error messages (qapi/qobject-input-visitor.c):
//   Parameter 'filename' is missing
//   Invalid parameter type for 'mode', expected: string
//   Parameter 'x' is unexpected
//   Parameter 'capabilities[0].capability' does not accept value 'foo'
//   Parameter 'max-bandwidth' expects uint64
// Members are written as in QAPI: a leading '*' marks an optional member (`{ '*uri': Q.str }`). The TypeScript type
// of validated arguments follows from the schema (Infer / InferMembers), so handlers are typed without repeating it.
//
// Checks run in schema order and the first problem wins; unexpected members are reported after all known members
// passed, as QEMU does. Validation returns a fresh value holding only schema members (integers as numbers: a uint64
// above 2^53 arrives rounded to the nearest double).

import { QmpError } from './errors.js';

export type IntName = 'int' | 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'size';

export type QKind =
  | 'str'
  | 'bool'
  | 'number'
  | 'null'
  | 'any'
  | 'int'
  | 'enum'
  | 'array'
  | 'struct'
  | 'union'
  | 'alternate';
/**
 * Any schema type, as generic constraints see it. Constraints stay this loose on purpose: with a recursive one
 * (arrays of QType, whose items are QType, …) the checker instantiates Infer on the constraint itself and never
 * stops. The validator narrows a QNode to QType by its kind.
 */
export interface QNode {
  readonly kind: QKind;
}

export interface QStr {
  readonly kind: 'str';
}
export interface QBool {
  readonly kind: 'bool';
}
export interface QNumber {
  readonly kind: 'number';
}
export interface QNull {
  readonly kind: 'null';
}
export interface QAny {
  readonly kind: 'any';
}
export interface QInt {
  readonly kind: 'int';
  readonly name: IntName;
  readonly min: bigint;
  readonly max: bigint;
}
export interface QEnum<V extends string = string> {
  readonly kind: 'enum';
  readonly values: readonly V[];
}
export interface QArray<T extends QNode = QNode> {
  readonly kind: 'array';
  readonly items: T;
}
export interface QStruct<M extends Members = Members> {
  readonly kind: 'struct';
  readonly members: M;
}
/** QAPI's flat union: base members, one of which (an enum) selects the variant whose members are added. */
export interface QUnion<B extends Members = Members, D extends string = string, V extends Variants = Variants> {
  readonly kind: 'union';
  readonly base: B;
  readonly discriminator: D;
  readonly variants: V;
}
/** QAPI's alternate: one of several types told apart by JSON type (StrOrNull). `name` appears in errors. */
export interface QAlternate<A extends readonly QNode[] = readonly QNode[]> {
  readonly kind: 'alternate';
  readonly name: string;
  readonly alternatives: A;
}

export type QObjectType = QStruct | QUnion;
export type QType = QStr | QBool | QNumber | QNull | QAny | QInt | QEnum | QArray | QStruct | QUnion | QAlternate;
export type Members = { readonly [name: string]: QNode };
/** Each variant is a QStruct or a QUnion. */
export type Variants = { readonly [tag: string]: QNode };

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The TypeScript type of a validated value of schema type T. */
export type Infer<T> = T extends { readonly kind: 'str' }
  ? string
  : T extends { readonly kind: 'bool' }
    ? boolean
    : T extends { readonly kind: 'number' | 'int' }
      ? number
      : T extends { readonly kind: 'null' }
        ? null
        : T extends { readonly kind: 'any' }
          ? unknown
          : T extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
            ? V
            : T extends { readonly kind: 'array'; readonly items: infer I }
              ? Array<Infer<I>>
              : T extends { readonly kind: 'struct'; readonly members: infer M extends Members }
                ? InferMembers<M>
                : T extends {
                      readonly kind: 'union';
                      readonly base: infer B extends Members;
                      readonly discriminator: infer D extends string;
                      readonly variants: infer V extends Variants;
                    }
                  ? InferUnion<B, D, V>
                  : T extends { readonly kind: 'alternate'; readonly alternatives: readonly (infer A)[] }
                    ? Infer<A>
                    : never;

/** `{ filename: Q.str, '*mode': Q.str }` → `{ filename: string; mode?: string }`. */
export type InferMembers<M extends Members> = Simplify<
  { -readonly [K in keyof M as K extends `*${string}` ? never : K]: Infer<M[K]> } & {
    -readonly [K in keyof M as K extends `*${infer N}` ? N : never]?: Infer<M[K]>;
  }
>;

type InferUnion<B extends Members, D extends string, V extends Variants> = {
  [K in keyof V & string]: Simplify<Omit<InferMembers<B>, D> & { [P in D]: K } & Infer<V[K]>>;
}[keyof V & string];

const range = (name: IntName, min: bigint, max: bigint): QInt => ({ kind: 'int', name, min, max });

/** Schema constructors, named after QAPI's built-in types. */
export const Q = {
  str: { kind: 'str' } as QStr,
  bool: { kind: 'bool' } as QBool,
  number: { kind: 'number' } as QNumber,
  null: { kind: 'null' } as QNull,
  any: { kind: 'any' } as QAny,
  int: range('int', -(1n << 63n), (1n << 63n) - 1n),
  int8: range('int8', -128n, 127n),
  int16: range('int16', -32768n, 32767n),
  int32: range('int32', -(1n << 31n), (1n << 31n) - 1n),
  int64: range('int64', -(1n << 63n), (1n << 63n) - 1n),
  uint8: range('uint8', 0n, 255n),
  uint16: range('uint16', 0n, 65535n),
  uint32: range('uint32', 0n, (1n << 32n) - 1n),
  uint64: range('uint64', 0n, (1n << 64n) - 1n),
  size: range('size', 0n, (1n << 64n) - 1n),
  enum<const V extends string>(values: readonly V[]): QEnum<V> {
    return { kind: 'enum', values };
  },
  array<const T extends QNode>(items: T): QArray<T> {
    return { kind: 'array', items };
  },
  struct<const M extends Members>(members: M): QStruct<M> {
    return { kind: 'struct', members };
  },
  union<const B extends Members, const D extends string & keyof B, const V extends Variants>(
    base: B,
    discriminator: D,
    variants: V,
  ): QUnion<B, D, V> {
    return { kind: 'union', base, discriminator, variants };
  },
  alternate<const A extends readonly QNode[]>(name: string, alternatives: A): QAlternate<A> {
    return { kind: 'alternate', name, alternatives };
  },
};

// ---- validation --------------------------------------------------------------------------------------------

const invalidType = (path: string, expected: string) =>
  new QmpError('GenericError', `Invalid parameter type for '${path}', expected: ${expected}`);
const invalidValue = (path: string, expected: string) =>
  new QmpError('GenericError', `Parameter '${path}' expects ${expected}`);

const memberPath = (path: string, name: string) => (path === '' ? name : `${path}.${name}`);

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON type of a value, named as QEMU's QType names it in messages. */
function jsonKind(v: unknown): 'string' | 'number' | 'boolean' | 'null' | 'object' | 'array' | 'other' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'number':
    case 'bigint':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'object':
      return 'object';
    default:
      return 'other';
  }
}

/** Which JSON kind each schema kind takes, for telling alternates apart. */
function acceptsKind(t: QNode): string {
  switch (t.kind) {
    case 'str':
    case 'enum':
      return 'string';
    case 'int':
    case 'number':
      return 'number';
    case 'bool':
      return 'boolean';
    case 'null':
      return 'null';
    case 'struct':
    case 'union':
      return 'object';
    case 'array':
      return 'array';
    case 'any':
    case 'alternate':
      return 'any';
  }
}

function checkInt(t: QInt, v: unknown, path: string): number {
  const signed = t.name.startsWith('int');
  let big: bigint | undefined;
  if (typeof v === 'bigint') big = v;
  else if (typeof v === 'number' && Number.isInteger(v)) big = BigInt(v);
  // QEMU's words: a signed parameter's wrong type is "Invalid parameter type … integer", an unsigned one's is
  // "expects uint64"; a value out of a narrower type's range "expects uint8_t" (C's name for the type).
  if (big === undefined) throw signed ? invalidType(path, 'integer') : invalidValue(path, 'uint64');
  if (big < t.min || big > t.max) {
    if (t.name === 'int' || t.name === 'int64') throw invalidType(path, 'integer');
    if (t.name === 'uint64' || t.name === 'size') throw invalidValue(path, 'uint64');
    throw invalidValue(path, `${t.name}_t`);
  }
  return Number(big);
}

/** Validates `value` against `type`; `path` names it in messages (QEMU's spelling: `a.b[2].c`). Throws QmpError. */
export function validate(node: QNode, value: unknown, path: string): unknown {
  const type = node as QType;
  switch (type.kind) {
    case 'str':
      if (typeof value !== 'string') throw invalidType(path, 'string');
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw invalidType(path, 'boolean');
      return value;
    case 'number':
      if (typeof value !== 'number' && typeof value !== 'bigint') throw invalidType(path, 'number');
      return Number(value);
    case 'null':
      if (value !== null) throw invalidType(path, 'null');
      return null;
    case 'any':
      return value;
    case 'int':
      return checkInt(type, value, path);
    case 'enum':
      if (typeof value !== 'string') throw invalidType(path, 'string');
      if (!type.values.includes(value))
        throw new QmpError('GenericError', `Parameter '${path}' does not accept value '${value}'`);
      return value;
    case 'array':
      if (!Array.isArray(value)) throw invalidType(path, 'array');
      return value.map((item, i) => validate(type.items, item, `${path}[${i}]`));
    case 'struct':
    case 'union':
      return validateObject(type, value, path);
    case 'alternate': {
      const kind = jsonKind(value);
      const match = type.alternatives.find((a) => acceptsKind(a) === kind || acceptsKind(a) === 'any');
      if (match === undefined) throw invalidType(path, type.name);
      return validate(match, value, path);
    }
  }
}

function validateObject(type: QObjectType, value: unknown, path: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw invalidType(path, 'object');
  const out: Record<string, unknown> = {};
  const consumed = new Set<string>();
  visitObject(type, value, path, out, consumed);
  for (const key of Object.keys(value)) {
    if (!consumed.has(key)) throw new QmpError('GenericError', `Parameter '${memberPath(path, key)}' is unexpected`);
  }
  return out;
}

function visitObject(
  type: QObjectType,
  value: Record<string, unknown>,
  path: string,
  out: Record<string, unknown>,
  consumed: Set<string>,
): void {
  if (type.kind === 'struct') {
    visitMembers(type.members, value, path, out, consumed);
    return;
  }
  visitMembers(type.base, value, path, out, consumed);
  const variant = type.variants[out[type.discriminator] as string] as QObjectType | undefined;
  if (variant !== undefined) visitObject(variant, value, path, out, consumed);
}

function visitMembers(
  members: Members,
  value: Record<string, unknown>,
  path: string,
  out: Record<string, unknown>,
  consumed: Set<string>,
): void {
  for (const [declared, type] of Object.entries(members)) {
    const optional = declared.startsWith('*');
    const name = optional ? declared.slice(1) : declared;
    if (!Object.hasOwn(value, name)) {
      if (optional) continue;
      throw new QmpError('GenericError', `Parameter '${memberPath(path, name)}' is missing`);
    }
    Object.defineProperty(out, name, {
      value: validate(type, value[name], memberPath(path, name)),
      enumerable: true,
      writable: true,
      configurable: true,
    });
    consumed.add(name);
  }
}

/** Validates a command's `arguments` object against its member list (`{}` when the command takes none). */
export function validateArguments(members: Members, args: Record<string, unknown>): Record<string, unknown> {
  return validateObject(Q.struct(members), args, '');
}
