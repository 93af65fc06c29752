// The one ELF reader: the multiboot loader (ELF32), the Linux loader (a vmlinux, ELF32 or ELF64) and the initramfs
// builder (busybox, kernel modules) read their files through it. Every offset, size and count in the file is
// untrusted: each is checked against the file's length, with bigint arithmetic so 64-bit fields cannot wrap, before
// anything is read or cut out, so a malformed file is one clear ElfError (never a RangeError or a huge allocation).
// What to do with a well-formed file (where it may load, which entry to use) is the loaders' business.
import { alignUp } from '../util/align.js';
import { hex } from '../util/hex.js';
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
/** p_type: the path of the program interpreter (the dynamic loader) */
export const PT_INTERP = 3;
/** p_type: notes */
export const PT_NOTE = 4;
/** p_flags: executable */
export const PF_X = 1;
/** sh_type: notes */
export const SHT_NOTE = 7;
/** e_phnum value meaning "the real count is elsewhere": never used by kernels, refused. */
export const PN_XNUM = 0xffff;

/** e_ident's size: the magic, class, byte order and version all lie in it. */
const EI_NIDENT = 16;
/** Physical addresses and sizes up to here are exact as numbers and could be guest RAM. */
const MAX_ADDRESS = 2n ** 52n;

const MACHINE_NAMES: Record<number, string> = { [EM_386]: 'EM_386', [EM_X86_64]: 'EM_X86_64' };

/** Where the header fields and the table entries' fields lie, per class (the System V gABI's Elf32_* / Elf64_*). */
const LAYOUT = {
  [ELFCLASS32]: {
    ehdrSize: 52,
    ehdr: { entry: 24, phoff: 28, shoff: 32, phentsize: 42, phnum: 44, shentsize: 46, shnum: 48, shstrndx: 50 },
    phdrSize: 32,
    phdr: { flags: 24, offset: 4, vaddr: 8, paddr: 12, filesz: 16, memsz: 20, align: 28 },
    shdrSize: 40,
    shdr: { offset: 16, size: 20, align: 32 },
  },
  [ELFCLASS64]: {
    ehdrSize: 64,
    ehdr: { entry: 24, phoff: 32, shoff: 40, phentsize: 54, phnum: 56, shentsize: 58, shnum: 60, shstrndx: 62 },
    phdrSize: 56,
    phdr: { flags: 4, offset: 8, vaddr: 16, paddr: 24, filesz: 32, memsz: 40, align: 48 },
    shdrSize: 64,
    shdr: { offset: 24, size: 32, align: 48 },
  },
} as const;

export type ElfClass = typeof ELFCLASS32 | typeof ELFCLASS64;
type ElfLayout = (typeof LAYOUT)[ElfClass];

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

/** True when `bytes` holds a whole e_ident starting with the ELF magic. */
export function hasElfMagic(bytes: Uint8Array): boolean {
  return bytes.length >= EI_NIDENT && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/** The class, byte order and machine of an ELF file, or null if `bytes` does not start with the ELF magic. */
export function elfIdent(bytes: Uint8Array): ElfIdent | null {
  if (bytes.length < 20) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== ELF_MAGIC) return null;
  const data = bytes[5];
  return { elfClass: bytes[4], data, machine: dv.getUint16(18, data !== 2) };
}

/** A program header as the file states it (before any check of what it points at). */
export interface ElfProgramHeader {
  /** Index in the program header table (for messages). */
  index: number;
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

/** A section header as the file states it. */
export interface ElfSectionHeader {
  index: number;
  /** sh_name: offset of the name in the section name table. */
  name: number;
  type: number;
  offset: bigint;
  size: bigint;
  align: bigint;
}

/** A PT_LOAD segment that takes memory, checked against the file: its file bytes are [offset, offset + filesz). */
export interface ElfSegment {
  index: number;
  offset: number;
  filesz: number;
  memsz: number;
  paddr: number;
  /** Virtual address: a bigint, since x86-64 kernels link at 0xffffffff8…. */
  vaddr: bigint;
  flags: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

/** A little-endian ELF32 or ELF64 file whose header has been read and checked; its tables are read on demand. */
export class ElfFile {
  readonly elfClass: ElfClass;
  readonly type: number;
  readonly machine: number;
  /** e_entry as linked (often a virtual address). */
  readonly entry: bigint;
  /** The tables as the header states them: checked only when programHeaders() / sectionHeaders() read them. */
  readonly phoff: bigint;
  readonly phentsize: number;
  readonly phnum: number;
  readonly shoff: bigint;
  readonly shentsize: number;
  readonly shnum: number;
  readonly shstrndx: number;
  private readonly layout: ElfLayout;
  private readonly dv: DataView;

