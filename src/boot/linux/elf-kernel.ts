// Reading an ELF kernel (an uncompressed vmlinux, 64- or 32-bit): its loadable segments, its entry point, and the
// PVH entry the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY carries. Every offset, size and count in the file is untrusted
// and checked against the file (with bigint arithmetic, so 64-bit fields cannot wrap) before it is used.
import { LinuxBootError } from './error.js';
import { XEN_ELFNOTE_PHYS32_ENTRY } from './layout.js';
import { hex } from '../../util/hex.js';

/** "\x7fELF" */
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
/** e_ident[EI_CLASS] */
export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
/** e_ident[EI_DATA]: little-endian. */
const ELFDATA2LSB = 1;
/** e_ident[EI_VERSION]. */
const EV_CURRENT = 1;
/** e_type: executable. */
const ET_EXEC = 2;
/** e_machine values. */
export const EM_386 = 3;
export const EM_X86_64 = 62;
/** p_type: loadable segment. */
const PT_LOAD = 1;
/** p_type: notes. */
const PT_NOTE = 4;
/** sh_type: notes. */
const SHT_NOTE = 7;
/** e_phnum value meaning "the count is elsewhere": kernels never use it. */
const PN_XNUM = 0xffff;

/** Header and table entry sizes per class. */
const SIZES = {
  [ELFCLASS32]: { ehdr: 52, phdr: 32, shdr: 40 },
  [ELFCLASS64]: { ehdr: 64, phdr: 56, shdr: 64 },
} as const;

/** Addresses we can represent exactly and that could be guest RAM. */
const MAX_ADDRESS = 2n ** 52n;

export interface KernelElfSegment {
  /** Index in the program header table (for messages). */
  index: number;
  offset: number;
  filesz: number;
  memsz: number;
  paddr: number;
  /** Virtual address: a bigint, since x86-64 kernels link at 0xffffffff8…. */
  vaddr: bigint;
}

export interface KernelElf {
  elfClass: typeof ELFCLASS32 | typeof ELFCLASS64;
  /** e_entry as linked (often virtual). */
  entry: bigint;
  /** PT_LOAD segments with a non-zero memory size, in file order. */
  segments: KernelElfSegment[];
  /** [lowest paddr, highest paddr + memsz) over the segments. */
  start: number;
  end: number;
  /** The 32-bit physical PVH entry from the Xen note, or null when the kernel has none. */
  pvhEntry: number | null;
}

/** The class of an ELF file (1 or 2), or null when `image` is not ELF. */
export function elfClassOf(image: Uint8Array): number | null {
  if (image.length < 16 || ELF_MAGIC.some((b, i) => image[i] !== b)) return null;
  return image[4];
}

class Reader {
  readonly dv: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly is64: boolean,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u16(at: number): number {
    return this.dv.getUint16(at, true);
  }
  u32(at: number): number {
    return this.dv.getUint32(at, true);
  }
  u64(at: number): bigint {
    return this.dv.getBigUint64(at, true);
  }
  /** A class-sized word: u32 in ELF32, u64 in ELF64. */
  word(at32: number, at64: number): bigint {
    return this.is64 ? this.u64(at64) : BigInt(this.u32(at32));
  }
}

/** A file range [offset, offset+size) checked against the file, as numbers. */
function fileRange(what: string, offset: bigint, size: bigint, fileLength: number): { offset: number; size: number } {
  if (offset + size > BigInt(fileLength)) {
    throw new LinuxBootError(
      `ELF: ${what} [${hex(offset)}, +${hex(size)}) runs past the end of the file (${fileLength} bytes)`,
    );
  }
  return { offset: Number(offset), size: Number(size) };
}

interface Note {
  name: string;
  type: number;
  desc: Uint8Array;
}

