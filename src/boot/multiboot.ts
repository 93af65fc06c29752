// Multiboot (version 1) loader: what QEMU's `-kernel` does for a multiboot image, without a BIOS or option ROM.
//
// Spec: https://www.gnu.org/software/grub/manual/multiboot/multiboot.html. Where the spec leaves a choice, we do
// what QEMU's hw/i386/multiboot.c does, so guests written for `qemu -kernel` run unchanged:
//  - the header is the first 4-byte-aligned magic in the first 8 KiB whose checksum is right (a magic with a bad
//    checksum is skipped, as QEMU does; if no good one follows, that is the error reported);
//  - without flag 16 the file must be an ELF32 (EM_386) and PT_LOAD segments go to p_paddr; e_entry is translated
//    to physical when the executable segment's p_vaddr != p_paddr; with flag 16 the a.out-kludge addresses are
//    used even for an ELF file;
//  - the kernel's command line is what the caller passes (QEMU passes "<kernel path> <-append string>":
//    use qemuKernelCmdline); a module's command line is its whole `-initrd` item ("file arg…");
//  - layout: kernel, then (page-aligned) the info block — MBI, mmap, module list, command lines, loader name —
//    then each module page-aligned, as QEMU's buffer; if the next spot is not usable RAM in the memory map, the
//    next usable spot above it is taken. Nothing overlaps the kernel, another module, or the reserved boot range;
//  - the video-mode flag (2) is accepted with a warning (QEMU: "multiboot knows VBE. we don't."); other
//    required-feature bits (3-15) that we do not know are refused, as the spec requires;
//  - the info structure sets MEMORY, CMDLINE, MODS (even with no modules), MMAP and BOOT_LOADER_NAME; no boot
//    device (there is no BIOS disk). mem_lower/mem_upper come from the memory map (639/… with SeaBIOS' EBDA).
// Entry state per spec: EAX = 0x2BADB002, EBX = info address, 32-bit flat protected mode (boot GDT), paging off,
// IF = 0; ESP is undefined by the spec, we give the small scratch stack at BOOT_STACK_TOP. KVM has no A20 gate.
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  formatRange,
  protectedModeState,
  rangesOverlap,
  reservedBootRanges,
  BOOT_STACK_TOP,
  type BootCpuState,
  type GuestRange,
} from './cpu-modes.js';
import { E820_RAM, lowerUpperKiB, type E820Entry } from './e820.js';
import { elfIdent, ElfError, ElfFile, ELFCLASS64, EM_386, PF_X, type ElfSegment } from './elf.js';
import { alignUp } from '../util/align.js';
import { u32At } from '../util/le-bytes.js';
import { hex } from '../util/hex.js';
import { SetupError } from '../util/setup-error.js';

/** Header magic the kernel carries. */
export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** Value in EAX at entry telling the kernel a multiboot loader started it. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie wholly in the first 8 KiB of the file. */
export const MULTIBOOT_SEARCH_BYTES = 8192;

/** Header flag 0: align modules on 4 KiB boundaries (we always do). */
export const MBH_PAGE_ALIGN = 1 << 0;
/** Header flag 1: provide mem_* and mmap (we always do). */
export const MBH_MEMORY_INFO = 1 << 1;
/** Header flag 2: wants a video mode table. Not provided; accepted with a warning, like QEMU. */
export const MBH_VIDEO_MODE = 1 << 2;
/** Header flag 16: the a.out-kludge address fields are valid and are used instead of the ELF headers. */
export const MBH_AOUT_KLUDGE = 1 << 16;
/** Bits 0-15 are requirements a loader must understand or refuse. */
const MBH_REQUIRED_MASK = 0xffff;
const MBH_UNDERSTOOD = MBH_PAGE_ALIGN | MBH_MEMORY_INFO | MBH_VIDEO_MODE;

