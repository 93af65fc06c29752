// A small, typed encoder for ACPI Machine Language (AML): just what tsvmm's DSDT needs (ACPI 6.x, chapter 20 "AML
// Specification" and chapter 6.4 "Resource Data Types for ACPI"). Every builder returns the encoded bytes of one
// construct, tagged with what kind of construct it is, so a device body cannot contain a bare integer and a
// package cannot contain a Device: the grammar's shape is checked by the type system, values at run time.
//
//   scope('\\_SB', [
//     device('COM1', [
//       name('_HID', eisaId('PNP0501')),
//       name('_CRS', resourceTemplate([io({ min: 0x3f8, length: 8 }), irqNoFlags([4])])),
//     ]),
//   ])
//
// Encodings are the minimal ones (as iasl emits them): Zero/One for 0 and 1, the narrowest integer prefix, the
// shortest PkgLength.

/** What an encoded fragment may stand for in the grammar. */
export type AmlKind =
  | 'data' // DataRefObject: an integer, string, buffer or package (a TermArg, a Name's value, a package element)
  | 'nameRef' // a NameString used as a reference (a package element, e.g. a _PRT source)
  | 'object' // a NamedObj or NameSpaceModifierObj: Name, Scope, Device, Method (may appear in any TermList)
  | 'statement'; // a Type1Opcode: Return (only inside a Method)

/** Encoded AML of one kind. */
export interface Aml<K extends AmlKind = AmlKind> {
  readonly kind: K;
  readonly bytes: Uint8Array;
}

/** One encoded resource descriptor (small or large item) for a resource template. */
export interface Resource {
  readonly kind: 'resource';
  readonly bytes: Uint8Array;
}

export class AmlError extends RangeError {
  override readonly name = 'AmlError';
}

// ---- opcodes (ACPI 6.x, 20.3 "AML Byte Stream Byte Values") ----------------------------------------------------
export const ZERO_OP = 0x00; // Integer 0
export const ONE_OP = 0x01; // Integer 1
export const NAME_OP = 0x08; // DefName := NameOp NameString DataRefObject
export const BYTE_PREFIX = 0x0a; // ByteConst
export const WORD_PREFIX = 0x0b; // WordConst
export const DWORD_PREFIX = 0x0c; // DWordConst
export const STRING_PREFIX = 0x0d; // String := StringPrefix AsciiCharList NullChar
export const QWORD_PREFIX = 0x0e; // QWordConst
export const SCOPE_OP = 0x10; // DefScope := ScopeOp PkgLength NameString TermList
export const BUFFER_OP = 0x11; // DefBuffer := BufferOp PkgLength BufferSize ByteList
export const PACKAGE_OP = 0x12; // DefPackage := PackageOp PkgLength NumElements PackageElementList
export const METHOD_OP = 0x14; // DefMethod := MethodOp PkgLength NameString MethodFlags TermList
export const DUAL_NAME_PREFIX = 0x2e; // two NameSegs follow
export const MULTI_NAME_PREFIX = 0x2f; // SegCount (a byte) and that many NameSegs follow
export const EXT_OP_PREFIX = 0x5b; // two-byte opcodes
export const DEVICE_OP = 0x82; // after ExtOpPrefix: DefDevice := DeviceOp PkgLength NameString TermList
export const ROOT_CHAR = 0x5c; // '\': the path starts at the namespace root
export const PARENT_PREFIX_CHAR = 0x5e; // '^': one level up from the current scope
export const RETURN_OP = 0xa4; // DefReturn := ReturnOp ArgObject

/** The largest PkgLength (28 bits: a lead nybble and three more bytes). */
const PKG_LENGTH_MAX = 2 ** 28 - 1;

// ---- byte plumbing --------------------------------------------------------------------------------------------