/** Walks the notes in `bytes` (one PT_NOTE segment or SHT_NOTE section), each field padded to `align`. */
function parseNotes(what: string, bytes: Uint8Array, align: number): Note[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pad = (n: number) => Math.ceil(n / align) * align;
  const notes: Note[] = [];
  let at = 0;
  while (at + 12 <= bytes.length) {
    const namesz = dv.getUint32(at, true);
    const descsz = dv.getUint32(at + 4, true);
    const type = dv.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + pad(namesz);
    const next = descAt + pad(descsz);
    if (descAt + descsz > bytes.length) {
      throw new LinuxBootError(`ELF: a note in ${what} (name size ${namesz}, desc size ${descsz}) runs past its end`);
    }
    const nameBytes = bytes.subarray(nameAt, nameAt + namesz);
    const nul = nameBytes.indexOf(0);
    notes.push({
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      type,
      desc: bytes.subarray(descAt, descAt + descsz),
    });
    at = next;
  }
  return notes;
}

function pvhFromNotes(notes: Note[]): number | null {
  const note = notes.find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (!note) return null;
  const dv = new DataView(note.desc.buffer, note.desc.byteOffset, note.desc.byteLength);
  let entry: bigint;
  if (note.desc.length === 4) entry = BigInt(dv.getUint32(0, true));
  else if (note.desc.length === 8) entry = dv.getBigUint64(0, true);
  else
    throw new LinuxBootError(
      `ELF: the PVH entry note (Xen, type ${XEN_ELFNOTE_PHYS32_ENTRY}) has a ${note.desc.length}-byte value, not 4 or 8`,
    );
  if (entry >= 2n ** 32n) throw new LinuxBootError(`ELF: PVH entry ${hex(entry)} is not a 32-bit physical address`);
  return Number(entry);
}