/** Info flag 0: mem_lower/mem_upper valid. */
export const MBI_FLAG_MEMORY = 1 << 0;
/** Info flag 1: boot_device valid (not set: no BIOS disk). */
export const MBI_FLAG_BOOT_DEVICE = 1 << 1;
/** Info flag 2: cmdline valid. */
export const MBI_FLAG_CMDLINE = 1 << 2;
/** Info flag 3: mods_count/mods_addr valid. */
export const MBI_FLAG_MODS = 1 << 3;
/** Info flag 6: mmap_length/mmap_addr valid. */
export const MBI_FLAG_MMAP = 1 << 6;
/** Info flag 9: boot_loader_name valid. */
export const MBI_FLAG_LOADER_NAME = 1 << 9;

/** Byte offsets in the multiboot information structure. */
export const MBI_FLAGS = 0;
export const MBI_MEM_LOWER = 4;
export const MBI_MEM_UPPER = 8;
export const MBI_BOOT_DEVICE = 12;
export const MBI_CMDLINE = 16;
export const MBI_MODS_COUNT = 20;
export const MBI_MODS_ADDR = 24;
export const MBI_MMAP_LENGTH = 44;
export const MBI_MMAP_ADDR = 48;
export const MBI_BOOT_LOADER_NAME = 64;
/** Size of the structure up to and including the VBE fields (what QEMU allocates). */
export const MBI_SIZE = 88;
/** One module entry: mod_start, mod_end, string, reserved. */
export const MB_MOD_SIZE = 16;
/** One mmap entry: size (20, not counting itself), base_addr u64, length u64, type u32. */
export const MB_MMAP_ENTRY_SIZE = 24;

export const BOOT_LOADER_NAME = 'tsvmm';
const PAGE = 0x1000;
const FOUR_GIB = 2 ** 32;

export class MultibootError extends SetupError {
  constructor(message: string) {
    super(`multiboot: ${message}`);
    this.name = 'MultibootError';
  }
}

export interface AoutKludge {
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
}

export interface MultibootHeader {
  /** File offset of the magic. */
  offset: number;
  flags: number;
  checksum: number;
  /** Present when flag 16 is set. */
  aout?: AoutKludge;
}

export interface MultibootModule {
  bytes: Uint8Array;
  /** The module's command line as the guest sees it (QEMU: the whole `-initrd` item, file name included). */
  cmdline: string;
}

export interface MultibootOptions {
  /** The kernel command line as the guest sees it (see qemuKernelCmdline). */
  cmdline?: string;
  modules?: readonly MultibootModule[];
  /** The e820 map of the machine (see e820FromRam): becomes mmap and mem_lower/mem_upper. */
  memoryMap: readonly E820Entry[];
}

export interface LoadedModule extends GuestRange {
  cmdline: string;
}

export interface MultibootBoot {
  cpu: BootCpuState;
  header: MultibootHeader;
  format: 'elf32' | 'aout-kludge';
  /** Physical entry point. */
  entry: number;
  /** [lowest, highest) byte the kernel occupies (bss included). */
  kernel: GuestRange;
  /** Address of the multiboot information structure (EBX). */
  infoAddress: number;
  /** The whole info block: MBI, mmap, module list, strings. */
  info: GuestRange;
  modules: LoadedModule[];
  /** Things the guest asked for that we do not provide (e.g. a video mode). */
  warnings: string[];
}

/** QEMU's multiboot kernel command line: the kernel's path, a space, then the `-append` string. */
export function qemuKernelCmdline(kernelPath: string, append = ''): string {
  return `${kernelPath} ${append}`;
}

/**
 * Splits a QEMU `-initrd` value for multiboot into modules: items are separated by ",", ",," is a literal comma,
 * and the file name is an item's text up to its first space (the whole item is the module's command line).
 */
export function parseQemuModuleList(spec: string): { path: string; cmdline: string }[] {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] !== ',') current += spec[i];
    else if (spec[i + 1] === ',') {
      current += ',';
      i++;
    } else {
      items.push(current);
      current = '';
    }
  }
  items.push(current);
  return items.map((cmdline, n) => {
    const path = cmdline.split(' ', 1)[0];
    if (path === '') throw new MultibootError(`module ${n + 1} of "${spec}" has no file name`);
    return { path, cmdline };
  });
}