function concat(parts: readonly (Uint8Array | readonly number[])[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function le(value: number | bigint, bytes: number): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

function checkUint(what: string, value: number | bigint, bits: number): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    throw new AmlError(`${what}: ${value} is not an integer`);
  const v = BigInt(value);
  if (v < 0n || v >= 1n << BigInt(bits)) throw new AmlError(`${what}: ${value} does not fit in ${bits} bits`);
  return v;
}

const data = (bytes: Uint8Array): Aml<'data'> => ({ kind: 'data', bytes });
const object = (bytes: Uint8Array): Aml<'object'> => ({ kind: 'object', bytes });

/**
 * PkgLength for a construct whose body (everything the length covers after the PkgLength itself) is `bodyLength`
 * bytes. The encoded length counts its own bytes: one byte holds 0-63; otherwise bits 7-6 of the lead byte say how
 * many bytes follow, its bits 3-0 are the low nybble, and each following byte the next 8 bits.
 */
export function pkgLength(bodyLength: number): Uint8Array {
  if (!Number.isSafeInteger(bodyLength) || bodyLength < 0)
    throw new AmlError(`PkgLength: bad body length ${bodyLength}`);
  if (bodyLength + 1 <= 0x3f) return Uint8Array.of(bodyLength + 1);
  for (let follow = 1; follow <= 3; follow++) {
    const total = bodyLength + 1 + follow;
    if (total < 2 ** (4 + 8 * follow)) {
      const out = [(follow << 6) | (total & 0x0f)];
      for (let i = 0; i < follow; i++) out.push(Math.floor(total / 2 ** (4 + 8 * i)) & 0xff);
      return Uint8Array.from(out);
    }
  }
  throw new AmlError(`PkgLength: ${bodyLength} bytes exceed the maximum of ${PKG_LENGTH_MAX}`);
}

/** Prefix `body` with its PkgLength. */
function withPkgLength(body: Uint8Array): Uint8Array {
  return concat([pkgLength(body.length), body]);
}

// ---- names ----------------------------------------------------------------------------------------------------

/**
 * One NameSeg: 1-4 characters, the first A-Z or '_', the rest A-Z, 0-9 or '_', padded to four with '_' (as ASL
 * does: `PCI0`, `_SB` → `_SB_`).
 */
export function nameSeg(seg: string): Uint8Array {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg))
    throw new AmlError(`AML name segment '${seg}' is not 1-4 characters of A-Z, 0-9, _ (not starting with a digit)`);
  const padded = seg.padEnd(4, '_');
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * A NameString from ASL path syntax: an optional root `\` or any number of `^` (parent) prefixes, then segments
 * separated by dots (`\_SB.PCI0`, `^COM1`, `_S5`). A lone `\` is the root itself (NullName after the root char).
 */
export function nameString(path: string): Uint8Array {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith('\\')) {
    prefix.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else
    while (rest.startsWith('^')) {
      prefix.push(PARENT_PREFIX_CHAR);
      rest = rest.slice(1);
    }
  if (rest === '') {
    if (prefix.length === 0) throw new AmlError('AML name: empty path');
    return concat([prefix, [0x00]]); // NullName
  }
  const segs = rest.split('.').map(nameSeg);
  if (segs.length === 1) return concat([prefix, segs[0]]);
  if (segs.length === 2) return concat([prefix, [DUAL_NAME_PREFIX], ...segs]);
  if (segs.length > 255) throw new AmlError(`AML name '${path}': more than 255 segments`);
  return concat([prefix, [MULTI_NAME_PREFIX, segs.length], ...segs]);
}

/** A reference to a named object, for a package element. */
export function nameRef(path: string): Aml<'nameRef'> {
  return { kind: 'nameRef', bytes: nameString(path) };
}

// ---- data objects ---------------------------------------------------------------------------------------------

/** An Integer in the shortest encoding: ZeroOp, OneOp, or a Byte/Word/DWord/QWord prefix. 0 ≤ value < 2^64. */
export function integer(value: number | bigint): Aml<'data'> {
  const v = checkUint('AML integer', value, 64);
  if (v === 0n) return data(Uint8Array.of(ZERO_OP));
  if (v === 1n) return data(Uint8Array.of(ONE_OP));
  if (v <= 0xffn) return data(Uint8Array.of(BYTE_PREFIX, Number(v)));
  if (v <= 0xffffn) return data(Uint8Array.from([WORD_PREFIX, ...le(v, 2)]));
  if (v <= 0xffffffffn) return data(Uint8Array.from([DWORD_PREFIX, ...le(v, 4)]));
  return data(Uint8Array.from([QWORD_PREFIX, ...le(v, 8)]));
}

/** A String: ASCII characters 0x01-0x7F, NUL-terminated. */
export function string(value: string): Aml<'data'> {
  const codes = Array.from(value, (c) => c.charCodeAt(0));
  if (codes.some((c) => c < 0x01 || c > 0x7f))
    throw new AmlError(`AML string ${JSON.stringify(value)}: only ASCII 0x01-0x7F allowed`);
  return data(Uint8Array.from([STRING_PREFIX, ...codes, 0x00]));
}

/**
 * A compressed EISA ID, as ASL's EISAID("PNP0A03"): three letters (5 bits each, 'A' = 1) in the first big-endian
 * word with bit 15 clear, four hex digits in the next two bytes; encoded as a DWord integer.
 */
export function eisaIdValue(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id))
    throw new AmlError(`EISA ID '${id}' is not three letters A-Z and four hex digits`);
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  const bytes = [vendor >> 8, vendor & 0xff, product >> 8, product & 0xff];
  return (bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24)) >>> 0;
}

export function eisaId(id: string): Aml<'data'> {
  return integer(eisaIdValue(id));
}

/** A Buffer of raw bytes (BufferSize is the byte count). */
export function buffer(bytes: Uint8Array | readonly number[]): Aml<'data'> {
  const body = Uint8Array.from(bytes);
  if (body.some((b) => b > 0xff)) throw new AmlError('AML buffer: bytes must be 0-255');
  return data(concat([[BUFFER_OP], withPkgLength(concat([integer(body.length).bytes, body]))]));
}

/** A Package of at most 255 elements (data objects or name references). */
export function pkg(elements: readonly Aml<'data' | 'nameRef'>[]): Aml<'data'> {
  if (elements.length > 255)
    throw new AmlError(`AML package: ${elements.length} elements (at most 255 with PackageOp)`);
  const body = concat([[elements.length], ...elements.map((e) => e.bytes)]);
  return data(concat([[PACKAGE_OP], withPkgLength(body)]));
}

// ---- named objects and statements -----------------------------------------------------------------------------

/** Name(path, value). */
export function name(path: string, value: Aml<'data'>): Aml<'object'> {
  return object(concat([[NAME_OP], nameString(path), value.bytes]));
}

/** Scope(path) { terms }. */
export function scope(path: string, terms: readonly Aml<'object'>[]): Aml<'object'> {
  return object(concat([[SCOPE_OP], withPkgLength(concat([nameString(path), ...terms.map((t) => t.bytes)]))]));
}

/** Device(path) { terms }. */
export function device(path: string, terms: readonly Aml<'object'>[]): Aml<'object'> {
  return object(
    concat([[EXT_OP_PREFIX, DEVICE_OP], withPkgLength(concat([nameString(path), ...terms.map((t) => t.bytes)]))]),
  );
}

export interface MethodOptions {
  /** Number of arguments, 0-7. */
  readonly args?: number;
  /** Serialized methods run one at a time (MethodFlags bit 3). */
  readonly serialized?: boolean;
  /** SyncLevel, 0-15 (MethodFlags bits 7-4). */
  readonly syncLevel?: number;
}

/** Method(path, args, serialized) { body }. */
export function method(
  path: string,
  options: MethodOptions,
  body: readonly Aml<'object' | 'statement'>[],
): Aml<'object'> {
  const args = options.args ?? 0;
  const sync = options.syncLevel ?? 0;
  if (!Number.isInteger(args) || args < 0 || args > 7)
    throw new AmlError(`AML method ${path}: ${args} arguments (0-7)`);
  if (!Number.isInteger(sync) || sync < 0 || sync > 15)
    throw new AmlError(`AML method ${path}: sync level ${sync} (0-15)`);
  const flags = args | (options.serialized ? 0x08 : 0) | (sync << 4);
  return object(concat([[METHOD_OP], withPkgLength(concat([nameString(path), [flags], ...body.map((t) => t.bytes)]))]));
}

/** Return(value). */
export function ret(value: Aml<'data' | 'nameRef'>): Aml<'statement'> {
  return { kind: 'statement', bytes: concat([[RETURN_OP], value.bytes]) };
}

/** A whole DSDT/SSDT body: the top-level TermList. */
export function termList(terms: readonly Aml<'object'>[]): Uint8Array {
  return concat(terms.map((t) => t.bytes));
}

// ---- resource descriptors (ACPI 6.x, 6.4) ---------------------------------------------------------------------

// Small items: tag byte = (item name << 3) | length. Large items: tag byte = 0x80 | item name, then a u16 length.
const SMALL_IRQ = 0x04; // IRQ descriptor (2 bytes: mask; 3 with flags)
const SMALL_IO = 0x08; // I/O port descriptor (7 bytes)
const SMALL_END_TAG = 0x0f; // End Tag (1 byte: checksum)
const LARGE_MEMORY32_FIXED = 0x86; // 32-bit fixed memory range (9 bytes)
const LARGE_DWORD_ADDRESS = 0x87; // DWord address space (23 bytes)
const LARGE_WORD_ADDRESS = 0x88; // Word address space (13 bytes)
const LARGE_EXTENDED_IRQ = 0x89; // Extended interrupt (2 + 4n bytes)
const LARGE_QWORD_ADDRESS = 0x8a; // QWord address space (43 bytes)

// Address space descriptors: resource type and flags.
const ADDRESS_TYPE_MEMORY = 0;
const ADDRESS_TYPE_IO = 1;
const ADDRESS_TYPE_BUS = 2;
const GENERAL_FLAG_MIN_FIXED = 0x04; // _MIF: the minimum address is fixed
const GENERAL_FLAG_MAX_FIXED = 0x08; // _MAF: the maximum address is fixed
const IO_FLAG_ENTIRE_RANGE = 0x03; // _RNG: decodes both ISA and non-ISA ranges
const MEMORY_FLAG_READ_WRITE = 0x01; // _RW
const MEMORY_FLAG_CACHEABLE = 0x02; // _MEM = 1: cacheable (0: non-cacheable)
// Extended interrupt flags.
const EXT_IRQ_CONSUMER = 0x01; // the device consumes (not produces) the interrupt
const EXT_IRQ_EDGE = 0x02; // _HE: 1 edge, 0 level
const EXT_IRQ_ACTIVE_LOW = 0x04; // _LL: 1 active low, 0 active high
const EXT_IRQ_SHARED = 0x08; // _SHR
// I/O descriptor information byte.
const IO_DECODE_16 = 0x01; // _DEC: the device decodes 16 address bits (0: 10 bits)

const resource = (bytes: readonly number[]): Resource => ({ kind: 'resource', bytes: Uint8Array.from(bytes) });
const large = (tag: number, body: readonly number[]): Resource => resource([tag, ...le(body.length, 2), ...body]);

function uint(what: string, value: number | bigint, bits: number): bigint {
  return checkUint(what, value, bits);
}

/** IO(Decode16, min, max, align, length): an I/O port range; fixed (max = min, align 1) unless told otherwise. */
export function io(r: { min: number; max?: number; align?: number; length: number; decode16?: boolean }): Resource {
  const max = r.max ?? r.min;
  uint('IO min', r.min, 16);
  uint('IO max', max, 16);
  uint('IO length', r.length, 8);
  const align = r.align ?? 1;
  uint('IO alignment', align, 8);
  if (max < r.min) throw new AmlError(`IO: max 0x${max.toString(16)} below min 0x${r.min.toString(16)}`);
  return resource([
    (SMALL_IO << 3) | 7,
    r.decode16 === false ? 0 : IO_DECODE_16,
    ...le(r.min, 2),
    ...le(max, 2),
    align,
    r.length,
  ]);
}

/** IRQNoFlags() { irqs }: ISA IRQs 0-15, edge-triggered, active-high, exclusive. */
export function irqNoFlags(irqs: readonly number[]): Resource {
  let mask = 0;
  for (const irq of irqs) {
    uint('IRQ', irq, 4);
    mask |= 1 << irq;
  }
  return resource([(SMALL_IRQ << 3) | 2, ...le(mask, 2)]);
}

/** Interrupt(ResourceConsumer, Level|Edge, ActiveHigh|ActiveLow, Exclusive|Shared) { gsis }. */
export function interrupt(r: {
  gsis: readonly number[];
  edge: boolean;
  activeLow: boolean;
  shared?: boolean;
  producer?: boolean;
}): Resource {
  if (r.gsis.length === 0 || r.gsis.length > 255) throw new AmlError(`Interrupt: ${r.gsis.length} interrupts (1-255)`);
  const flags =
    (r.producer ? 0 : EXT_IRQ_CONSUMER) |
    (r.edge ? EXT_IRQ_EDGE : 0) |
    (r.activeLow ? EXT_IRQ_ACTIVE_LOW : 0) |
    (r.shared ? EXT_IRQ_SHARED : 0);
  return large(LARGE_EXTENDED_IRQ, [
    flags,
    r.gsis.length,
    ...r.gsis.flatMap((g) => le(uint('Interrupt GSI', g, 32), 4)),
  ]);
}

/** Memory32Fixed(ReadWrite|ReadOnly, base, length). */
export function memory32Fixed(r: { base: number; length: number; writable?: boolean }): Resource {
  uint('Memory32Fixed base', r.base, 32);
  uint('Memory32Fixed length', r.length, 32);
  return large(LARGE_MEMORY32_FIXED, [r.writable === false ? 0 : 1, ...le(r.base, 4), ...le(r.length, 4)]);
}

/** An address range for the Word/DWord/QWord descriptors: [min, max] inclusive, fixed at both ends. */
export interface AddressRange {
  readonly min: number | bigint;
  readonly max: number | bigint;
  /** Added to a bus-side address to get the CPU-side address (_TRA); 0 on a PC. */
  readonly translation?: number | bigint;
}

function addressSpace(
  tag: number,
  width: number,
  type: number,
  typeFlags: number,
  r: AddressRange,
  what: string,
): Resource {
  const bits = width * 8;
  const min = uint(`${what} min`, r.min, bits);
  const max = uint(`${what} max`, r.max, bits);
  if (max < min) throw new AmlError(`${what}: max 0x${max.toString(16)} below min 0x${min.toString(16)}`);
  const length = max - min + 1n;
  uint(`${what} length`, length, bits);
  const translation = uint(`${what} translation`, r.translation ?? 0, bits);
  // ResourceProducer (bit 0 clear), PosDecode, MinFixed, MaxFixed; granularity 0 for I/O and memory windows.
  const general = GENERAL_FLAG_MIN_FIXED | GENERAL_FLAG_MAX_FIXED;
  return large(tag, [
    type,
    general,
    typeFlags,
    ...le(0, width),
    ...le(min, width),
    ...le(max, width),
    ...le(translation, width),
    ...le(length, width),
  ]);
}

/** WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, length): the buses decoded. */
export function wordBusNumber(r: AddressRange): Resource {
  return addressSpace(LARGE_WORD_ADDRESS, 2, ADDRESS_TYPE_BUS, 0, r, 'WordBusNumber');
}

/** DWordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...): an I/O window a bridge forwards. */
export function dwordIo(r: AddressRange): Resource {
  return addressSpace(LARGE_DWORD_ADDRESS, 4, ADDRESS_TYPE_IO, IO_FLAG_ENTIRE_RANGE, r, 'DWordIO');
}

/** DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable|NonCacheable, ReadWrite, ...). */
export function dwordMemory(r: AddressRange & { cacheable: boolean }): Resource {
  const flags = MEMORY_FLAG_READ_WRITE | (r.cacheable ? MEMORY_FLAG_CACHEABLE : 0);
  return addressSpace(LARGE_DWORD_ADDRESS, 4, ADDRESS_TYPE_MEMORY, flags, r, 'DWordMemory');
}

/** QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable|NonCacheable, ReadWrite, ...). */
export function qwordMemory(r: AddressRange & { cacheable: boolean }): Resource {
  const flags = MEMORY_FLAG_READ_WRITE | (r.cacheable ? MEMORY_FLAG_CACHEABLE : 0);
  return addressSpace(LARGE_QWORD_ADDRESS, 8, ADDRESS_TYPE_MEMORY, flags, r, 'QWordMemory');
}

/**
 * ResourceTemplate() { descriptors }: a Buffer holding the descriptors and an End Tag whose checksum byte makes
 * the whole template (End Tag included) sum to zero modulo 256.
 */
export function resourceTemplate(descriptors: readonly Resource[]): Aml<'data'> {
  const body = concat([...descriptors.map((d) => d.bytes), [(SMALL_END_TAG << 3) | 1]]);
  let sum = 0;
  for (const b of body) sum = (sum + b) & 0xff;
  return buffer(concat([body, [(0x100 - sum) & 0xff]]));
}
