// The two things the image builder needs to know about an ELF64 file: whether an executable asks for a dynamic
// loader (PT_INTERP: a dynamically linked busybox cannot run in an initramfs without a libc), and the bytes of a
// named section (a kernel module's .modinfo). The ELF reader (src/boot/elf.ts) checks every offset and size; what it
// refuses comes out as an Elf64Error that names the file.
import { ELFCLASS64, ELFDATA2LSB, ElfError, ElfFile, hasElfMagic, PT_INTERP } from '../boot/elf.js';

export class Elf64Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Elf64Error';
  }
}

/** `use` applied to `bytes` read as a little-endian ELF64 file; `what` names the file in errors. */
function withElf64<T>(bytes: Uint8Array, what: string, use: (elf: ElfFile) => T): T {
  if (!hasElfMagic(bytes)) throw new Elf64Error(`${what} is not an ELF file`);
  if (bytes[4] !== ELFCLASS64 || bytes[5] !== ELFDATA2LSB)
    throw new Elf64Error(`${what} is not a little-endian 64-bit ELF file`);
  try {
    return use(ElfFile.read(bytes));
  } catch (e) {
    if (e instanceof ElfError) throw new Elf64Error(`${what}: ${e.message}`);
    throw e;
  }
}

/** True when the executable names a program interpreter, i.e. is dynamically linked. */
export function hasInterpreter(bytes: Uint8Array, what: string): boolean {
  return withElf64(bytes, what, (elf) => elf.programHeaders().some((ph) => ph.type === PT_INTERP));
}

/** The contents of the section called `name`, or null if the file has none. */
export function sectionBytes(bytes: Uint8Array, name: string, what: string): Uint8Array | null {
  return withElf64(bytes, what, (elf) => elf.section(name));
}
