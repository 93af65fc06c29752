// Builders for synthetic Linux kernel images used by the loader tests: a bzImage with a chosen setup header, and
// ELF32/ELF64 kernels with chosen segments and notes. Written from boot.rst and the ELF spec so tests can make valid
// and malformed images byte by byte.
import { SETUP_HEADER, type SetupHeaderField } from '../layout.js';

export interface BzImageSpec {
  /** Protected-mode code (what goes at the load address; byte 0x200 is the 64-bit entry). */
  kernel: Uint8Array;
  setupSects?: number;
  version?: number;
  /** Header end = 0x202 + this (default: through kernel_info_offset, 0x26c). */
  jumpLength?: number;
  /** Header fields to set (after the defaults). */
  fields?: Partial<Record<SetupHeaderField, number | bigint>>;
  /** Bytes past the end of the protected-mode code (e.g. a signature), not counted in syssize. */
  trailer?: Uint8Array;
}

/** A bzImage: boot sector + setup sectors holding the header, then the protected-mode code. */
export function bzImage(spec: BzImageSpec): Uint8Array {
  const setupSects = spec.setupSects ?? 4;
  const setupSize = (setupSects + 1) * 512;
  const trailer = spec.trailer ?? new Uint8Array(0);
  const out = new Uint8Array(setupSize + spec.kernel.length + trailer.length);
  out.set(spec.kernel, setupSize);
  out.set(trailer, setupSize + spec.kernel.length);
  const dv = new DataView(out.buffer);
  const set = (field: SetupHeaderField, value: number | bigint) => {
    const [at, size] = SETUP_HEADER[field];
    if (size === 1) dv.setUint8(at, Number(value));
    else if (size === 2) dv.setUint16(at, Number(value), true);
    else if (size === 4) dv.setUint32(at, Number(value), true);
    else dv.setBigUint64(at, BigInt(value), true);
  };
  const defaults: Partial<Record<SetupHeaderField, number | bigint>> = {
    setup_sects: setupSects,
    syssize: Math.ceil(spec.kernel.length / 16),
    vid_mode: 0xffff,
    boot_flag: 0xaa55,
    header: 0x53726448,
    version: spec.version ?? 0x020f,
    kernel_version: 0x100, // string at file offset 0x300
    loadflags: 0x01,
    code32_start: 0x100000,
    heap_end_ptr: 0x5be0,
    initrd_addr_max: 0x7fffffff,
    kernel_alignment: 0x200000,
    relocatable_kernel: 1,
    min_alignment: 21,
    xloadflags: 0x03,
    cmdline_size: 2047,
    pref_address: 0x1000000n,
    init_size: 0x400000,
  };
  for (const [f, v] of Object.entries({ ...defaults, ...spec.fields }) as [SetupHeaderField, number | bigint][])
    set(f, v);
  out[SETUP_HEADER.jump[0]] = 0xeb;
  out[SETUP_HEADER.jump[0] + 1] = spec.jumpLength ?? 0x26c - 0x202;
  out.set(new TextEncoder().encode('6.1.0-test (tsvmm@test) #1 SMP\0'), 0x300);
  return out;
}

export interface ElfSegmentSpec {
  paddr: number;
  vaddr?: bigint;
  data: Uint8Array;
  memsz?: number;
  /** Override p_offset / p_filesz (to make them wrong). */
  offset?: number;
  filesz?: number;
}

export interface ElfNoteSpec {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface ElfKernelSpec {
  elfClass?: 1 | 2;
  machine?: number;
  entry: bigint;
  segments: ElfSegmentSpec[];
  /** Notes in one PT_NOTE segment (default: none). */
  notes?: ElfNoteSpec[];
  /** Notes in a SHT_NOTE section instead of a PT_NOTE segment. */
  sectionNotes?: ElfNoteSpec[];
}

/** The bytes of a note list, 4-byte aligned. */
export function encodeNotes(notes: readonly ElfNoteSpec[]): Uint8Array {
  const pad = (n: number) => Math.ceil(n / 4) * 4;
  const parts: number[] = [];
  for (const n of notes) {
    const name = new TextEncoder().encode(`${n.name}\0`);
    const buf = new Uint8Array(12 + pad(name.length) + pad(n.desc.length));
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, name.length, true);
    dv.setUint32(4, n.desc.length, true);
    dv.setUint32(8, n.type, true);
    buf.set(name, 12);
    buf.set(n.desc, 12 + pad(name.length));
    parts.push(...buf);
  }
  return Uint8Array.from(parts);
}