  /** Reads the file header: the magic, a known class, a whole header, little-endian, version 1. */
  static read(bytes: Uint8Array): ElfFile {
    if (!hasElfMagic(bytes)) throw new ElfError('no ELF magic');
    const elfClass = bytes[4];
    if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) throw new ElfError(`unknown class ${elfClass}`);
    const { ehdrSize } = LAYOUT[elfClass];
    if (bytes.length < ehdrSize) {
      throw new ElfError(`the file is ${bytes.length} bytes, shorter than its ${ehdrSize}-byte header`);
    }
    if (bytes[5] !== ELFDATA2LSB) throw new ElfError('not little-endian');
    if (bytes[6] !== EV_CURRENT) throw new ElfError(`unknown version ${bytes[6]}`);
    return new ElfFile(bytes, elfClass);
  }

  private constructor(
    readonly bytes: Uint8Array,
    elfClass: ElfClass,
  ) {
    this.elfClass = elfClass;
    this.layout = LAYOUT[elfClass];
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const h = this.layout.ehdr;
    this.type = this.u16(16);
    this.machine = this.u16(18);
    this.entry = this.word(h.entry);
    this.phoff = this.word(h.phoff);
    this.phentsize = this.u16(h.phentsize);
    this.phnum = this.u16(h.phnum);
    this.shoff = this.word(h.shoff);
    this.shentsize = this.u16(h.shentsize);
    this.shnum = this.u16(h.shnum);
    this.shstrndx = this.u16(h.shstrndx);
  }

  get is64(): boolean {
    return this.elfClass === ELFCLASS64;
  }

  /** Refuses anything but an executable (ET_EXEC) for `machine` (EM_386 or EM_X86_64). */
  requireExecutable(machine: number): void {
    if (this.type !== ET_EXEC) throw new ElfError(`e_type ${this.type} is not ET_EXEC (an executable)`);
    if (this.machine !== machine) {
      const wanted = machine in MACHINE_NAMES ? `${MACHINE_NAMES[machine]} (${machine})` : String(machine);
      throw new ElfError(`e_machine ${this.machine} is not ${wanted}`);
    }
  }

  /** The program header table (empty when the file has none), checked to lie wholly in the file. */
  programHeaders(): ElfProgramHeader[] {
    const { phnum: count, phentsize: entrySize } = this;
    if (count === 0) return [];
    if (count === PN_XNUM) throw new ElfError('extended program header count (PN_XNUM) is not supported');
    if (entrySize < this.layout.phdrSize) {
      throw new ElfError(`e_phentsize ${entrySize} is smaller than ${this.layout.phdrSize}`);
    }
    const table = this.tableOffset('program header table', this.phoff, count, entrySize);
    const p = this.layout.phdr;
    return Array.from({ length: count }, (_, index) => {
      const at = table + index * entrySize;
      return {
        index,
        type: this.u32(at),
        flags: this.u32(at + p.flags),
        offset: this.word(at + p.offset),
        vaddr: this.word(at + p.vaddr),
        paddr: this.word(at + p.paddr),
        filesz: this.word(at + p.filesz),
        memsz: this.word(at + p.memsz),
        align: this.word(at + p.align),
      };
    });
  }

  /** The section header table (empty when e_shoff or e_shnum is 0), checked to lie wholly in the file. */
  sectionHeaders(): ElfSectionHeader[] {
    const { shoff: offset, shnum: count, shentsize: entrySize } = this;
    if (offset === 0n || count === 0) return [];
    if (entrySize < this.layout.shdrSize) {
      throw new ElfError(`e_shentsize ${entrySize} is smaller than ${this.layout.shdrSize}`);
    }
    const table = this.tableOffset('section header table', offset, count, entrySize);
    const s = this.layout.shdr;
    return Array.from({ length: count }, (_, index) => {
      const at = table + index * entrySize;
      return {
        index,
        name: this.u32(at),
        type: this.u32(at + 4),
        offset: this.word(at + s.offset),
        size: this.word(at + s.size),
        align: this.word(at + s.align),
      };
    });
  }

