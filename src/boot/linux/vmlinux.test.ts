import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { ArrayGuestMemory } from '../testing/array-memory.js';
import { e820FromRam, type E820Entry } from '../e820.js';
import { decodeDescriptor, CR0_ET, CR0_PE, EFER_LMA } from '../cpu-modes.js';
import { loadVmlinux } from './vmlinux.js';
import { loadLinux } from './index.js';
import { findPvhEntry, parseKernelElf, physicalEntry } from './elf-kernel.js';
import { elfKernel, encodeNotes, pvhNote, type ElfKernelSpec } from './testing/images.js';
import { pattern } from '../testing/images.js';
import { debianKernel, readDebianKernel } from '../../../test/support/linux-kernel.js';
import { testIf } from '../../../test/support/skip.js';

const MiB = 1024 * 1024;

function machine(ramMiB: number, fillByte = 0): { mem: ArrayGuestMemory; memoryMap: E820Entry[] } {
  const ram = [{ start: 0, size: ramMiB * MiB }];
  const mem = new ArrayGuestMemory(ram);
  if (fillByte) mem.fill(0, ram[0].size, fillByte);
  return { mem, memoryMap: e820FromRam(ram) };
}

const TEXT = pattern(0x3000, 1);
const PERCPU = pattern(0x1000, 2);
/** A small x86-64 "vmlinux": text+bss linked high, a percpu segment linked at 0, and Linux's Xen notes. */
function kernelSpec(overrides: Partial<ElfKernelSpec> = {}): ElfKernelSpec {
  return {
    entry: 0x1000000n,
    segments: [
      { paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: TEXT, memsz: 0x5000 },
      { paddr: 0x1200000, vaddr: 0n, data: PERCPU },
    ],
    notes: [{ name: 'Xen', type: 6, desc: new TextEncoder().encode('linux\0') }, pvhNote(0x1000850)],
    ...overrides,
  };
}

const le64 = (dv: DataView, at: number, v: number) => dv.setBigUint64(at, BigInt(v), true);

/** The expected hvm_start_info / modlist / memmap, from the ABI text's offsets. */
function expectedStartInfo(
  cmdline: number,
  rsdp: number,
  modules: { paddr: number; size: number }[],
  map: E820Entry[],
) {
  const si = new Uint8Array(56);
  const dv = new DataView(si.buffer);
  dv.setUint32(0, 0x336ec578, true);
  dv.setUint32(4, 1, true);
  dv.setUint32(8, 0, true);
  dv.setUint32(12, modules.length, true);
  le64(dv, 16, modules.length ? 0x6040 : 0);
  le64(dv, 24, cmdline);
  le64(dv, 32, rsdp);
  le64(dv, 40, 0x7000);
  dv.setUint32(48, map.length, true);
  const ml = new Uint8Array(32 * modules.length);
  const mdv = new DataView(ml.buffer);
  modules.forEach((m, i) => {
    le64(mdv, i * 32, m.paddr);
    le64(mdv, i * 32 + 8, m.size);
  });
  const mm = new Uint8Array(24 * map.length);
  const mmdv = new DataView(mm.buffer);
  map.forEach((e, i) => {
    le64(mmdv, i * 24, e.addr);
    le64(mmdv, i * 24 + 8, e.size);
    mmdv.setUint32(i * 24 + 16, e.type, true);
  });
  return { si, ml, mm };
}

// ---- ELF parsing -----------------------------------------------------------------------------------------------

test('vmlinux elf: PT_LOAD segments by physical address, and the PVH entry from the Xen note in PT_NOTE', () => {
  const elf = parseKernelElf(elfKernel(kernelSpec()));
  assert.is(elf.elfClass, 2);
  assert.equal(
    elf.segments.map((s) => [s.paddr, s.filesz, s.memsz, s.vaddr]),
    [
      [0x1000000, 0x3000, 0x5000, 0xffffffff81000000n],
      [0x1200000, 0x1000, 0x1000, 0n],
    ],
  );
  assert.is(elf.start, 0x1000000);
  assert.is(elf.end, 0x1201000);
  assert.is(elf.pvhEntry, 0x1000850);
});