/** Parses an x86 ELF kernel (ELF32/EM_386 or ELF64/EM_X86_64, little-endian, ET_EXEC). */
export function parseKernelElf(image: Uint8Array): KernelElf {
  const elfClass = elfClassOf(image);
  if (elfClass === null) throw new LinuxBootError('ELF: no ELF magic');
  if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) throw new LinuxBootError(`ELF: unknown class ${elfClass}`);
  const size = SIZES[elfClass];
  if (image.length < size.ehdr)
    throw new LinuxBootError(`ELF: the file is ${image.length} bytes, shorter than its ${size.ehdr}-byte header`);
  if (image[5] !== ELFDATA2LSB) throw new LinuxBootError('ELF: not little-endian');
  if (image[6] !== EV_CURRENT) throw new LinuxBootError(`ELF: unknown version ${image[6]}`);
  const is64 = elfClass === ELFCLASS64;
  const r = new Reader(image, is64);
  const type = r.u16(16);
  if (type !== ET_EXEC) throw new LinuxBootError(`ELF: e_type ${type} is not ET_EXEC (an executable)`);
  const machine = r.u16(18);
  const wantMachine = is64 ? EM_X86_64 : EM_386;
  if (machine !== wantMachine) {
    throw new LinuxBootError(`ELF: e_machine ${machine} is not ${is64 ? 'EM_X86_64 (62)' : 'EM_386 (3)'}`);
  }
  const entry = r.word(24, 24);
  const phoff = r.word(28, 32);
  const shoff = r.word(32, 40);
  const phentsize = r.u16(is64 ? 54 : 42);
  const phnum = r.u16(is64 ? 56 : 44);
  const shentsize = r.u16(is64 ? 58 : 46);
  const shnum = r.u16(is64 ? 60 : 48);
  if (phnum === 0) throw new LinuxBootError('ELF: no program headers');
  if (phnum === PN_XNUM) throw new LinuxBootError('ELF: extended program header count (PN_XNUM) is not supported');
  if (phentsize < size.phdr) throw new LinuxBootError(`ELF: e_phentsize ${phentsize} is smaller than ${size.phdr}`);
  const ph = fileRange('program header table', phoff, BigInt(phnum) * BigInt(phentsize), image.length);

  const segments: KernelElfSegment[] = [];
  const noteRanges: { what: string; offset: number; size: number; align: number }[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = ph.offset + index * phentsize;
    const ptype = r.u32(at);
    if (ptype !== PT_LOAD && ptype !== PT_NOTE) continue;
    const offset = r.word(at + 4, at + 8);
    const vaddr = r.word(at + 8, at + 16);
    const paddr = r.word(at + 12, at + 24);
    const filesz = r.word(at + 16, at + 32);
    const memsz = r.word(at + 20, at + 40);
    const align = r.word(at + 28, at + 48);
    const file = fileRange(`segment ${index}'s file bytes`, offset, filesz, image.length);
    if (ptype === PT_NOTE) {
      noteRanges.push({
        what: `note segment ${index}`,
        offset: file.offset,
        size: file.size,
        align: align === 8n ? 8 : 4,
      });
      continue;
    }
    if (memsz === 0n) continue;
    if (filesz > memsz)
      throw new LinuxBootError(`ELF: segment ${index}: p_filesz ${hex(filesz)} is larger than p_memsz ${hex(memsz)}`);
    if (paddr + memsz > MAX_ADDRESS)
      throw new LinuxBootError(
        `ELF: segment ${index}: physical range [${hex(paddr)}, +${hex(memsz)}) is beyond any guest RAM`,
      );
    segments.push({ index, offset: file.offset, filesz: file.size, memsz: Number(memsz), paddr: Number(paddr), vaddr });
  }
  if (segments.length === 0) throw new LinuxBootError('ELF: no PT_LOAD segment with a non-zero size');
  const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].paddr < prev.paddr + prev.memsz) {
      throw new LinuxBootError(
        `ELF: segments ${prev.index} and ${sorted[i].index} overlap at physical ${hex(sorted[i].paddr)}`,
      );
    }
  }

  // The PVH note: in a PT_NOTE segment (where Linux puts it), else in any SHT_NOTE section.
  let pvhEntry: number | null = null;
  for (const n of noteRanges) {
    pvhEntry = pvhFromNotes(parseNotes(n.what, image.subarray(n.offset, n.offset + n.size), n.align));
    if (pvhEntry !== null) break;
  }
  if (pvhEntry === null && shoff !== 0n && shnum !== 0) {
    if (shentsize < size.shdr) throw new LinuxBootError(`ELF: e_shentsize ${shentsize} is smaller than ${size.shdr}`);
    const sh = fileRange('section header table', shoff, BigInt(shnum) * BigInt(shentsize), image.length);
    for (let index = 0; index < shnum && pvhEntry === null; index++) {
      const at = sh.offset + index * shentsize;
      if (r.u32(at + 4) !== SHT_NOTE) continue;
      const offset = r.word(at + 16, at + 24);
      const sz = r.word(at + 20, at + 32);
      const align = r.word(at + 32, at + 48);
      const file = fileRange(`note section ${index}`, offset, sz, image.length);
      pvhEntry = pvhFromNotes(
        parseNotes(`note section ${index}`, image.subarray(file.offset, file.offset + file.size), align === 8n ? 8 : 4),
      );
    }
  }

  return {
    elfClass,
    entry,
    segments,
    pvhEntry,
    start: sorted[0].paddr,
    end: sorted.reduce((m, s) => Math.max(m, s.paddr + s.memsz), 0),
  };
}

/**
 * The physical address of e_entry: as is when it lies in a segment's physical range, else translated through the
 * segment whose virtual range holds it (a kernel linked at 0xffffffff81000000 and loaded at p_paddr).
 */
export function physicalEntry(elf: KernelElf): number {
  for (const s of elf.segments) {
    if (elf.entry >= BigInt(s.paddr) && elf.entry < BigInt(s.paddr + s.memsz)) return Number(elf.entry);
  }
  for (const s of elf.segments) {
    if (elf.entry >= s.vaddr && elf.entry < s.vaddr + BigInt(s.memsz)) return s.paddr + Number(elf.entry - s.vaddr);
  }
  throw new LinuxBootError(`ELF: entry point ${hex(elf.entry)} is not inside any loaded segment`);
}

/** The PVH entry of an ELF image, or null (no ELF, no note, or a malformed file). Never throws. */
export function findPvhEntry(image: Uint8Array): number | null {
  try {
    return parseKernelElf(image).pvhEntry;
  } catch {
    return null;
  }
}
