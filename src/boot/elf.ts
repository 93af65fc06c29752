// ELF file parsing for the loaders: the identification bytes, and ELF32 program headers (multiboot kernels). Every
// offset, count and size in the file is untrusted and checked against the file's length before use.
import { SetupError } from '../util/setup-error.js';

/** "\x7fELF" */
export const ELF_MAGIC = 0x464c457f;
/** e_ident[EI_CLASS] */
export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
/** e_ident[EI_DATA]: little-endian */
export const ELFDATA2LSB = 1;
/** e_ident[EI_VERSION] / e_version */
export const EV_CURRENT = 1;
/** e_type: executable */
export const ET_EXEC = 2;
/** e_machine: Intel 80386 */
export const EM_386 = 3;
/** e_machine: AMD x86-64 */
export const EM_X86_64 = 62;
/** p_type: loadable segment */
export const PT_LOAD = 1;
/** p_flags: executable */
export const PF_X = 1;
/** e_phnum value meaning "the real count is elsewhere": never used by kernels, refused. */
export const PN_XNUM = 0xffff;

/** ELF32 file header size; program header entry size. */
export const ELF32_EHDR_SIZE = 52;
export const ELF32_PHDR_SIZE = 32;

export class ElfError extends SetupError {
  constructor(message: string) {
    super(`ELF: ${message}`);
    this.name = 'ElfError';
  }
}

export interface ElfIdent {
  elfClass: number;
  data: number;
  machine: number;
}

/** The class, byte order and machine of an ELF file, or null if `bytes` does not start with the ELF magic. */
export function elfIdent(bytes: Uint8Array): ElfIdent | null {
  if (bytes.length < 20) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== ELF_MAGIC) return null;
  const data = bytes[5];
  return { elfClass: bytes[4], data, machine: dv.getUint16(18, data !== 2) };
}

export interface Elf32Segment {
  /** Index in the program header table (for messages). */
  index: number;
  offset: number;
  vaddr: number;
  paddr: number;
  filesz: number;
  memsz: number;
  flags: number;
}

export interface Elf32Image {
  entry: number;
  /** PT_LOAD segments with a non-zero memory size, in file order. */
  segments: Elf32Segment[];
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Parses an x86 ELF32 executable's header and PT_LOAD program headers, checking every field against the file. */
export function parseElf32(bytes: Uint8Array): Elf32Image {
  if (bytes.length < ELF32_EHDR_SIZE) throw new ElfError(`file is ${bytes.length} bytes, shorter than an ELF32 header`);
  const ident = elfIdent(bytes);
  if (!ident) throw new ElfError('no ELF magic');
  if (ident.elfClass === ELFCLASS64) throw new ElfError('this is a 64-bit ELF; a 32-bit one is needed here');
  if (ident.elfClass !== ELFCLASS32) throw new ElfError(`unknown ELF class ${ident.elfClass}`);
  if (ident.data !== ELFDATA2LSB) throw new ElfError('not little-endian');
  if (bytes[6] !== EV_CURRENT) throw new ElfError(`unknown ELF version ${bytes[6]}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC) throw new ElfError(`e_type ${type} is not ET_EXEC (an executable)`);
  if (ident.machine !== EM_386) throw new ElfError(`e_machine ${ident.machine} is not EM_386`);
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  if (phnum === 0) throw new ElfError('no program headers');
  if (phnum === PN_XNUM) throw new ElfError('extended program header count (PN_XNUM) is not supported');
  if (phentsize < ELF32_PHDR_SIZE) throw new ElfError(`e_phentsize ${phentsize} is smaller than ${ELF32_PHDR_SIZE}`);
  if (phoff + phnum * phentsize > bytes.length) {
    throw new ElfError(
      `program headers at ${hex(phoff)} (${phnum} x ${phentsize} bytes) run past the end of the file (${bytes.length} bytes)`,
    );
  }
  const segments: Elf32Segment[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = phoff + index * phentsize;
    if (dv.getUint32(at, true) !== PT_LOAD) continue;
    const seg: Elf32Segment = {
      index,
      offset: dv.getUint32(at + 4, true),
      vaddr: dv.getUint32(at + 8, true),
      paddr: dv.getUint32(at + 12, true),
      filesz: dv.getUint32(at + 16, true),
      memsz: dv.getUint32(at + 20, true),
      flags: dv.getUint32(at + 24, true),
    };
    if (seg.filesz > seg.memsz) {
      throw new ElfError(`segment ${index}: p_filesz ${hex(seg.filesz)} is larger than p_memsz ${hex(seg.memsz)}`);
    }
    if (seg.offset + seg.filesz > bytes.length) {
      throw new ElfError(
        `segment ${index}: file bytes [${hex(seg.offset)}, ${hex(seg.offset + seg.filesz)}) run past the end of the file (${bytes.length} bytes)`,
      );
    }
    if (seg.paddr + seg.memsz > 2 ** 32) {
      throw new ElfError(`segment ${index}: [${hex(seg.paddr)}, +${hex(seg.memsz)}) runs past 4 GiB`);
    }
    if (seg.memsz > 0) segments.push(seg);
  }
  if (segments.length === 0) throw new ElfError('no PT_LOAD segment with a non-zero size');
  const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].paddr < prev.paddr + prev.memsz) {
      throw new ElfError(`segments ${prev.index} and ${sorted[i].index} overlap at ${hex(sorted[i].paddr)}`);
    }
  }
  return { entry, segments };
}

/**
 * The physical entry address. e_entry is virtual; when an executable segment that contains it is linked with
 * p_vaddr != p_paddr, translate it the way QEMU's ELF loader does (so "higher-half" kernels start correctly).
 */
export function elf32PhysicalEntry(image: Elf32Image): number {
  for (const seg of image.segments) {
    if (
      seg.vaddr !== seg.paddr &&
      (seg.flags & PF_X) !== 0 &&
      image.entry >= seg.vaddr &&
      image.entry < seg.vaddr + seg.filesz
    ) {
      return image.entry - seg.vaddr + seg.paddr;
    }
  }
  return image.entry;
}