test('vmlinux elf: a PVH note found in a SHT_NOTE section, and a 4-byte note value', () => {
  assert.is(
    parseKernelElf(elfKernel(kernelSpec({ notes: undefined, sectionNotes: [pvhNote(0x1000900, 4)] }))).pvhEntry,
    0x1000900,
  );
  assert.is(parseKernelElf(elfKernel(kernelSpec({ notes: [pvhNote(0x1000010, 4)] }))).pvhEntry, 0x1000010);
  assert.is(
    parseKernelElf(elfKernel(kernelSpec({ notes: [{ name: 'Xen', type: 6, desc: new Uint8Array(4) }] }))).pvhEntry,
    null,
  );
  assert.is(findPvhEntry(new Uint8Array(10)), null, 'never throws');
});

test('vmlinux elf: a virtual e_entry is translated through its segment; a physical one is kept', () => {
  assert.is(physicalEntry(parseKernelElf(elfKernel(kernelSpec({ entry: 0xffffffff81000100n })))), 0x1000100);
  assert.is(physicalEntry(parseKernelElf(elfKernel(kernelSpec()))), 0x1000000);
});

const elfErrors: [string, () => Uint8Array, RegExp][] = [
  ['no ELF magic', () => new Uint8Array(100), /no ELF magic/],
  ['a file shorter than the header', () => elfKernel(kernelSpec()).slice(0, 40), /shorter than its 64-byte header/],
  [
    'big-endian',
    () => {
      const b = elfKernel(kernelSpec());
      b[5] = 2;
      return b;
    },
    /not little-endian/,
  ],
  [
    'a shared object',
    () => {
      const b = elfKernel(kernelSpec());
      b[16] = 3;
      return b;
    },
    /e_type 3 is not ET_EXEC/,
  ],
  ['an ELF64 for another machine', () => elfKernel(kernelSpec({ machine: 183 })), /e_machine 183 is not EM_X86_64/],
  [
    'program headers past the end',
    () => {
      const b = elfKernel(kernelSpec());
      new DataView(b.buffer).setUint16(56, 500, true);
      return b;
    },
    /program header table \[0x40, \+0x6d60\) runs past the end of the file/,
  ],
  [
    'segment bytes past the end',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x1000000, data: TEXT, filesz: 0x100000 }] })),
    /segment 0's file bytes .* runs past the end of the file/,
  ],
  [
    'a huge 64-bit offset that would wrap',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x1000000, data: TEXT, offset: 2 ** 52 }] })),
    /runs past the end of the file/,
  ],
  [
    'filesz larger than memsz',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x1000000, data: TEXT, memsz: 0x100 }] })),
    /p_filesz 0x3000 is larger than p_memsz 0x100/,
  ],
  [
    'overlapping segments',
    () =>
      elfKernel(
        kernelSpec({
          segments: [
            { paddr: 0x1000000, data: TEXT },
            { paddr: 0x1002000, data: PERCPU },
          ],
        }),
      ),
    /segments 0 and 1 overlap at physical 0x1002000/,
  ],
  [
    'no loadable segment',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x1000000, data: new Uint8Array(0) }] })),
    /no PT_LOAD segment/,
  ],
  [
    'a note running past its segment',
    () => {
      const b = elfKernel(kernelSpec({ notes: [pvhNote(0x1000850)] }));
      const notes = encodeNotes([pvhNote(0x1000850)]);
      const at = b.length - notes.length;
      new DataView(b.buffer).setUint32(at + 4, 0x100, true);
      return b;
    },
    /a note in note segment 2 \(name size 4, desc size 256\) runs past its end/,
  ],
  [
    'a PVH note of 2 bytes',
    () => elfKernel(kernelSpec({ notes: [{ name: 'Xen', type: 18, desc: new Uint8Array(2) }] })),
    /has a 2-byte value, not 4 or 8/,
  ],
  [
    'a PVH entry above 4 GiB',
    () => elfKernel(kernelSpec({ notes: [pvhNote(2 ** 33)] })),
    /PVH entry 0x200000000 is not a 32-bit physical address/,
  ],
];
for (const [what, make, message] of elfErrors) {
  test(`vmlinux elf: ${what} is refused with a one-line reason`, () => {
    assert.throws(
      () => parseKernelElf(make()),
      (e: Error) => message.test(e.message) && !e.message.includes('\n'),
    );
  });
}

// ---- PVH ---------------------------------------------------------------------------------------------------------

