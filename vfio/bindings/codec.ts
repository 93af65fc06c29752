// Encoding and decoding the VFIO structures by field name, through the layout table (vfio/bindings/structs.ts):
// each struct is a Uint8Array the kernel reads or fills, with `argsz` set to its size (or more, for a capability
// chain). Fields are u16/u32/u64 little-endian; u64 fields are bigints.
import { fieldOf, sizeOf, type StructName } from './structs.js';

const dataView = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** A field of struct `name` at `base` in `buffer`: a number for u16/u32, a bigint for u64. */
export function getU32(buffer: Uint8Array, name: StructName, path: string, base = 0): number {
  const f = fieldOf(name, path);
  const v = dataView(buffer);
  if (f.size === 2) return v.getUint16(base + f.offset, true);
  if (f.size === 4) return v.getUint32(base + f.offset, true);
  throw new Error(`vfio codec: ${name}.${path} is ${f.size} bytes, not a u16/u32`);
}

export function getU64(buffer: Uint8Array, name: StructName, path: string, base = 0): bigint {
  const f = fieldOf(name, path);
  if (f.size !== 8) throw new Error(`vfio codec: ${name}.${path} is ${f.size} bytes, not a u64`);
  return dataView(buffer).getBigUint64(base + f.offset, true);
}

export function setField(buffer: Uint8Array, name: StructName, path: string, value: number | bigint): void {
  const f = fieldOf(name, path);
  const v = dataView(buffer);
  if (f.size === 8) v.setBigUint64(f.offset, BigInt(value), true);
  else if (f.size === 4) v.setUint32(f.offset, Number(value), true);
  else if (f.size === 2) v.setUint16(f.offset, Number(value), true);
  else throw new Error(`vfio codec: ${name}.${path} is ${f.size} bytes`);
}

/** A zeroed struct of `bytes` (default its size, more for a chain or data[]) with argsz and the given fields set. */
export function encode(
  name: StructName,
  fields: Readonly<Record<string, number | bigint>> = {},
  bytes = sizeOf(name),
): Uint8Array {
  const buffer = new Uint8Array(bytes);
  setField(buffer, name, 'argsz', bytes);
  for (const [path, value] of Object.entries(fields)) setField(buffer, name, path, value);
  return buffer;
}

/** struct vfio_irq_set with one s32 eventfd per vector in data[] (-1 unassigns). */
export function encodeIrqSetEventfds(flags: number, index: number, start: number, fds: readonly number[]): Uint8Array {
  const header = sizeOf('vfio_irq_set');
  const buffer = encode('vfio_irq_set', { flags, index, start, count: fds.length }, header + 4 * fds.length);
  const v = dataView(buffer);
  for (const [i, fd] of fds.entries()) v.setInt32(header + 4 * i, fd, true);
  return buffer;
}
