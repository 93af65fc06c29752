// Checked conversions between plain values and record fields. A record may come from a checkpoint file, so every
// read checks: a string's length against its buffer and its bytes as UTF-8, a u64 against 2^53 before it becomes a
// JS number, a count against its array, an enum word against the words this version knows. Each error names the
// field in the caller's terms ("config serial[0] path"), which the generic vmstate accessors cannot.
/** Linux's PATH_MAX: the longest path (in bytes, with its NUL) the kernel accepts, so the longest a record holds. */
export const PATH_MAX = 4096;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Writes `value` as UTF-8 into `buffer` and returns its byte length; a string that does not fit is an error. */
export function writeText(buffer: Uint8Array, value: string, what: string): number {
  if (typeof value !== 'string') throw new TypeError(`${what}: expected a string, got ${typeof value}`);
  const { read, written } = encoder.encodeInto(value, buffer);
  if (read !== value.length) {
    throw new RangeError(`${what}: ${encoder.encode(value).length} bytes of UTF-8 do not fit in ${buffer.length}`);
  }
  buffer.fill(0, written);
  return written;
}

/** The string a record holds: `length` bytes of `buffer`, which must be in range and valid UTF-8. */
export function readText(buffer: Uint8Array, length: number, what: string): string {
  if (!Number.isInteger(length) || length < 0 || length > buffer.length) {
    throw new RangeError(`${what}: length ${length} is outside its buffer of ${buffer.length} bytes`);
  }
  try {
    return decoder.decode(buffer.slice(0, length)); // a copy: TextDecoder may refuse views of shared memory
  } catch {
    throw new RangeError(`${what}: the ${length} bytes are not valid UTF-8`);
  }
}

/** A non-negative safe integer as a u64. */
export function toU64(value: number, what: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${what}: ${value} is not a non-negative integer`);
  return BigInt(value);
}

/** A u64 back to a number; above 2^53 it would lose bits, so that is refused. */
export function fromU64(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${what}: ${value} is beyond 2^53`);
  return Number(value);
}

/** A count read from a record (a checkpoint may hold anything): an integer no greater than the array's capacity. */
export function checkedCount(count: number, capacity: number, what: string): number {
  if (!Number.isInteger(count) || count < 0 || count > capacity) {
    throw new RangeError(`${what}: count ${count} exceeds the capacity of ${capacity}`);
  }
  return count;
}

/** One of the allowed words; anything else (a newer or corrupt record) is refused. */
export function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new RangeError(`${what}: '${value}' is not one of ${allowed.join(', ')}`);
  }
  return value as T;
}