test('vmlinux pvh: segments at p_paddr with bss zeroed; hvm_start_info, modules and memory map byte-exact', () => {
  const { mem, memoryMap } = machine(64, 0xaa);
  const initrd = pattern(0x2345, 4);
  const boot = loadVmlinux(mem, elfKernel(kernelSpec()), {
    memoryMap,
    cmdline: 'console=ttyS0 noxsave',
    initrd,
    acpiRsdpAddr: 0xf0010,
  });
  assert.is(boot.protocol, 'pvh');
  assert.is(boot.format, 'elf64');
  assert.equal(mem.read(0x1000000, TEXT.length), TEXT);
  assert.ok(mem.allBytes(0x1003000, 0x2000, 0), 'bss zeroed');
  assert.equal(mem.read(0x1200000, PERCPU.length), PERCPU);
  assert.equal(boot.initrd, { start: 0x3ffd000, end: 0x3ffd000 + 0x2345 });
  assert.equal(mem.read(0x3ffd000, initrd.length), initrd);
  const want = expectedStartInfo(0x20000, 0xf0010, [{ paddr: 0x3ffd000, size: 0x2345 }], memoryMap);
  assert.equal(mem.read(0x6000, 56), want.si);
  assert.equal(mem.read(0x6040, 32), want.ml);
  assert.equal(mem.read(0x7000, want.mm.length), want.mm);
  assert.equal(mem.read(0x20000, 22), new TextEncoder().encode('console=ttyS0 noxsave\0'));
});

test("vmlinux pvh: 32-bit protected mode, paging off, at the note's entry with EBX = hvm_start_info, as the PVH ABI says", () => {
  const { mem, memoryMap } = machine(64);
  const { cpu, entry } = loadVmlinux(mem, elfKernel(kernelSpec()), { memoryMap });
  assert.is(entry, 0x1000850);
  assert.is(cpu.regs.rip, 0x1000850n);
  assert.is(cpu.regs.rbx, 0x6000n);
  assert.is(cpu.regs.rflags, 2n, 'IF clear');
  assert.is(cpu.sregs.cr0, CR0_PE | CR0_ET);
  assert.is(cpu.sregs.cr4, 0n);
  assert.is(cpu.sregs.efer, 0n);
  const cs = cpu.sregs.cs!;
  assert.equal(
    [cs.base, cs.limit, cs.db, cs.l, cs.type & 0xa],
    [0n, 0xffffffff, 1, 0, 0xa],
    'flat 32-bit execute/read',
  );
  for (const s of [cpu.sregs.ds!, cpu.sregs.es!, cpu.sregs.ss!]) {
    assert.equal([s.base, s.limit, s.db, s.type & 0xa], [0n, 0xffffffff, 1, 0x2], 'flat 32-bit read/write');
  }
  const tr = cpu.sregs.tr!;
  assert.equal([tr.base, tr.limit, tr.type, tr.s], [0n, 0x67, 0xb, 0], 'TR: busy 32-bit TSS, base 0, limit 0x67');
  const gdt = Number(cpu.sregs.gdt!.base);
  assert.equal(
    decodeDescriptor(mem.readU64(gdt + tr.selector), tr.selector),
    tr,
    'the GDT holds the same TSS descriptor',
  );
  assert.equal(decodeDescriptor(mem.readU64(gdt + cs.selector), cs.selector), cs);
});

test('vmlinux pvh: no initrd means no module list; no RSDP means rsdp_paddr 0', () => {
  const { mem, memoryMap } = machine(64);
  loadVmlinux(mem, elfKernel(kernelSpec()), { memoryMap, cmdline: '' });
  const want = expectedStartInfo(0x20000, 0, [], memoryMap);
  assert.equal(mem.read(0x6000, 56), want.si);
  assert.is(mem.readU8(0x20000), 0, 'an empty command line is one NUL');
});

test('vmlinux pvh: an ELF32 kernel with a PVH note boots through PVH', () => {
  const { mem, memoryMap } = machine(64);
  const image = elfKernel({
    elfClass: 1,
    entry: 0x100000n,
    segments: [{ paddr: 0x100000, data: TEXT }],
    notes: [pvhNote(0x100040, 4)],
  });
  const boot = loadLinux(mem, image, { memoryMap });
  assert.equal([boot.format, boot.protocol, boot.entry], ['elf32', 'pvh', 0x100040]);
  assert.equal(mem.read(0x100000, TEXT.length), TEXT);
});

// ---- 64-bit entry ------------------------------------------------------------------------------------------------

test('vmlinux 64-bit: chosen explicitly, startup_64 at the physical e_entry with RSI = boot_params in long mode', () => {
  const { mem, memoryMap } = machine(64);
  const boot = loadVmlinux(mem, elfKernel(kernelSpec({ entry: 0xffffffff81000000n })), {
    memoryMap,
    entry: '64bit',
    cmdline: 'quiet',
  });
  assert.is(boot.protocol, 'linux64');
  assert.is(boot.cpu.regs.rip, 0x1000000n);
  assert.is(boot.cpu.regs.rsi, 0x7000n);
  assert.is(boot.cpu.sregs.cs!.selector, 0x10);
  assert.is(boot.cpu.sregs.cs!.l, 1);
  assert.is(boot.cpu.sregs.ds!.selector, 0x18);
  assert.ok((boot.cpu.sregs.efer! & EFER_LMA) !== 0n);
});