/** A PVH entry note ("Xen", type 18) with an 8-byte (as Linux x86-64 writes it) or 4-byte value. */
export function pvhNote(entry: number, width: 4 | 8 = 8): ElfNoteSpec {
  const desc = new Uint8Array(width);
  const dv = new DataView(desc.buffer);
  if (width === 8) dv.setBigUint64(0, BigInt(entry), true);
  else dv.setUint32(0, entry, true);
  return { name: 'Xen', type: 18, desc };
}

/** An ELF32 or ELF64 little-endian x86 executable with the given segments and notes. */
export function elfKernel(spec: ElfKernelSpec): Uint8Array {
  const is64 = (spec.elfClass ?? 2) === 2;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const shentsize = is64 ? 64 : 40;
  const noteBytes = spec.notes ? encodeNotes(spec.notes) : null;
  const sectionNoteBytes = spec.sectionNotes ? encodeNotes(spec.sectionNotes) : null;
  const phnum = spec.segments.length + (noteBytes ? 1 : 0);
  let at = ehsize + phnum * phentsize;
  const segOffsets = spec.segments.map((s) => {
    const o = at;
    at += s.data.length;
    return o;
  });
  const noteOffset = at;
  at += noteBytes?.length ?? 0;
  const secNoteOffset = at;
  at += sectionNoteBytes?.length ?? 0;
  const shoff = sectionNoteBytes ? at : 0;
  const shnum = sectionNoteBytes ? 2 : 0; // a null section and the note section
  const out = new Uint8Array(at + shnum * shentsize);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  dv.setUint16(16, 2, true);
  dv.setUint16(18, spec.machine ?? (is64 ? 62 : 3), true);
  dv.setUint32(20, 1, true);
  const word = (at32: number, at64: number, v: bigint | number) => {
    if (is64) dv.setBigUint64(at64, BigInt(v), true);
    else dv.setUint32(at32, Number(v), true);
  };
  word(24, 24, spec.entry);
  word(28, 32, ehsize);
  word(32, 40, shoff);
  dv.setUint16(is64 ? 52 : 40, ehsize, true);
  dv.setUint16(is64 ? 54 : 42, phentsize, true);
  dv.setUint16(is64 ? 56 : 44, phnum, true);
  dv.setUint16(is64 ? 58 : 46, shentsize, true);
  dv.setUint16(is64 ? 60 : 48, shnum, true);
  const phdr = (
    i: number,
    type: number,
    offset: number,
    vaddr: bigint,
    paddr: number,
    filesz: number,
    memsz: number,
    align: number,
  ) => {
    const p = ehsize + i * phentsize;
    dv.setUint32(p, type, true);
    if (is64) dv.setUint32(p + 4, 7, true);
    else dv.setUint32(p + 24, 7, true);
    word(p + 4, p + 8, offset);
    word(p + 8, p + 16, vaddr);
    word(p + 12, p + 24, paddr);
    word(p + 16, p + 32, filesz);
    word(p + 20, p + 40, memsz);
    word(p + 28, p + 48, align);
  };
  spec.segments.forEach((s, i) => {
    out.set(s.data, segOffsets[i]);
    phdr(
      i,
      1,
      s.offset ?? segOffsets[i],
      s.vaddr ?? BigInt(s.paddr),
      s.paddr,
      s.filesz ?? s.data.length,
      s.memsz ?? s.data.length,
      0x1000,
    );
  });
  if (noteBytes) {
    out.set(noteBytes, noteOffset);
    phdr(spec.segments.length, 4, noteOffset, 0n, 0, noteBytes.length, noteBytes.length, 4);
  }
  if (sectionNoteBytes) {
    out.set(sectionNoteBytes, secNoteOffset);
    const sh = shoff + shentsize; // section 1
    dv.setUint32(sh + 4, 7, true); // SHT_NOTE
    word(sh + 16, sh + 24, secNoteOffset);
    word(sh + 20, sh + 32, sectionNoteBytes.length);
    word(sh + 32, sh + 48, 4);
  }
  return out;
}
