import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  findMultibootHeader,
  loadMultiboot,
  parseMultibootHeader,
  parseQemuModuleList,
  qemuKernelCmdline,
  MBI_BOOT_LOADER_NAME,
  MBI_CMDLINE,
  MBI_FLAGS,
  MBI_MEM_LOWER,
  MBI_MEM_UPPER,
  MBI_MMAP_ADDR,
  MBI_MMAP_LENGTH,
  MBI_MODS_ADDR,
  MBI_MODS_COUNT,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MultibootError,
  type MultibootOptions,
} from './multiboot.js';
import { BOOT_STACK_TOP, CR0_PG, SEL_CODE32, SEL_DATA } from './cpu-modes.js';
import { e820FromRam, E820_RAM, E820_RESERVED, type E820Entry } from './e820.js';
import { ArrayGuestMemory } from './testing/array-memory.js';
import { concat, elf32, elf64Header, multibootHeader, pattern } from './testing/images.js';

const MiB = 1024 * 1024;
const RAM = 8 * MiB;
const newRam = () => {
  const mem = new ArrayGuestMemory([{ start: 0, size: RAM }]);
  mem.fill(0, RAM, 0xaa); // so zeroing (bss) and untouched bytes can be told apart
  return mem;
};
const map = e820FromRam([{ start: 0, size: RAM }]);
const opts = (extra: Partial<MultibootOptions> = {}): MultibootOptions => ({ memoryMap: map, ...extra });

function cString(mem: ArrayGuestMemory, at: number): string {
  let s = '';
  for (let b = mem.readU8(at); b !== 0; b = mem.readU8(++at)) s += String.fromCharCode(b);
  return s;
}

/** A typical ELF multiboot kernel: .text at 1 MiB (header first), .data, and .bss. */
function sampleElf(flags = 0) {
  const header = multibootHeader({ flags });
  const text = concat(header, pattern(0x300, 3));
  return elf32({
    entry: 0x100000 + header.length,
    segments: [
      { paddr: 0x100000, data: text, flags: 5 },
      { paddr: 0x102000, data: pattern(0x80, 9), memsz: 0x1000, flags: 6 },
    ],
  });
}

// ---- header search ---------------------------------------------------------------------------------------------

test('multiboot header: found at any 4-byte-aligned offset in the first 8 KiB', () => {
  for (const offset of [0, 4, 0x1000, 8192 - 12]) {
    const image = concat(new Uint8Array(offset), multibootHeader({ flags: 3 }));
    const h = parseMultibootHeader(image);
    assert.is(h.offset, offset);
    assert.is(h.flags, 3);
    assert.is(h.aout, undefined);
  }
});

test('multiboot header: a magic at an unaligned offset or beyond 8 KiB is not a header', () => {
  assert.is(findMultibootHeader(concat(new Uint8Array(2), multibootHeader())), null);
  assert.is(findMultibootHeader(concat(new Uint8Array(8192), multibootHeader())), null);
  assert.throws(() => parseMultibootHeader(new Uint8Array(100)), /no multiboot header/);
  assert.is(findMultibootHeader(new Uint8Array(0)), null);
});

test('multiboot header: a bad checksum is reported with the sum it gives', () => {
  const image = multibootHeader({ flags: 0, checksum: 0x12345678 });
  assert.throws(
    () => parseMultibootHeader(image),
    (e: Error) =>
      e instanceof MultibootError && /bad checksum at offset 0x0/.test(e.message) && /0x12345678/.test(e.message),
  );
});

test('multiboot header: a bad-checksum magic is skipped when a valid header follows (QEMU behaviour)', () => {
  const image = concat(multibootHeader({ checksum: 1 }), multibootHeader({ flags: 2 }));
  assert.is(parseMultibootHeader(image).offset, 12);
});

test('multiboot header: a magic whose flags/checksum are cut off by the end of the file is "truncated"', () => {
  const image = concat(new Uint8Array(16), multibootHeader().subarray(0, 8));
  assert.throws(() => parseMultibootHeader(image), /truncated.*file ends at 0x18/);
});

test('multiboot header: a header that would extend past the first 8 KiB is "truncated"', () => {
  const image = concat(new Uint8Array(8192 - 8), multibootHeader(), new Uint8Array(64));
  assert.throws(() => parseMultibootHeader(image), /truncated.*first 8 KiB/);
});