test("vmlinux 64-bit: boot_params carries the minimal header (Firecracker's fields + version), the e820 map and the RSDP", () => {
  const { mem, memoryMap } = machine(64);
  const initrd = pattern(0x1000);
  const boot = loadVmlinux(mem, elfKernel(kernelSpec({ notes: undefined })), {
    memoryMap,
    cmdline: 'quiet',
    initrd,
    acpiRsdpAddr: 0xf0000,
  });
  assert.is(boot.protocol, 'linux64', 'the 64-bit entry is the default without a PVH note');
  const want = new Uint8Array(4096);
  const dv = new DataView(want.buffer);
  dv.setBigUint64(0x070, 0xf0000n, true);
  dv.setUint16(0x1fa, 0xffff, true); // vid_mode
  dv.setUint16(0x1fe, 0xaa55, true); // boot_flag
  dv.setUint32(0x202, 0x53726448, true); // "HdrS"
  dv.setUint16(0x206, 0x020c, true); // version 2.12
  want[0x210] = 0xff; // type_of_loader
  dv.setUint32(0x218, boot.initrd!.start, true);
  dv.setUint32(0x21c, 0x1000, true);
  dv.setUint32(0x228, 0x20000, true); // cmd_line_ptr
  dv.setUint32(0x230, 0x1000000, true); // kernel_alignment
  dv.setUint32(0x238, 2047, true); // cmdline_size
  want[0x1e8] = memoryMap.length;
  memoryMap.forEach((e, i) => {
    le64(dv, 0x2d0 + i * 20, e.addr);
    le64(dv, 0x2d0 + i * 20 + 8, e.size);
    dv.setUint32(0x2d0 + i * 20 + 16, e.type, true);
  });
  assert.equal(mem.read(0x7000, 4096), want);
  assert.equal(mem.read(0x20000, 6), new TextEncoder().encode('quiet\0'));
});

const loadErrors: [string, () => Uint8Array, Record<string, unknown>, RegExp][] = [
  [
    'PVH asked of a kernel without the note',
    () => elfKernel(kernelSpec({ notes: undefined })),
    { entry: 'pvh' },
    /no PVH entry \(no Xen ELF note of type 18\); use the 64-bit entry/,
  ],
  [
    'a PVH entry outside the segments',
    () => elfKernel(kernelSpec({ notes: [pvhNote(0x2000000)] })),
    {},
    /PVH entry 0x2000000 is not inside any loaded segment/,
  ],
  [
    'the 64-bit entry of an ELF32',
    () =>
      elfKernel({
        elfClass: 1,
        entry: 0x100000n,
        segments: [{ paddr: 0x100000, data: TEXT }],
        notes: [pvhNote(0x100000, 4)],
      }),
    { entry: '64bit' },
    /a 32-bit ELF kernel has no 64-bit entry/,
  ],
  [
    'an e_entry outside the segments',
    () => elfKernel(kernelSpec({ entry: 0x5000000n })),
    { entry: '64bit' },
    /entry point 0x5000000 is not inside any loaded segment/,
  ],
  [
    'a kernel over the zero page',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x7000, data: PERCPU }], entry: 0x7000n, notes: undefined })),
    {},
    /the kernel \[0x7000, 0x8000\) overlaps the zero page \[0x7000, 0x8000\)/,
  ],
  [
    'a kernel over the PVH start info',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x5000, data: TEXT }], notes: [pvhNote(0x5000)] })),
    {},
    /overlaps the PVH start info \[0x6000, 0x7c00\)/,
  ],
  [
    'a kernel over the boot page tables',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0xa000, data: TEXT }], entry: 0xa000n, notes: undefined })),
    {},
    /overlaps the boot GDT\/stack\/page tables \[0x9000, 0xf000\)/,
  ],
  [
    'a kernel beyond RAM',
    () => elfKernel(kernelSpec({ segments: [{ paddr: 0x8000000, data: TEXT }], entry: 0x8000000n, notes: undefined })),
    {},
    /the kernel \[0x8000000, 0x8003000\) is not \(wholly\) in usable RAM/,
  ],
  [
    'a command line over 2047 bytes',
    () => elfKernel(kernelSpec()),
    { cmdline: 'x'.repeat(2048) },
    /command line too long: 2048 bytes, this kernel takes at most 2047/,
  ],
];
for (const [what, make, opts, message] of loadErrors) {
  test(`vmlinux: ${what} is refused with a one-line reason and RAM untouched`, () => {
    const { mem, memoryMap } = machine(64);
    assert.throws(
      () => loadVmlinux(mem, make(), { memoryMap, ...opts }),
      (e: Error) => message.test(e.message) && !e.message.includes('\n') && e.message.startsWith('linux: '),
    );
    assert.ok(mem.allBytes(0, 0x100000, 0) && mem.allBytes(0x1000000, 0x210000, 0), 'RAM untouched');
  });
}

