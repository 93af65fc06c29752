// C struct layouts as data. A struct is declared once as a list of members with C types; this module computes
// every member's offset and size with the x86-64 System V rules (natural alignment, structs padded to their
// alignment, unions as large as their largest member, flexible arrays of size 0). The result is a plain table
// (struct name → size, field path → offset/size) that the codecs read and that kvm/bindings/abi.test.ts checks against the
// real <linux/kvm.h> with a C compiler, so a wrong declaration cannot go unnoticed.
import { alignUp } from '../util/align.js';

/** C scalar types used by the KVM ABI. `char` is a byte; `s32`/`s64` are signed. */
export type Scalar = 'u8' | 'char' | 'u16' | 'u32' | 's32' | 'u64' | 's64';

export interface ArrayType {
  readonly kind: 'array';
  readonly of: Type;
  /** Element count; 0 declares a C99 flexible array member (`entries[]`). */
  readonly length: number;
}

export interface AggregateType {
  readonly kind: 'struct' | 'union';
  /** The C tag (`kvm_regs` for `struct kvm_regs`), when the type has one. */
  readonly tag?: string;
  readonly members: readonly Member[];
}

export type Type = Scalar | ArrayType | AggregateType;

/** A member; `name` null declares an anonymous struct/union whose members belong to the enclosing type. */
export type Member = readonly [name: string | null, type: Type];

/** One named member inside a struct, by its C member designator (`cs.base`, `io.data_offset`, `u.msi.data`). */
export interface FieldInfo {
  readonly offset: number;
  /** sizeof the member (0 for a flexible array). */
  readonly size: number;
  /** For arrays: sizeof one element and the element count (0 = flexible). */
  readonly elementSize?: number;
  readonly length?: number;
}

export interface Layout {
  /** The C tag: the struct is `struct <name>`. */
  readonly name: string;
  readonly size: number;
  readonly align: number;
  readonly fields: Readonly<Record<string, FieldInfo>>;
}

const scalarSize: Record<Scalar, number> = { u8: 1, char: 1, u16: 2, u32: 4, s32: 4, u64: 8, s64: 8 };

// ---- declaration helpers ----------------------------------------------------------------------------------------

export const struct = (tag: string | undefined, members: readonly Member[]): AggregateType => ({
  kind: 'struct',
  tag,
  members,
});
export const union = (members: readonly Member[]): AggregateType => ({ kind: 'union', members });
export const array = (of: Type, length: number): ArrayType => ({ kind: 'array', of, length });
/** A flexible array member (`T name[]`): occupies no space, only an offset. */
export const flex = (of: Type): ArrayType => ({ kind: 'array', of, length: 0 });
/** Several members of one scalar type, as C's `__u64 rax, rbx, rcx;`. */
export const each = (type: Type, ...names: string[]): Member[] => names.map((n) => [n, type] as const);

// ---- size and alignment -----------------------------------------------------------------------------------------

export function sizeAlign(type: Type): { size: number; align: number } {
  if (typeof type === 'string') {
    const size = scalarSize[type];
    return { size, align: size };
  }
  if (type.kind === 'array') {
    const element = sizeAlign(type.of);
    return { size: element.size * type.length, align: element.align };
  }
  let size = 0;
  let align = 1;
  for (const [, memberType] of type.members) {
    const m = sizeAlign(memberType);
    align = Math.max(align, m.align);
    if (type.kind === 'union') size = Math.max(size, m.size);
    else size = alignUp(size, m.align) + m.size;
  }
  return { size: alignUp(size, align), align };
}

// ---- flattening into a field table ------------------------------------------------------------------------------

function collect(type: AggregateType, base: number, prefix: string, out: Record<string, FieldInfo>): void {
  let offset = 0;
  for (const [name, memberType] of type.members) {
    const { size, align } = sizeAlign(memberType);
    const at = type.kind === 'union' ? 0 : alignUp(offset, align);
    if (name === null) {
      if (typeof memberType === 'string' || memberType.kind === 'array') {
        throw new Error(`layout: anonymous member in ${prefix || type.tag} must be a struct or union`);
      }
      collect(memberType, base + at, prefix, out);
    } else {
      const path = prefix + name;
      if (path in out) throw new Error(`layout: duplicate field ${path} in ${type.tag ?? prefix}`);
      if (typeof memberType !== 'string' && memberType.kind === 'array') {
        out[path] = { offset: base + at, size, elementSize: sizeAlign(memberType.of).size, length: memberType.length };
      } else {
        out[path] = { offset: base + at, size };
      }
      // Nested aggregates are flattened by designator (`cs.base`); array elements are not (their element type,
      // when it is a struct, has its own entry in the table).
      if (typeof memberType !== 'string' && memberType.kind !== 'array')
        collect(memberType, base + at, `${path}.`, out);
    }
    offset = at + size;
  }
}

/** Computes the layout table entry of a tagged struct. */
export function layoutOf(type: AggregateType): Layout {
  if (!type.tag) throw new Error('layout: only tagged structs have a layout entry');
  const fields: Record<string, FieldInfo> = {};
  collect(type, 0, '', fields);
  const { size, align } = sizeAlign(type);
  return { name: type.tag, size, align, fields };
}
