// Reading an ELF kernel (an uncompressed vmlinux, 64- or 32-bit) through the ELF reader (../elf.ts): its loadable
// segments, its entry point, and the PVH entry the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY carries. The reader checks
// every offset, size and count against the file; a malformed file is a LinuxBootError naming what is wrong.
import { hex } from '../../util/hex.js';
import {
  EM_386,
  EM_X86_64,
  ElfError,
  ElfFile,
  parseNotes,
  PT_NOTE,
  SHT_NOTE,
  type ElfClass,
  type ElfNote,
  type ElfSegment,
} from '../elf.js';
import { LinuxBootError } from './error.js';
import { XEN_ELFNOTE_PHYS32_ENTRY } from './layout.js';

/** A PT_LOAD segment with a non-zero memory size (its vaddr a bigint: x86-64 kernels link at 0xffffffff8…). */
export type KernelElfSegment = ElfSegment;

export interface KernelElf {
  elfClass: ElfClass;
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

/** The entry of the Xen note XEN_ELFNOTE_PHYS32_ENTRY among `notes`, or null when there is none. */
function pvhFromNotes(notes: readonly ElfNote[]): number | null {
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
  try {
    const elf = ElfFile.read(image);
    elf.requireExecutable(elf.is64 ? EM_X86_64 : EM_386);
    const segments = elf.loadSegments();
    return {
      elfClass: elf.elfClass,
      entry: elf.entry,
      segments,
      pvhEntry: pvhEntryOf(elf),
      start: segments.reduce((m, s) => Math.min(m, s.paddr), Number.POSITIVE_INFINITY),
      end: segments.reduce((m, s) => Math.max(m, s.paddr + s.memsz), 0),
    };
  } catch (e) {
    if (e instanceof ElfError) throw new LinuxBootError(e.message);
    throw e;
  }
}

/** The PVH entry: from a PT_NOTE segment (where Linux puts it), else from any SHT_NOTE section. */
function pvhEntryOf(elf: ElfFile): number | null {
  for (const ph of elf.programHeaders()) {
    if (ph.type !== PT_NOTE) continue;
    const bytes = elf.slice(`segment ${ph.index}'s file bytes`, ph.offset, ph.filesz);
    const entry = pvhFromNotes(parseNotes(`note segment ${ph.index}`, bytes, ph.align));
    if (entry !== null) return entry;
  }
  for (const sh of elf.sectionHeaders()) {
    if (sh.type !== SHT_NOTE) continue;
    const what = `note section ${sh.index}`;
    const entry = pvhFromNotes(parseNotes(what, elf.slice(what, sh.offset, sh.size), sh.align));
    if (entry !== null) return entry;
  }
  return null;
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