test('multiboot header: flag 16 needs the five address fields, which must be present', () => {
  const aout = { headerAddr: 0x100000, loadAddr: 0x100000, loadEndAddr: 0, bssEndAddr: 0, entryAddr: 0x100020 };
  const full = multibootHeader({ flags: 1 << 16, aout });
  assert.equal(parseMultibootHeader(full).aout, aout);
  assert.throws(() => parseMultibootHeader(full.subarray(0, 24)), /address flag \(16\).*truncated/);
});

test('multiboot: required feature bits we do not know (3-15) are refused; the video flag only warns', () => {
  const mem = newRam();
  assert.throws(() => loadMultiboot(mem, sampleElf(1 << 3), opts()), /requires features.*0x8/);
  const boot = loadMultiboot(mem, sampleElf(1 << 2), opts());
  assert.is(boot.warnings.length, 1);
  assert.match(boot.warnings[0], /video mode/);
  // Optional bits (16-31) other than 16 are ignored.
  assert.is(loadMultiboot(newRam(), sampleElf(1 << 20), opts()).warnings.length, 0);
});

// ---- ELF kernels -----------------------------------------------------------------------------------------------

test('multiboot ELF: PT_LOAD segments go to p_paddr, bss is zeroed, gaps are left alone', () => {
  const mem = newRam();
  const image = sampleElf(3);
  const boot = loadMultiboot(mem, image, opts());
  assert.is(boot.format, 'elf32');
  assert.is(boot.entry, 0x10000c);
  assert.equal(boot.kernel, { start: 0x100000, end: 0x103000 });
  const text = concat(multibootHeader({ flags: 3 }), pattern(0x300, 3));
  assert.equal(mem.read(0x100000, text.length), text);
  assert.ok(mem.allBytes(0x100000 + text.length, 0x2000 - text.length, 0xaa), 'gap between segments untouched');
  assert.equal(mem.read(0x102000, 0x80), pattern(0x80, 9));
  assert.ok(mem.allBytes(0x102080, 0x1000 - 0x80, 0), 'bss zeroed');
});

test('multiboot ELF: a virtual e_entry is translated through its executable segment (higher-half kernel)', () => {
  const header = multibootHeader();
  const image = elf32({
    entry: 0xc0100010,
    segments: [{ paddr: 0x100000, vaddr: 0xc0100000, data: concat(header, pattern(64)), flags: 5 }],
  });
  assert.is(loadMultiboot(newRam(), image, opts()).entry, 0x100010);
});

test('multiboot ELF: malformed files are refused with the field that is wrong', () => {
  const header = multibootHeader();
  const seg = (over: object = {}) => ({ paddr: 0x100000, data: concat(header, pattern(32)), ...over });
  const cases: [string, Uint8Array, RegExp][] = [
    ['64-bit ELF', concat(elf64Header(), header), /64-bit ELF/],
    ['wrong machine', elf32({ entry: 0x100000, machine: 40, segments: [seg()] }), /e_machine 40/],
    ['not an executable', elf32({ entry: 0x100000, type: 3, segments: [seg()] }), /ET_EXEC/],
    [
      'segment past end of file',
      elf32({ entry: 0x100000, segments: [seg({ filesz: 0x10000, memsz: 0x10000 })] }),
      /segment 0.*past the end of the file/,
    ],
    ['filesz > memsz', elf32({ entry: 0x100000, segments: [seg({ memsz: 4 })] }), /p_filesz.*larger than p_memsz/],
    ['segment past 4 GiB', elf32({ entry: 0x100000, segments: [seg({ paddr: 0xfffffff0 })] }), /past 4 GiB/],
    ['no PT_LOAD', elf32({ entry: 0x100000, segments: [seg({ type: 4 })] }), /no PT_LOAD/],
    [
      'overlapping segments',
      elf32({ entry: 0x100000, segments: [seg({ memsz: 0x2000 }), { paddr: 0x101000, data: pattern(8) }] }),
      /segments 0 and 1 overlap/,
    ],
    [
      'entry outside segments',
      elf32({ entry: 0x200000, segments: [seg()] }),
      /entry 0x200000 is not inside any loaded segment/,
    ],
    [
      'segment outside RAM',
      elf32({ entry: 0x100000, segments: [seg(), { paddr: RAM, data: pattern(8) }] }),
      /not \(wholly\) in guest RAM/,
    ],
    [
      'over the boot GDT',
      elf32({ entry: 0x600, segments: [{ paddr: 0x600, data: concat(header, pattern(8)) }] }),
      /overlaps the reserved boot range \[0x500, 0x1000\)/,
    ],
    ['tiny phentsize', elf32({ entry: 0x100000, phentsize: 16, segments: [seg()] }), /e_phentsize 16/],
  ];
  for (const [name, image, error] of cases) {
    const mem = newRam();
    assert.throws(
      () => loadMultiboot(mem, image, opts()),
      (e: Error) => e instanceof MultibootError && error.test(e.message),
      name,
    );
    assert.ok(mem.allBytes(0, RAM, 0xaa), `${name}: nothing written`);
  }
  // Program headers cut off by the end of the file.
  const good = elf32({ entry: 0x100000, segments: [seg()] });
  const cut = concat(good.subarray(0, 60), header);
  assert.throws(
    () => loadMultiboot(newRam(), cut, opts()),
    /program header table \[0x34, \+0x20\) runs past the end of the file/,
  );
  // A non-ELF file without address fields.
  assert.throws(() => loadMultiboot(newRam(), concat(header, pattern(64)), opts()), /not an ELF file/);
});

