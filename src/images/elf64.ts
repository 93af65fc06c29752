// The two things the image builder needs to know about an ELF64 file: whether an executable asks for a dynamic
// loader (PT_INTERP: a dynamically linked busybox cannot run in an initramfs without a libc), and the bytes of a
// named section (a kernel module's .modinfo). Every offset and size comes from the file and is checked first.
import { ELF_MAGIC, ELFCLASS64, ELFDATA2LSB } from '../boot/elf.js';

/** ELF64 header fields we read: e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx. */
const E_PHOFF = 0x20;
const E_SHOFF = 0x28;
const E_PHENTSIZE = 0x36;
const E_PHNUM = 0x38;
const E_SHENTSIZE = 0x3a;
const E_SHNUM = 0x3c;
const E_SHSTRNDX = 0x3e;
const ELF64_EHDR_SIZE = 64;
/** Program header: p_type at 0; entries are at least 56 bytes. */
const ELF64_PHDR_SIZE = 56;
/** p_type: the path of the program interpreter (the dynamic loader). */
const PT_INTERP = 3;
/** Section header: sh_name at 0, sh_offset at 0x18, sh_size at 0x20; entries are at least 64 bytes. */
const ELF64_SHDR_SIZE = 64;
const SH_OFFSET = 0x18;
const SH_SIZE = 0x20;

export class Elf64Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Elf64Error';
  }
}

function header(bytes: Uint8Array, what: string): DataView {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < ELF64_EHDR_SIZE || dv.getUint32(0, true) !== ELF_MAGIC)
    throw new Elf64Error(`${what} is not an ELF file`);
  if (bytes[4] !== ELFCLASS64 || bytes[5] !== ELFDATA2LSB)
    throw new Elf64Error(`${what} is not a little-endian 64-bit ELF file`);
  return dv;
}

/** A 64-bit file offset as a number, refused when it points past the file. */
function offset64(dv: DataView, at: number, limit: number, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(limit)) throw new Elf64Error(`${what}: offset ${v} past the end of the file (${limit} bytes)`);
  return Number(v);
}

/** True when the executable names a program interpreter, i.e. is dynamically linked. */
export function hasInterpreter(bytes: Uint8Array, what: string): boolean {
  const dv = header(bytes, what);
  const phoff = offset64(dv, E_PHOFF, bytes.length, what);
  const entSize = dv.getUint16(E_PHENTSIZE, true);
  const count = dv.getUint16(E_PHNUM, true);
  if (count === 0) return false;
  if (entSize < ELF64_PHDR_SIZE || phoff + entSize * count > bytes.length)
    throw new Elf64Error(`${what}: program headers run past the end of the file`);
  for (let i = 0; i < count; i++) if (dv.getUint32(phoff + i * entSize, true) === PT_INTERP) return true;
  return false;
}

/** The contents of the section called `name`, or null if the file has none. */
export function sectionBytes(bytes: Uint8Array, name: string, what: string): Uint8Array | null {
  const dv = header(bytes, what);
  const shoff = offset64(dv, E_SHOFF, bytes.length, what);
  const entSize = dv.getUint16(E_SHENTSIZE, true);
  const count = dv.getUint16(E_SHNUM, true);
  const strIndex = dv.getUint16(E_SHSTRNDX, true);
  if (count === 0) return null;
  if (entSize < ELF64_SHDR_SIZE || shoff + entSize * count > bytes.length)
    throw new Elf64Error(`${what}: section headers run past the end of the file`);
  if (strIndex >= count) throw new Elf64Error(`${what}: section name table index ${strIndex} out of range`);
  const body = (i: number): Uint8Array => {
    const at = shoff + i * entSize;
    const start = offset64(dv, at + SH_OFFSET, bytes.length, what);
    const size = offset64(dv, at + SH_SIZE, bytes.length, what);
    if (start + size > bytes.length) throw new Elf64Error(`${what}: section ${i} runs past the end of the file`);
    return bytes.subarray(start, start + size);
  };
  const names = body(strIndex);
  const wanted = Buffer.from(`${name}\0`);
  for (let i = 0; i < count; i++) {
    const nameAt = dv.getUint32(shoff + i * entSize, true);
    if (nameAt + wanted.length > names.length) continue;
    if (Buffer.from(names.subarray(nameAt, nameAt + wanted.length)).equals(wanted)) return body(i);
  }
  return null;
}