test('vmlinux: loadLinux refuses what is neither a bzImage nor ELF', () => {
  const { mem, memoryMap } = machine(16);
  assert.throws(() => loadLinux(mem, pattern(4096), { memoryMap }), /not a Linux kernel/);
});

// ---- the real Debian kernel ------------------------------------------------------------------------------------

const debian = debianKernel();

/** The PVH note as binutils sees it (independent of our parser), or null without readelf. */
function readelfPvhEntry(path: string): number | null {
  const r = spawnSync('readelf', ['-n', path], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) return null;
  const m = /Xen\s+0x0000000[48]\s+Unknown note type: \(0x00000012\)\s+description data: ((?:[0-9a-f]{2} ?)+)/.exec(
    r.stdout,
  );
  if (!m) return null;
  const bytes = m[1]
    .trim()
    .split(' ')
    .map((h) => parseInt(h, 16));
  return bytes.slice(0, 4).reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
}

testIf(
  test,
  debian.reason,
  "vmlinux: Debian's vmlinux has a PVH note (as readelf reads it) and loads segment by segment at p_paddr",
  () => {
    const { vmlinux } = readDebianKernel(debian.kernel!);
    const elf = parseKernelElf(vmlinux);
    assert.is(elf.elfClass, 2);
    assert.ok(elf.pvhEntry !== null, 'PVH note found');
    const fromReadelf = readelfPvhEntry(debian.kernel!.vmlinux);
    if (fromReadelf !== null) assert.is(elf.pvhEntry, fromReadelf, 'same as readelf -n');
    assert.ok(
      elf.segments.some((s) => elf.pvhEntry! >= s.paddr && elf.pvhEntry! < s.paddr + s.memsz),
      'the entry is in a loaded segment',
    );
    assert.is(physicalEntry(elf), Number(elf.entry), 'x86-64 vmlinux links e_entry physical (phys_startup_64)');

    const ramMiB = Math.ceil(elf.end / MiB) + 64;
    const { mem, memoryMap } = machine(ramMiB);
    const initrd = pattern(0x20000, 6);
    const cmdline = 'console=ttyS0 earlyprintk=serial noxsave';
    const boot = loadLinux(mem, vmlinux, { memoryMap, cmdline, initrd, acpiRsdpAddr: 0xf0000 });
    assert.equal([boot.format, boot.protocol, boot.entry], ['elf64', 'pvh', elf.pvhEntry]);
    assert.is(boot.cpu.regs.rbx, 0x6000n);
    for (const s of elf.segments) {
      const n = Math.min(s.filesz, 4096);
      assert.equal(mem.read(s.paddr, n), vmlinux.subarray(s.offset, s.offset + n), `segment ${s.index} head`);
      assert.equal(
        mem.read(s.paddr + s.filesz - n, n),
        vmlinux.subarray(s.offset + s.filesz - n, s.offset + s.filesz),
        `segment ${s.index} tail`,
      );
    }
    const want = expectedStartInfo(0x20000, 0xf0000, [{ paddr: boot.initrd!.start, size: initrd.length }], memoryMap);
    assert.equal(mem.read(0x6000, 56), want.si);
    assert.equal(mem.read(0x6040, 32), want.ml);
    assert.equal(mem.read(0x7000, want.mm.length), want.mm);
    assert.ok(boot.initrd!.start >= elf.end);

    const m2 = machine(ramMiB);
    const b64 = loadLinux(m2.mem, vmlinux, { memoryMap: m2.memoryMap, cmdline, entry: '64bit' });
    assert.is(b64.entry, Number(elf.entry));
    assert.is(b64.cpu.regs.rsi, 0x7000n);
    assert.is(m2.mem.readU32(0x7000 + 0x202), 0x53726448);
  },
);

test.run();