// ---- a.out kludge ----------------------------------------------------------------------------------------------

/** A flat a.out-kludge image: 0x40 bytes of code, then the header at file offset 0x40, code after. */
function kludgeImage(
  a: Partial<{ headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number }> = {},
  size = 0x400,
) {
  const aout = {
    headerAddr: 0x200040,
    loadAddr: 0x200000,
    loadEndAddr: 0x200000 + size,
    bssEndAddr: 0x202000,
    entryAddr: 0x200000,
    ...a,
  };
  const header = multibootHeader({ flags: (1 << 16) | 2, aout });
  const image = pattern(size, 5);
  image.set(header, 0x40);
  return image;
}

test('multiboot a.out kludge: the file from header_offset-(header_addr-load_addr) goes to load_addr, bss zeroed', () => {
  const mem = newRam();
  const image = kludgeImage();
  const boot = loadMultiboot(mem, image, opts());
  assert.is(boot.format, 'aout-kludge');
  assert.is(boot.entry, 0x200000);
  assert.equal(boot.kernel, { start: 0x200000, end: 0x202000 });
  assert.equal(mem.read(0x200000, image.length), image);
  assert.ok(mem.allBytes(0x200400, 0x1c00, 0));
  // The header need not be at file offset == header_addr - load_addr: a file with a leading 0x20-byte preamble.
  const shifted = concat(new Uint8Array(0x20), kludgeImage({ headerAddr: 0x200040 }));
  const mem2 = newRam();
  assert.is(loadMultiboot(mem2, concat(shifted), opts({})).kernel.start, 0x200000);
  assert.equal(mem2.read(0x200000, 0x400), shifted.subarray(0x20, 0x420));
});

test('multiboot a.out kludge: load_end_addr 0 loads to the end of the file; bss_end_addr 0 means no bss', () => {
  const mem = newRam();
  const image = kludgeImage({ loadEndAddr: 0, bssEndAddr: 0 }, 0x300);
  const boot = loadMultiboot(mem, image, opts());
  assert.equal(boot.kernel, { start: 0x200000, end: 0x200300 });
  assert.equal(mem.read(0x200000, 0x300), image);
  assert.is(mem.readU8(0x200300), 0xaa);
});

test('multiboot a.out kludge: inconsistent addresses are refused with the field named', () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      'header_addr < load_addr',
      kludgeImage({ loadAddr: 0x200080 }),
      /header_addr 0x200040 is below load_addr 0x200080/,
    ],
    ['load_addr before file start', kludgeImage({ loadAddr: 0x100000 }), /larger than the header's file offset/],
    ['load_end < load', kludgeImage({ loadEndAddr: 0x1fffff }), /load_end_addr 0x1fffff is below load_addr/],
    [
      'truncated file',
      kludgeImage({ loadEndAddr: 0x200800 }),
      /truncated: load_end_addr asks for 0x800 bytes from file offset 0x0, the file has 0x400/,
    ],
    [
      'bss_end below load end',
      kludgeImage({ bssEndAddr: 0x200200 }),
      /bss_end_addr 0x200200 is below the end of the loaded image 0x200400/,
    ],
    ['entry outside', kludgeImage({ entryAddr: 0x300000 }), /entry_addr 0x300000 is outside the kernel/],
    [
      'past 4 GiB',
      kludgeImage({
        headerAddr: 0xffffff40,
        loadAddr: 0xffffff00,
        loadEndAddr: 0,
        bssEndAddr: 0,
        entryAddr: 0xffffff00,
      }),
      /runs past 4 GiB/,
    ],
    [
      'outside RAM',
      kludgeImage({ headerAddr: RAM + 0x40, loadAddr: RAM, loadEndAddr: RAM + 0x400, bssEndAddr: 0, entryAddr: RAM }),
      /not \(wholly\) in guest RAM/,
    ],
    [
      'over the boot GDT',
      kludgeImage({ headerAddr: 0x440, loadAddr: 0x400, loadEndAddr: 0x800, bssEndAddr: 0, entryAddr: 0x400 }),
      /reserved boot range/,
    ],
    ['nothing to load', kludgeImage({ loadEndAddr: 0x200000, bssEndAddr: 0 }), /nothing to load/],
  ];
  for (const [name, image, error] of cases) {
    const mem = newRam();
    assert.throws(
      () => loadMultiboot(mem, image, opts()),
      (e: Error) => e instanceof MultibootError && error.test(e.message),
      name,
    );
    assert.ok(mem.allBytes(0, RAM, 0xaa), `${name}: nothing written`);
  }
});