/**
 * Finds the multiboot header: the first 4-byte-aligned magic in the first 8 KiB with a valid checksum. Returns
 * null when the magic does not occur at all; throws when it occurs but no occurrence is a complete, valid header.
 */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | null {
  const searchEnd = Math.min(image.length, MULTIBOOT_SEARCH_BYTES);
  let firstProblem: string | null = null;
  for (let offset = 0; offset + 4 <= searchEnd; offset += 4) {
    if (u32At(image, offset) !== MULTIBOOT_HEADER_MAGIC) continue;
    if (offset + 12 > searchEnd) {
      firstProblem ??=
        `header at offset ${hex(offset)} is truncated: magic, flags and checksum need 12 bytes and ` +
        (searchEnd === image.length
          ? `the file ends at ${hex(image.length)}`
          : 'the header must lie in the first 8 KiB');
      continue;
    }
    const flags = u32At(image, offset + 4);
    const checksum = u32At(image, offset + 8);
    if ((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0 !== 0) {
      firstProblem ??=
        `bad checksum at offset ${hex(offset)}: magic + flags (${hex(flags)}) + checksum (${hex(checksum)}) ` +
        `= ${hex((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0)}, not 0`;
      continue;
    }
    const header: MultibootHeader = { offset, flags, checksum };
    if (flags & MBH_AOUT_KLUDGE) {
      if (offset + 32 > searchEnd) {
        throw new MultibootError(
          `header at offset ${hex(offset)} sets the address flag (16) but is truncated: the ` +
            `address fields need 32 bytes and ${searchEnd === image.length ? `the file ends at ${hex(image.length)}` : 'the header must lie in the first 8 KiB'}`,
        );
      }
      header.aout = {
        headerAddr: u32At(image, offset + 12),
        loadAddr: u32At(image, offset + 16),
        loadEndAddr: u32At(image, offset + 20),
        bssEndAddr: u32At(image, offset + 24),
        entryAddr: u32At(image, offset + 28),
      };
    }
    return header;
  }
  if (firstProblem) throw new MultibootError(firstProblem);
  return null;
}

/** Like findMultibootHeader, but a missing header is an error too. */
export function parseMultibootHeader(image: Uint8Array): MultibootHeader {
  const header = findMultibootHeader(image);
  if (!header) throw new MultibootError('no multiboot header (magic 0x1badb002) in the first 8 KiB');
  return header;
}

interface Piece {
  at: number;
  bytes: Uint8Array;
}
interface KernelPlan {
  format: 'elf32' | 'aout-kludge';
  entry: number;
  kernel: GuestRange;
  /** Bytes to copy; everything else in `zero` ranges is cleared (bss). */
  pieces: Piece[];
  zero: GuestRange[];
}

function planAout(image: Uint8Array, header: MultibootHeader, a: AoutKludge): KernelPlan {
  if (a.headerAddr < a.loadAddr) {
    throw new MultibootError(`header_addr ${hex(a.headerAddr)} is below load_addr ${hex(a.loadAddr)}`);
  }
  const headerDelta = a.headerAddr - a.loadAddr;
  if (headerDelta > header.offset) {
    throw new MultibootError(
      `header_addr - load_addr (${hex(headerDelta)}) is larger than the header's file offset ` +
        `(${hex(header.offset)}): load_addr would be before the start of the file`,
    );
  }
  const textOffset = header.offset - headerDelta;
  let loadSize: number;
  if (a.loadEndAddr !== 0) {
    if (a.loadEndAddr < a.loadAddr) {
      throw new MultibootError(`load_end_addr ${hex(a.loadEndAddr)} is below load_addr ${hex(a.loadAddr)}`);
    }
    loadSize = a.loadEndAddr - a.loadAddr;
    if (textOffset + loadSize > image.length) {
      throw new MultibootError(
        `image is truncated: load_end_addr asks for ${hex(loadSize)} bytes from file offset ` +
          `${hex(textOffset)}, the file has ${hex(image.length)}`,
      );
    }
  } else {
    loadSize = image.length - textOffset;
  }
  if (loadSize === 0) throw new MultibootError('a.out kludge: nothing to load (load_end_addr == load_addr)');
  let kernelSize = loadSize;
  if (a.bssEndAddr !== 0) {
    if (a.bssEndAddr < a.loadAddr + loadSize) {
      throw new MultibootError(
        `bss_end_addr ${hex(a.bssEndAddr)} is below the end of the loaded image ${hex(a.loadAddr + loadSize)}`,
      );
    }
    kernelSize = a.bssEndAddr - a.loadAddr;
  }
  if (a.loadAddr + kernelSize > FOUR_GIB) {
    throw new MultibootError(`kernel [${hex(a.loadAddr)}, +${hex(kernelSize)}) runs past 4 GiB`);
  }
  const kernel = { start: a.loadAddr, end: a.loadAddr + kernelSize };
  if (a.entryAddr < kernel.start || a.entryAddr >= kernel.end) {
    throw new MultibootError(`entry_addr ${hex(a.entryAddr)} is outside the kernel ${formatRange(kernel)}`);
  }
  return {
    format: 'aout-kludge',
    entry: a.entryAddr,
    kernel,
    pieces: [{ at: a.loadAddr, bytes: image.subarray(textOffset, textOffset + loadSize) }],
    zero: [{ start: a.loadAddr + loadSize, end: kernel.end }],
  };
}

function planElf(image: Uint8Array): KernelPlan {
  const ident = elfIdent(image);
  if (!ident)
    throw new MultibootError(
      'not an ELF file and the header has no address fields (flag 16): nothing says where to load it',
    );
  if (ident.elfClass === ELFCLASS64) {
    throw new MultibootError(
      'this is a 64-bit ELF: multiboot v1 loads 32-bit ELF kernels (or set the a.out-kludge flag 16)',
    );
  }
  const elf = readElf32(image);
  const start = elf.segments.reduce((m, s) => Math.min(m, s.paddr), FOUR_GIB);
  const end = elf.segments.reduce((m, s) => Math.max(m, s.paddr + s.memsz), 0);
  const kernel = { start, end };
  const entry = elf.entry;
  if (!elf.segments.some((s) => entry >= s.paddr && entry < s.paddr + s.memsz)) {
    throw new MultibootError(`ELF entry ${hex(entry)} is not inside any loaded segment`);
  }
  return {
    format: 'elf32',
    entry,
    kernel,
    pieces: elf.segments.map((s) => ({ at: s.paddr, bytes: image.subarray(s.offset, s.offset + s.filesz) })),
    zero: elf.segments
      .filter((s) => s.memsz > s.filesz)
      .map((s) => ({ start: s.paddr + s.filesz, end: s.paddr + s.memsz })),
  };
}

/** An ELF32 multiboot kernel's entry (made physical) and its segments, which must all lie below 4 GiB. */
function readElf32(image: Uint8Array): { entry: number; segments: ElfSegment[] } {
  try {
    const elf = ElfFile.read(image);
    elf.requireExecutable(EM_386);
    const segments = elf.loadSegments();
    for (const s of segments) {
      if (s.paddr + s.memsz > FOUR_GIB) {
        throw new ElfError(`segment ${s.index}: [${hex(s.paddr)}, +${hex(s.memsz)}) runs past 4 GiB`);
      }
    }
    return { entry: qemuPhysicalEntry(Number(elf.entry), segments), segments };
  } catch (e) {
    if (e instanceof ElfError) throw new MultibootError(e.message);
    throw e;
  }
}

/**
 * The physical entry address by QEMU's multiboot rule. e_entry is virtual; when an executable segment that contains
 * it (within its file bytes) is linked with p_vaddr != p_paddr, translate it the way QEMU's ELF loader does (so
 * "higher-half" kernels start correctly); otherwise it is taken as is. (The vmlinux loader's rule differs:
 * linux/elf-kernel.ts's physicalEntry.)
 */
function qemuPhysicalEntry(entry: number, segments: readonly ElfSegment[]): number {
  for (const seg of segments) {
    const vaddr = Number(seg.vaddr); // an ELF32 address: exact as a number
    if (vaddr !== seg.paddr && (seg.flags & PF_X) !== 0 && entry >= vaddr && entry < vaddr + seg.filesz) {
      return entry - vaddr + seg.paddr;
    }
  }
  return entry;
}

/** Places blocks at page-aligned addresses in usable RAM, never over what is already taken. */
class Placer {
  private readonly taken: GuestRange[];
  private cursor: number;

  constructor(
    private readonly mem: GuestMemory,
    private readonly usable: GuestRange[],
    taken: GuestRange[],
    from: number,
  ) {
    this.taken = [...taken];
    this.cursor = alignUp(from, PAGE);
  }

  place(what: string, size: number): GuestRange {
    const length = Math.max(size, 1);
    let at = this.cursor;
    for (;;) {
      const r = { start: at, end: at + length };
      if (r.end > FOUR_GIB) break;
      const clash = this.taken.find((t) => rangesOverlap(r, t));
      if (clash) {
        at = alignUp(clash.end, PAGE);
        continue;
      }
      const region = this.usable.find((u) => u.start <= r.start && r.end <= u.end);
      if (region && this.mem.contains(r.start, length)) {
        this.taken.push(r);
        this.cursor = alignUp(r.end, PAGE);
        return { start: r.start, end: r.start + size };
      }
      const next = this.usable.find((u) => u.end > at + length && alignUp(u.start, PAGE) > at);
      if (!next) break;
      at = Math.max(alignUp(next.start, PAGE), at + PAGE);
    }
    throw new MultibootError(
      `no room for ${what} (${hex(size)} bytes) in usable RAM below 4 GiB above ${hex(this.cursor)}`,
    );
  }
}

/** Sorted, with touching or overlapping ranges joined. */
function mergeRanges(ranges: GuestRange[]): GuestRange[] {
  const out: GuestRange[] = [];
  for (const r of [...ranges].sort((a, b) => a.start - b.start)) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

function encodeString(what: string, s: string): Uint8Array {
  if (s.includes('\0')) throw new MultibootError(`${what} contains a NUL character`);
  const encoded = new TextEncoder().encode(s);
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  return out;
}

/**
 * Loads a multiboot v1 kernel with its modules into guest RAM, writes the information structure and returns the
 * entry vCPU state. Every address and size taken from the image is checked; errors say which field is wrong.
 */
export function loadMultiboot(mem: GuestMemory, image: Uint8Array, options: MultibootOptions): MultibootBoot {
  const header = parseMultibootHeader(image);
  const warnings: string[] = [];
  const unknown = header.flags & MBH_REQUIRED_MASK & ~MBH_UNDERSTOOD;
  if (unknown) throw new MultibootError(`header requires features this loader does not know (flags ${hex(unknown)})`);
  if (header.flags & MBH_VIDEO_MODE)
    warnings.push('the kernel asks for a video mode (header flag 2); none is set and no VBE/framebuffer info is given');

  const plan = header.aout ? planAout(image, header, header.aout) : planElf(image);
  const reserved = reservedBootRanges('protected');
  const kernelSize = plan.kernel.end - plan.kernel.start;
  // QEMU copies the whole [lowest, highest) range as one buffer, gaps between ELF segments included: so must we
  // own all of it.
  if (!mem.contains(plan.kernel.start, kernelSize)) {
    throw new MultibootError(`kernel ${formatRange(plan.kernel)} is not (wholly) in guest RAM`);
  }
  for (const r of reserved) {
    if (rangesOverlap(plan.kernel, r))
      throw new MultibootError(`kernel ${formatRange(plan.kernel)} overlaps the reserved boot range ${formatRange(r)}`);
  }

  // Lay out the info block and the modules before writing anything, so a refusal leaves RAM untouched.
  const map = [...options.memoryMap].sort((a, b) => a.addr - b.addr);
  if (map.length === 0) throw new MultibootError('no memory map given');
  for (const e of map) {
    if (!Number.isSafeInteger(e.addr) || !Number.isSafeInteger(e.size) || e.addr < 0 || e.size <= 0) {
      throw new MultibootError(`bad memory map entry addr=${e.addr} size=${e.size}`);
    }
  }
  const usable = mergeRanges(
    map.filter((e) => e.type === E820_RAM).map((e) => ({ start: e.addr, end: e.addr + e.size })),
  );
  const modules = options.modules ?? [];
  const strings: Uint8Array[] = [];
  const moduleCmdlines = modules.map((m, i) => encodeString(`module ${i + 1} command line`, m.cmdline));
  const kernelCmdline = encodeString('kernel command line', options.cmdline ?? '');
  const loaderName = encodeString('boot loader name', BOOT_LOADER_NAME);
  strings.push(...moduleCmdlines, kernelCmdline, loaderName);

  const mmapOffset = MBI_SIZE;
  const modsOffset = mmapOffset + map.length * MB_MMAP_ENTRY_SIZE;
  const stringsOffset = modsOffset + modules.length * MB_MOD_SIZE;
  const infoSize = stringsOffset + strings.reduce((n, s) => n + s.length, 0);

  const placer = new Placer(mem, usable, [plan.kernel, ...reserved], plan.kernel.end);
  const info = placer.place('the multiboot information block', infoSize);
  const loaded: LoadedModule[] = modules.map((m, i) => ({
    ...placer.place(`module ${i + 1} ("${m.cmdline}")`, m.bytes.length),
    cmdline: m.cmdline,
  }));

  // Kernel.
  for (const z of plan.zero) if (z.end > z.start) mem.fill(z.start, z.end - z.start, 0);
  for (const p of plan.pieces) if (p.bytes.length) mem.write(p.at, p.bytes);
  // Modules.
  modules.forEach((m, i) => {
    if (m.bytes.length) mem.write(loaded[i].start, m.bytes);
  });

  // Info block: strings first, so their addresses are known.
  mem.fill(info.start, infoSize, 0);
  let stringAt = info.start + stringsOffset;
  const stringAddr: number[] = [];
  for (const s of strings) {
    mem.write(stringAt, s);
    stringAddr.push(stringAt);
    stringAt += s.length;
  }
  const modsAddr = info.start + modsOffset;
  loaded.forEach((m, i) => {
    const at = modsAddr + i * MB_MOD_SIZE;
    mem.writeU32(at, m.start);
    mem.writeU32(at + 4, m.end);
    mem.writeU32(at + 8, stringAddr[i]);
    mem.writeU32(at + 12, 0);
  });
  const mmapAddr = info.start + mmapOffset;
  map.forEach((e, i) => {
    const at = mmapAddr + i * MB_MMAP_ENTRY_SIZE;
    mem.writeU32(at, MB_MMAP_ENTRY_SIZE - 4);
    mem.writeU64(at + 4, BigInt(e.addr));
    mem.writeU64(at + 12, BigInt(e.size));
    mem.writeU32(at + 20, e.type);
  });
  const { lower, upper } = lowerUpperKiB(map);
  const mbi = info.start;
  mem.writeU32(
    mbi + MBI_FLAGS,
    MBI_FLAG_MEMORY | MBI_FLAG_CMDLINE | MBI_FLAG_MODS | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME,
  );
  mem.writeU32(mbi + MBI_MEM_LOWER, lower);
  mem.writeU32(mbi + MBI_MEM_UPPER, upper);
  mem.writeU32(mbi + MBI_CMDLINE, stringAddr[modules.length]);
  mem.writeU32(mbi + MBI_MODS_COUNT, modules.length);
  mem.writeU32(mbi + MBI_MODS_ADDR, modsAddr);
  mem.writeU32(mbi + MBI_MMAP_LENGTH, map.length * MB_MMAP_ENTRY_SIZE);
  mem.writeU32(mbi + MBI_MMAP_ADDR, mmapAddr);
  mem.writeU32(mbi + MBI_BOOT_LOADER_NAME, stringAddr[modules.length + 1]);

  const cpu = protectedModeState(mem, { entry: plan.entry, stack: BOOT_STACK_TOP });
  cpu.regs.rax = BigInt(MULTIBOOT_BOOTLOADER_MAGIC);
  cpu.regs.rbx = BigInt(mbi);
  return {
    cpu,
    header,
    format: plan.format,
    entry: plan.entry,
    kernel: plan.kernel,
    infoAddress: mbi,
    info: { start: info.start, end: info.start + infoSize },
    modules: loaded,
    warnings,
  };
}
