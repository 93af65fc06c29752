// Builders for synthetic kernel images used by the loader tests: a multiboot header and a minimal ELF32/ELF64
// executable with chosen program headers. Written from the specs so tests can produce both valid and malformed
// images byte by byte.

export interface HeaderSpec {
  flags?: number;
  /** Override the checksum (to make it wrong). */
  checksum?: number;
  aout?: { headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number };
}

/** A multiboot v1 header: magic, flags, checksum and (with flag 16) the five address fields. */
export function multibootHeader(spec: HeaderSpec = {}): Uint8Array {
  const flags = (spec.flags ?? 0) >>> 0;
  const words = [0x1badb002, flags, spec.checksum ?? -(0x1badb002 + flags) >>> 0];
  if (spec.aout) {
    const a = spec.aout;
    words.push(a.headerAddr, a.loadAddr, a.loadEndAddr, a.bssEndAddr, a.entryAddr);
  }
  const out = new Uint8Array(words.length * 4);
  const dv = new DataView(out.buffer);
  for (const [i, w] of words.entries()) dv.setUint32(i * 4, w >>> 0, true);
  return out;
}

export interface SegmentSpec {
  paddr: number;
  vaddr?: number;
  data: Uint8Array;
  memsz?: number;
  flags?: number;
  /** Override p_offset / p_filesz (to make them wrong). */
  offset?: number;
  filesz?: number;
  type?: number;
}

export interface ElfSpec {
  entry: number;
  segments: SegmentSpec[];
  machine?: number;
  elfClass?: number;
  type?: number;
  phentsize?: number;
  /** Bytes placed right after the program headers (e.g. a multiboot header), before segment data. */
  prefix?: Uint8Array;
}

/** An ELF32 little-endian executable: header, program headers, optional prefix bytes, then segment data. */
export function elf32(spec: ElfSpec): Uint8Array {
  const phentsize = spec.phentsize ?? 32;
  const phoff = 52;
  const prefix = spec.prefix ?? new Uint8Array(0);
  let dataAt = phoff + spec.segments.length * phentsize + prefix.length;
  const placed = spec.segments.map((s) => {
    const offset = dataAt;
    dataAt += s.data.length;
    return { s, offset };
  });
  const out = new Uint8Array(dataAt);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass ?? 1, 1, 1]);
  dv.setUint16(16, spec.type ?? 2, true);
  dv.setUint16(18, spec.machine ?? 3, true);
  dv.setUint32(20, 1, true);
  dv.setUint32(24, spec.entry, true);
  dv.setUint32(28, phoff, true);
  dv.setUint16(40, 52, true);
  dv.setUint16(42, phentsize, true);
  dv.setUint16(44, spec.segments.length, true);
  out.set(prefix, phoff + spec.segments.length * phentsize);
  placed.forEach(({ s, offset }, i) => {
    const at = phoff + i * phentsize;
    dv.setUint32(at, s.type ?? 1, true);
    dv.setUint32(at + 4, s.offset ?? offset, true);
    dv.setUint32(at + 8, s.vaddr ?? s.paddr, true);
    dv.setUint32(at + 12, s.paddr, true);
    dv.setUint32(at + 16, s.filesz ?? s.data.length, true);
    dv.setUint32(at + 20, s.memsz ?? s.data.length, true);
    dv.setUint32(at + 24, s.flags ?? 5, true);
    out.set(s.data, offset);
  });
  return out;
}

/** A minimal ELF64 header (enough for detection and for "64-bit is refused" tests). */
export function elf64Header(machine = 62): Uint8Array {
  const out = new Uint8Array(64);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, 2, true);
  dv.setUint16(18, machine, true);
  return out;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `n` bytes counting up from `seed` (so misplaced copies are detectable). */
export function pattern(n: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (seed + i * 7) & 0xff);
}