// ---- info structure, modules, entry state ---------------------------------------------------------------------

test('multiboot info: every field, the mmap entries and the strings are byte-exact', () => {
  const mem = newRam();
  const memoryMap: E820Entry[] = [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
    { addr: 0xf0000, size: 0x10000, type: E820_RESERVED },
    { addr: 0x100000, size: RAM - 0x100000, type: E820_RAM },
  ];
  const boot = loadMultiboot(mem, sampleElf(), { memoryMap, cmdline: '/k/kernel.elf code=7' });
  const mbi = boot.infoAddress;
  assert.is(mbi, 0x103000, 'info block starts on the page after the kernel (QEMU layout)');
  assert.is(mem.readU32(mbi + MBI_FLAGS), 0x24d, 'MEMORY | CMDLINE | MODS | MMAP | BOOT_LOADER_NAME');
  assert.is(mem.readU32(mbi + MBI_MEM_LOWER), 639);
  assert.is(mem.readU32(mbi + MBI_MEM_UPPER), RAM / 1024 - 1024);
  assert.is(mem.readU32(mbi + MBI_MODS_COUNT), 0);
  assert.is(cString(mem, mem.readU32(mbi + MBI_CMDLINE)), '/k/kernel.elf code=7');
  assert.is(cString(mem, mem.readU32(mbi + MBI_BOOT_LOADER_NAME)), 'tsvmm');
  assert.is(mem.readU32(mbi + MBI_MMAP_LENGTH), 4 * 24);
  const mmap = mem.read(mem.readU32(mbi + MBI_MMAP_ADDR), 4 * 24);
  const expected = new Uint8Array(4 * 24);
  const dv = new DataView(expected.buffer);
  memoryMap.forEach((e, i) => {
    dv.setUint32(i * 24, 20, true);
    dv.setBigUint64(i * 24 + 4, BigInt(e.addr), true);
    dv.setBigUint64(i * 24 + 12, BigInt(e.size), true);
    dv.setUint32(i * 24 + 20, e.type, true);
  });
  assert.equal(mmap, expected);
  // Fields we do not provide stay zero (boot_device, syms, drives, config, apm, vbe).
  for (const off of [12, 28, 32, 36, 40, 52, 56, 60, 68, 72, 76, 80, 84])
    assert.is(mem.readU32(mbi + off), 0, `offset ${off}`);
  assert.ok(boot.info.start === mbi && boot.info.end > mbi);
});