  /**
   * The PT_LOAD segments that take memory, in file order: each one's file bytes inside the file, p_filesz ≤ p_memsz,
   * physical addresses a number can hold, no two overlapping.
   */
  loadSegments(): ElfSegment[] {
    if (this.phnum === 0) throw new ElfError('no program headers');
    const segments: ElfSegment[] = [];
    for (const ph of this.programHeaders()) {
      if (ph.type !== PT_LOAD) continue;
      const { index, paddr, memsz, filesz } = ph;
      const file = this.fileRange(`segment ${index}'s file bytes`, ph.offset, filesz);
      if (memsz === 0n) continue;
      if (filesz > memsz)
        throw new ElfError(`segment ${index}: p_filesz ${hex(filesz)} is larger than p_memsz ${hex(memsz)}`);
      if (paddr + memsz > MAX_ADDRESS) {
        throw new ElfError(`segment ${index}: physical range [${hex(paddr)}, +${hex(memsz)}) is beyond any guest RAM`);
      }
      segments.push({
        index,
        offset: file.offset,
        filesz: file.size,
        memsz: Number(memsz),
        paddr: Number(paddr),
        vaddr: ph.vaddr,
        flags: ph.flags,
      });
    }
    if (segments.length === 0) throw new ElfError('no PT_LOAD segment with a non-zero size');
    const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      if (sorted[i].paddr < prev.paddr + prev.memsz) {
        throw new ElfError(`segments ${prev.index} and ${sorted[i].index} overlap at physical ${hex(sorted[i].paddr)}`);
      }
    }
    return segments;
  }

  /** The contents of the section called `name`, or null when the file has no such section (or no sections). */
  section(name: string): Uint8Array | null {
    const sections = this.sectionHeaders();
    if (sections.length === 0) return null;
    if (this.shstrndx >= sections.length) {
      throw new ElfError(`section name table index ${this.shstrndx} out of range (${sections.length} sections)`);
    }
    const contents = (s: ElfSectionHeader) => this.slice(`section ${s.index}`, s.offset, s.size);
    const names = contents(sections[this.shstrndx]);
    const wanted = new TextEncoder().encode(`${name}\0`);
    const named = sections.find(
      (s) => s.name + wanted.length <= names.length && wanted.every((b, i) => names[s.name + i] === b),
    );
    return named ? contents(named) : null;
  }

  /** The bytes [offset, offset + size) of the file, refused when any of them lies past its end. */
  slice(what: string, offset: bigint, size: bigint): Uint8Array {
    const range = this.fileRange(what, offset, size);
    return this.bytes.subarray(range.offset, range.offset + range.size);
  }

  /** [offset, offset + size) checked against the file, as numbers. */
  private fileRange(what: string, offset: bigint, size: bigint): { offset: number; size: number } {
    if (offset + size > BigInt(this.bytes.length)) {
      throw new ElfError(
        `${what} [${hex(offset)}, +${hex(size)}) runs past the end of the file (${this.bytes.length} bytes)`,
      );
    }
    return { offset: Number(offset), size: Number(size) };
  }

  /** The file offset of a table of `count` entries of `entrySize` bytes at `offset`, checked against the file. */
  private tableOffset(what: string, offset: bigint, count: number, entrySize: number): number {
    return this.fileRange(what, offset, BigInt(count) * BigInt(entrySize)).offset;
  }

  private u16(at: number): number {
    return this.dv.getUint16(at, true);
  }

  private u32(at: number): number {
    return this.dv.getUint32(at, true);
  }

  /** A class-sized field: u32 in ELF32, u64 in ELF64. */
  private word(at: number): bigint {
    return this.is64 ? this.dv.getBigUint64(at, true) : BigInt(this.dv.getUint32(at, true));
  }
}

/**
 * The notes in `bytes`, the contents of a PT_NOTE segment or SHT_NOTE section (`what` in errors): name and desc each
 * padded to 8 bytes when the segment or section is 8-aligned, else to 4.
 */
export function parseNotes(what: string, bytes: Uint8Array, align: bigint): ElfNote[] {
  const alignment = align === 8n ? 8 : 4;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const notes: ElfNote[] = [];
  for (let at = 0; at + 12 <= bytes.length; ) {
    const namesz = dv.getUint32(at, true);
    const descsz = dv.getUint32(at + 4, true);
    const type = dv.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + alignUp(namesz, alignment);
    if (descAt + descsz > bytes.length) {
      throw new ElfError(`a note in ${what} (name size ${namesz}, desc size ${descsz}) runs past its end`);
    }
    const nameBytes = bytes.subarray(nameAt, nameAt + namesz);
    const nul = nameBytes.indexOf(0);
    notes.push({
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      type,
      desc: bytes.subarray(descAt, descAt + descsz),
    });
    at = descAt + alignUp(descsz, alignment);
  }
  return notes;
}