test('multiboot modules: page-aligned after the info block, each with its command line, never overlapping', () => {
  const mem = newRam();
  const modules = [
    { bytes: pattern(0x1234, 1), cmdline: 'mod1.bin arg=1' },
    { bytes: pattern(0x2000, 2), cmdline: 'mod2.bin' },
    { bytes: new Uint8Array(0), cmdline: 'empty.bin' },
  ];
  const boot = loadMultiboot(mem, sampleElf(), opts({ modules, cmdline: 'k' }));
  const mbi = boot.infoAddress;
  assert.is(mem.readU32(mbi + MBI_MODS_COUNT), 3);
  const modsAddr = mem.readU32(mbi + MBI_MODS_ADDR);
  const ranges = [boot.kernel, boot.info];
  modules.forEach((m, i) => {
    const start = mem.readU32(modsAddr + i * 16);
    const end = mem.readU32(modsAddr + i * 16 + 4);
    assert.is(start % 0x1000, 0, 'page-aligned');
    assert.is(end - start, m.bytes.length);
    assert.equal(mem.read(start, m.bytes.length), m.bytes);
    assert.is(cString(mem, mem.readU32(modsAddr + i * 16 + 8)), m.cmdline);
    assert.is(mem.readU32(modsAddr + i * 16 + 12), 0);
    assert.equal(boot.modules[i], { start, end, cmdline: m.cmdline });
    ranges.push({ start, end: Math.max(end, start + 1) });
  });
  assert.ok(boot.modules[0].start >= boot.info.end, 'modules after the info block');
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      assert.ok(ranges[i].end <= ranges[j].start || ranges[j].end <= ranges[i].start, `ranges ${i} and ${j} overlap`);
    }
  }
});

test('multiboot layout: info and modules skip holes and reserved RAM in the memory map', () => {
  const mem = newRam();
  const memoryMap: E820Entry[] = [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x100000, size: 0x3000, type: E820_RAM }, // kernel fits exactly, nothing after it
    { addr: 0x103000, size: 0x5000, type: E820_RESERVED },
    { addr: 0x108000, size: 0x2000, type: E820_RAM }, // too small for the 0x3000-byte module
    { addr: 0x200000, size: RAM - 0x200000, type: E820_RAM },
  ];
  const boot = loadMultiboot(mem, sampleElf(), { memoryMap, modules: [{ bytes: pattern(0x3000), cmdline: 'm' }] });
  assert.is(boot.infoAddress, 0x108000);
  assert.is(boot.modules[0].start, 0x200000);
});

test('multiboot layout: no usable room for the modules is a clear error and RAM is left untouched', () => {
  const mem = newRam();
  const memoryMap: E820Entry[] = [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x100000, size: 0x10000, type: E820_RAM },
  ];
  assert.throws(
    () => loadMultiboot(mem, sampleElf(), { memoryMap, modules: [{ bytes: pattern(0x20000), cmdline: 'big' }] }),
    /no room for module 1 \("big"\)/,
  );
  assert.ok(mem.allBytes(0, RAM, 0xaa));
  assert.throws(() => loadMultiboot(mem, sampleElf(), { memoryMap: [] }), /no memory map/);
  assert.throws(() => loadMultiboot(mem, sampleElf(), opts({ cmdline: 'a\0b' })), /NUL/);
});

test('multiboot entry state: EAX magic, EBX info, flat 32-bit protected mode, paging off, IF clear', () => {
  const mem = newRam();
  const boot = loadMultiboot(mem, sampleElf(), opts());
  const { regs, sregs } = boot.cpu;
  assert.is(regs.rax, BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
  assert.is(regs.rbx, BigInt(boot.infoAddress));
  assert.is(regs.rip, BigInt(boot.entry));
  assert.is(regs.rsp, BigInt(BOOT_STACK_TOP));
  assert.is(regs.rflags, 2n);
  assert.is(sregs.cs!.selector, SEL_CODE32);
  assert.is(sregs.cs!.db, 1);
  assert.is(sregs.cs!.base, 0n);
  assert.is(sregs.cs!.limit, 0xffffffff);
  for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) {
    assert.is(sregs[s]!.selector, SEL_DATA);
    assert.is(sregs[s]!.limit, 0xffffffff);
  }
  assert.is(sregs.cr0! & CR0_PG, 0n);
  assert.is(sregs.cr0! & 1n, 1n);
  assert.is(sregs.efer, 0n);
});

test('multiboot: QEMU-style command lines and -initrd module lists', () => {
  assert.is(qemuKernelCmdline('/boot/k.elf', 'code=3'), '/boot/k.elf code=3');
  assert.is(qemuKernelCmdline('/boot/k.elf'), '/boot/k.elf ');
  assert.equal(parseQemuModuleList('a.bin x=1,b.bin'), [
    { path: 'a.bin', cmdline: 'a.bin x=1' },
    { path: 'b.bin', cmdline: 'b.bin' },
  ]);
  assert.equal(parseQemuModuleList('a.bin list=1,,2'), [{ path: 'a.bin', cmdline: 'a.bin list=1,2' }]);
  assert.throws(() => parseQemuModuleList('a.bin,'), /module 2 .* has no file name/);
  assert.throws(() => parseQemuModuleList(''), /module 1/);
});

test.run();
