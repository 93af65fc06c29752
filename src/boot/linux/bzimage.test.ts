import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ArrayGuestMemory } from '../testing/array-memory.js';
import { e820FromRam, E820_RAM, E820_RESERVED, type E820Entry } from '../e820.js';
import { decodeDescriptor, EFER_LMA, EFER_LME, CR0_PG, CR4_PAE } from '../cpu-modes.js';
import { loadBzImage, placeBzImage } from './bzimage.js';
import { parseSetupHeader } from './setup-header.js';
import { bzImage } from './testing/images.js';
import { pattern } from '../testing/images.js';
import { debianKernel, readDebianKernel } from '../../../test/support/linux-kernel.js';
import { testIf } from '../../../test/support/skip.js';

const MiB = 1024 * 1024;

function machine(ramMiB: number): { mem: ArrayGuestMemory; memoryMap: E820Entry[] } {
  const ram = [{ start: 0, size: ramMiB * MiB }];
  return { mem: new ArrayGuestMemory(ram), memoryMap: e820FromRam(ram) };
}

/** 64 KiB of protected-mode code with a recognisable pattern; 0x200 is where the 64-bit entry would be. */
const KERNEL = pattern(0x10000, 3);

const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

// ---- setup header ---------------------------------------------------------------------------------------------

test('bzimage header: the fields a loader reads come from their boot.rst offsets', () => {
  const image = bzImage({
    kernel: KERNEL,
    setupSects: 6,
    fields: { init_size: 0x123000, cmdline_size: 511, initrd_addr_max: 0x37ffffff },
  });
  const h = parseSetupHeader(image);
  assert.is(h.version, 0x020f);
  assert.is(h.versionText, '2.15');
  assert.is(h.setupSects, 6);
  assert.is(h.setupSize, 7 * 512);
  assert.is(h.headerEnd, 0x26c);
  assert.is(h.kernelFileSize, KERNEL.length);
  assert.is(h.relocatable, true);
  assert.is(h.kernelAlignment, 0x200000);
  assert.is(h.prefAddress, 0x1000000);
  assert.is(h.initSize, 0x123000);
  assert.is(h.cmdlineSize, 511);
  assert.is(h.initrdAddrMax, 0x37ffffff);
  assert.is(h.kernelVersion, '6.1.0-test (tsvmm@test) #1 SMP');
  assert.equal(h.bytes, image.slice(0x1f1, 0x26c));
});

test('bzimage header: setup_sects 0 means 4', () => {
  const image = bzImage({ kernel: KERNEL, setupSects: 4, fields: { setup_sects: 0 } });
  assert.is(parseSetupHeader(image).setupSize, 5 * 512);
});

const headerErrors: [string, () => Uint8Array, RegExp][] = [
  [
    'a file too short for the header',
    () => bzImage({ kernel: KERNEL }).slice(0, 0x100),
    /truncated setup header: the file is 256 bytes/,
  ],
  [
    'no "HdrS"',
    () => bzImage({ kernel: KERNEL, fields: { header: 0x12345678 } }),
    /not a bzImage: no "HdrS" signature at 0x202/,
  ],
  [
    'protocol 2.05',
    () => bzImage({ kernel: KERNEL, version: 0x0205 }),
    /boot protocol 2\.05 is too old: 2\.06 or newer is needed/,
  ],
  [
    'a jump that is not a short jmp',
    () => {
      const i = bzImage({ kernel: KERNEL });
      i[0x200] = 0xe9;
      return i;
    },
    /not a short jmp/,
  ],
  [
    'a header shorter than its protocol',
    () => bzImage({ kernel: KERNEL, jumpLength: 0x30 }),
    /ends at 0x232 but protocol 2\.15 defines fields up to 0x26c/,
  ],
  ['a header running into edd_mbr_sig_buffer', () => bzImage({ kernel: KERNEL, jumpLength: 0x90 }), /past 0x290/],
  [
    'a header cut off by the end of the file',
    () => bzImage({ kernel: KERNEL }).slice(0, 0x250),
    /truncated setup header: it ends at 0x26c, the file is 592 bytes/,
  ],
  [
    'a wrong boot_flag',
    () => bzImage({ kernel: KERNEL, fields: { boot_flag: 0x1234 } }),
    /boot_flag is 0x1234, not 0xaa55/,
  ],
  [
    'setup sectors past the end of the file',
    () => bzImage({ kernel: KERNEL, fields: { setup_sects: 200 } }),
    /truncated kernel: setup_sects 200 puts the protected-mode code at 0x19200/,
  ],
  [
    'syssize larger than the file',
    () => bzImage({ kernel: KERNEL, fields: { syssize: 0x2000 } }),
    /truncated kernel: syssize says 0x20000 bytes of protected-mode code, the file has 0x10000/,
  ],
  ['a zImage', () => bzImage({ kernel: KERNEL, fields: { loadflags: 0 } }), /zImage \(loadflags\.LOADED_HIGH clear\)/],
  [
    'a payload past the code',
    () => bzImage({ kernel: KERNEL, fields: { payload_offset: 0xff00, payload_length: 0x200 } }),
    /payload \[0xff00, \+0x200\) runs past/,
  ],
];
for (const [what, make, message] of headerErrors) {
  test(`bzimage header: ${what} is refused with a one-line reason`, () => {
    assert.throws(
      () => parseSetupHeader(make()),
      (e: Error) => message.test(e.message) && !e.message.includes('\n'),
    );
  });
}

// ---- loading ---------------------------------------------------------------------------------------------------

test('bzimage: a relocatable kernel goes to pref_address and starts in 64-bit mode at +0x200 with RSI = boot_params', () => {
  const { mem, memoryMap } = machine(64);
  const image = bzImage({ kernel: KERNEL });
  const boot = loadBzImage(mem, image, { memoryMap, cmdline: 'console=ttyS0' });
  assert.is(boot.protocol, 'linux64');
  assert.is(boot.format, 'bzimage');
  assert.equal(mem.read(0x1000000, KERNEL.length), KERNEL);
  assert.is(boot.entry, 0x1000200);
  assert.equal(boot.kernel, { start: 0x1000000, end: 0x1400000 }, 'init_size (4 MiB) from the load address');
  const { regs, sregs } = boot.cpu;
  assert.is(regs.rip, 0x1000200n);
  assert.is(regs.rsi, 0x7000n);
  assert.is(regs.rbx, 0n);
  assert.is(regs.rbp, 0n);
  assert.is(regs.rdi, 0n);
  assert.is(regs.rflags, 2n, 'interrupts off');
  // __BOOT_CS = 0x10 is a flat 64-bit code segment, __BOOT_DS = 0x18 flat data, in the GDTR'd table as in RAM.
  assert.is(sregs.cs?.selector, 0x10);
  assert.is(sregs.cs?.l, 1);
  assert.is(sregs.cs?.type, 0xb);
  for (const s of [sregs.ds, sregs.es, sregs.ss]) assert.is(s?.selector, 0x18);
  const gdt = Number(sregs.gdt?.base);
  const cs = decodeDescriptor(mem.readU64(gdt + 0x10), 0x10);
  assert.equal(cs, sregs.cs);
  const ds = decodeDescriptor(mem.readU64(gdt + 0x18), 0x18);
  assert.is(ds.base, 0n);
  assert.is(ds.limit, 0xffffffff);
  assert.is(ds.type & 0xa, 0x2, 'read/write data');
  // Long mode with paging on through identity-mapped tables: the kernel, zero page and command line translate to themselves.
  assert.is(sregs.efer, EFER_LME | EFER_LMA);
  assert.ok((sregs.cr0! & CR0_PG) !== 0n && (sregs.cr4! & CR4_PAE) !== 0n);
  const pml4 = Number(sregs.cr3);
  const walk = (va: number) => {
    const pdpt = Number(mem.readU64(pml4) & ~0xfffn);
    const pd = Number(mem.readU64(pdpt + Math.floor(va / 2 ** 30) * 8) & ~0xfffn);
    const pde = mem.readU64(pd + (Math.floor(va / 2 ** 21) % 512) * 8);
    return Number(pde & ~0x1fffffn & 0xfffffffffn) + (va % 2 ** 21);
  };
  for (const va of [0x1000200, 0x13fffff, 0x7000, 0x20000]) assert.is(walk(va), va);
});

test("bzimage: boot_params is a clean page: the image's setup header, then the loader's fields, the e820 map and the RSDP", () => {
  const { mem, memoryMap } = machine(64);
  const image = bzImage({ kernel: KERNEL, fields: { loadflags: 0x01 | 0x40 | 0x20 } });
  const initrd = pattern(0x1800, 9);
  const boot = loadBzImage(mem, image, { memoryMap, cmdline: 'root=/dev/vda', initrd, acpiRsdpAddr: 0xf0000 });
  // The expected page, byte by byte, from boot.rst's offsets.
  const want = new Uint8Array(4096);
  const dv = new DataView(want.buffer);
  want.set(image.subarray(0x1f1, 0x26c), 0x1f1);
  dv.setBigUint64(0x070, 0xf0000n, true); // acpi_rsdp_addr
  dv.setUint16(0x1fa, 0xffff, true); // vid_mode: normal
  want[0x210] = 0xff; // type_of_loader: undefined id
  want[0x211] = 0x01 | 0x20 | 0x80; // LOADED_HIGH kept, QUIET kept, CAN_USE_HEAP set, KEEP_SEGMENTS cleared
  dv.setUint32(0x214, 0x1000000, true); // code32_start = load address
  dv.setUint32(0x218, boot.initrd!.start, true); // ramdisk_image
  dv.setUint32(0x21c, 0x1800, true); // ramdisk_size
  dv.setUint16(0x224, 0xde00, true); // heap_end_ptr
  dv.setUint32(0x228, 0x20000, true); // cmd_line_ptr
  dv.setUint32(0x23c, 0, true); // hardware_subarch: PC
  want[0x1e8] = memoryMap.length; // e820_entries
  memoryMap.forEach((e, i) => {
    dv.setBigUint64(0x2d0 + i * 20, BigInt(e.addr), true);
    dv.setBigUint64(0x2d0 + i * 20 + 8, BigInt(e.size), true);
    dv.setUint32(0x2d0 + i * 20 + 16, e.type, true);
  });
  assert.equal(mem.read(0x7000, 4096), want);
  assert.equal(mem.read(0x20000, 14), new TextEncoder().encode('root=/dev/vda\0'));
  assert.equal(boot.cmdline, { start: 0x20000, end: 0x2000e });
});

test('bzimage: the initrd goes as high as low RAM allows, page aligned', () => {
  const { mem, memoryMap } = machine(64);
  const initrd = pattern(0x1801, 5);
  const boot = loadBzImage(mem, bzImage({ kernel: KERNEL }), { memoryMap, initrd });
  assert.equal(boot.initrd, { start: 0x3ffe000, end: 0x3ffe000 + 0x1801 });
  assert.equal(mem.read(0x3ffe000, initrd.length), initrd);
});

test('bzimage: the initrd stays at or below initrd_addr_max', () => {
  const { mem, memoryMap } = machine(64);
  const boot = loadBzImage(mem, bzImage({ kernel: KERNEL, fields: { initrd_addr_max: 0x2ffffff } }), {
    memoryMap,
    initrd: pattern(0x2000),
  });
  assert.equal(boot.initrd, { start: 0x2ffe000, end: 0x3000000 });
});

test("bzimage: the initrd is kept out of the kernel's init_size and out of reserved ranges", () => {
  const { mem, memoryMap } = machine(64);
  // The kernel claims [16 MiB, 62 MiB); a reserved table sits at the top of RAM.
  const image = bzImage({ kernel: KERNEL, fields: { init_size: 46 * MiB } });
  const boot = loadBzImage(mem, image, {
    memoryMap,
    initrd: pattern(0x3000),
    reserved: [{ start: 63 * MiB, end: 64 * MiB, what: 'the ACPI tables' }],
  });
  assert.equal(boot.initrd, { start: 63 * MiB - 0x3000, end: 63 * MiB });
  const big = loadBzImage(new ArrayGuestMemory([{ start: 0, size: 64 * MiB }]), image, {
    memoryMap,
    initrd: pattern(2 * MiB),
    reserved: [{ start: 62 * MiB, end: 64 * MiB, what: 'the ACPI tables' }],
  });
  assert.equal(big.initrd, { start: 14 * MiB, end: 16 * MiB }, 'below the kernel when nothing is free above it');
});

test('bzimage: a non-relocatable kernel loads at 1 MiB and claims up to pref_address + init_size', () => {
  const place = placeBzImage(parseSetupHeader(bzImage({ kernel: KERNEL, fields: { relocatable_kernel: 0 } })));
  assert.equal(place, { load: 0x100000, runtimeStart: 0x1000000, start: 0x100000, end: 0x1400000 });
  const { mem, memoryMap } = machine(64);
  const boot = loadBzImage(mem, bzImage({ kernel: KERNEL, fields: { relocatable_kernel: 0 } }), { memoryMap });
  assert.is(boot.entry, 0x100200);
  assert.equal(mem.read(0x100000, 64), KERNEL.subarray(0, 64));
  assert.is(mem.readU32(0x7000 + 0x214), 0x100000, 'code32_start');
});

test('bzimage: bytes after syssize (a signature) are loaded too, and without an RSDP the field stays 0', () => {
  const { mem, memoryMap } = machine(64);
  const trailer = pattern(0x40, 0x77);
  loadBzImage(mem, bzImage({ kernel: KERNEL, trailer }), { memoryMap });
  assert.equal(mem.read(0x1000000 + KERNEL.length, 0x40), trailer);
  assert.is(mem.readU64(0x7070), 0n);
});

const loadErrors: [
  string,
  () => { image: Uint8Array; opts?: Record<string, unknown>; ram?: number; map?: E820Entry[] },
  RegExp,
][] = [
  [
    'a kernel without the 64-bit entry',
    () => ({ image: bzImage({ kernel: KERNEL, fields: { xloadflags: 0 } }) }),
    /no 64-bit entry point \(boot protocol 2\.15, xloadflags 0x0: XLF_KERNEL_64 clear\)/,
  ],
  [
    'a protocol 2.10 kernel (no xloadflags)',
    () => ({ image: bzImage({ kernel: KERNEL, version: 0x020a, jumpLength: 0x62 }) }),
    /no 64-bit entry point \(boot protocol 2\.10/,
  ],
  [
    'a kernel_alignment that is not a power of two',
    () => ({ image: bzImage({ kernel: KERNEL, fields: { kernel_alignment: 0x300000 } }) }),
    /kernel_alignment 0x300000, which is not a power of two/,
  ],
  [
    'a kernel whose init_size does not fit in RAM',
    () => ({ image: bzImage({ kernel: KERNEL, fields: { init_size: 60 * MiB } }), ram: 64 }),
    /kernel cannot be placed: loaded at 0x1000000 \(relocatable\) it needs init_size 0x3c00000 from 0x1000000, so \[0x1000000, 0x4c00000\) is not \(wholly\) in usable RAM/,
  ],
  [
    'a kernel that would run past 4 GiB',
    () => ({ image: bzImage({ kernel: KERNEL, fields: { pref_address: 0xfff00000n } }) }),
    /past the 4 GiB the boot page tables identity-map/,
  ],
  [
    'a kernel over a reserved range',
    () => ({
      image: bzImage({ kernel: KERNEL }),
      opts: { reserved: [{ start: 0x1100000, end: 0x1101000, what: 'the MP table' }] },
    }),
    /overlaps the MP table \[0x1100000, 0x1101000\)/,
  ],
  [
    'a command line longer than cmdline_size',
    () => ({ image: bzImage({ kernel: KERNEL, fields: { cmdline_size: 8 } }), opts: { cmdline: 'console=ttyS0' } }),
    /command line too long: 13 bytes, this kernel takes at most 8/,
  ],
  [
    'a command line with a NUL',
    () => ({ image: bzImage({ kernel: KERNEL }), opts: { cmdline: 'a\0b' } }),
    /contains a NUL/,
  ],
  [
    'a command line that runs into the EBDA',
    () => ({
      image: bzImage({ kernel: KERNEL, fields: { cmdline_size: 0xffffffff } }),
      opts: { cmdline: 'x'.repeat(0x80000) },
    }),
    /do not fit between 0x20000 and 0x9fc00/,
  ],
  [
    'an initrd larger than free RAM under initrd_addr_max',
    () => ({
      image: bzImage({ kernel: KERNEL, fields: { initrd_addr_max: 0xffffff } }),
      opts: { initrd: new Uint8Array(15 * MiB + 1) },
    }),
    /initrd does not fit: 15728641 bytes in free usable RAM at or below 0xffffff/,
  ],
  [
    'an empty initrd',
    () => ({ image: bzImage({ kernel: KERNEL }), opts: { initrd: new Uint8Array(0) } }),
    /the initrd is empty/,
  ],
  [
    'a memory map with 129 entries',
    () => ({
      image: bzImage({ kernel: KERNEL }),
      map: [
        ...e820FromRam([{ start: 0, size: 64 * MiB }]),
        ...Array.from({ length: 125 }, (_, i) => ({
          addr: 0xfe000000 + i * 0x1000,
          size: 0x1000,
          type: E820_RESERVED,
        })),
      ],
    }),
    /memory map has 129 entries; boot_params holds at most 128/,
  ],
  ['an empty memory map', () => ({ image: bzImage({ kernel: KERNEL }), map: [] }), /no memory map given/],
  [
    'a memory map whose RAM lacks the zero page',
    () => ({ image: bzImage({ kernel: KERNEL }), map: [{ addr: 0x100000, size: 63 * MiB, type: E820_RAM }] }),
    /the zero page \[0x7000, 0x8000\) is not \(wholly\) in usable RAM/,
  ],
  [
    'the PVH entry',
    () => ({ image: bzImage({ kernel: KERNEL }), opts: { entry: 'pvh' } }),
    /a bzImage has no PVH entry/,
  ],
];
for (const [what, make, message] of loadErrors) {
  test(`bzimage: ${what} is refused with a one-line reason and RAM untouched`, () => {
    const { image, opts, ram, map } = make();
    const m = machine(ram ?? 64);
    assert.throws(
      () => loadBzImage(m.mem, image, { memoryMap: map ?? m.memoryMap, ...opts }),
      (e: Error) => message.test(e.message) && !e.message.includes('\n') && e.message.startsWith('linux: '),
    );
    for (const r of [
      [0, 0x100000],
      [0x1000000, 0x20000],
      [m.mem.totalSize - 0x100000, 0x100000],
    ]) {
      assert.ok(m.mem.allBytes(r[0], r[1], 0), `RAM at 0x${r[0].toString(16)} untouched`);
    }
  });
}

// ---- the real Debian kernel ------------------------------------------------------------------------------------

const debian = debianKernel();

testIf(
  test,
  debian.reason,
  "bzimage: Debian's cloud kernel: header read, code at pref_address, its payload where payload_offset says",
  () => {
    const { bzImage: image } = readDebianKernel(debian.kernel!);
    const h = parseSetupHeader(image);
    // Independently read from boot.rst's offsets.
    assert.is(h.version, u16(image, 0x206));
    assert.ok(h.version >= 0x020c);
    assert.is(h.setupSize, ((image[0x1f1] || 4) + 1) * 512);
    assert.is(h.relocatable, image[0x234] !== 0);
    assert.is(h.initSize, u32(image, 0x260));
    assert.is(h.prefAddress, u32(image, 0x258));
    assert.is(h.cmdlineSize, u32(image, 0x238));
    assert.ok(h.kernelVersion?.startsWith(debian.kernel!.release), `version string ${h.kernelVersion}`);
    const ramMiB = Math.ceil((h.prefAddress + h.initSize) / MiB) + 64;
    const { mem, memoryMap } = machine(ramMiB);
    const initrd = pattern(0x10000, 1);
    const boot = loadBzImage(mem, image, {
      memoryMap,
      cmdline: 'console=ttyS0 earlyprintk=serial',
      initrd,
      acpiRsdpAddr: 0xf0000,
    });
    assert.is(boot.entry, h.prefAddress + 0x200);
    assert.equal(boot.kernel, { start: h.prefAddress, end: h.prefAddress + h.initSize });
    assert.equal(mem.read(h.prefAddress, 4096), image.subarray(h.setupSize, h.setupSize + 4096));
    const tail = image.length - h.setupSize - 4096;
    assert.equal(mem.read(h.prefAddress + image.length - h.setupSize - 4096, 4096), image.subarray(h.setupSize + tail));
    const payload = mem.read(h.prefAddress + h.payloadOffset, 4);
    assert.ok(
      [
        [0x02, 0x21, 0x4c, 0x18],
        [0x1f, 0x8b],
        [0xfd, 0x37],
        [0x28, 0xb5],
      ].some((m) => m.every((b, i) => payload[i] === b)),
      'a compressed payload (lz4/gzip/xz/zstd) at load + payload_offset',
    );
    const zp = mem.read(0x7000, 4096);
    assert.equal(
      zp.subarray(0x1f1, 0x210),
      image.subarray(0x1f1, 0x210).map((b, i) => (i === 0x1fa - 0x1f1 || i === 0x1fb - 0x1f1 ? 0xff : b)),
    );
    assert.is(zp[0x210], 0xff);
    assert.is(u32(zp, 0x228), 0x20000);
    assert.is(u32(zp, 0x218), boot.initrd!.start);
    assert.ok(boot.initrd!.end <= Math.min(ramMiB * MiB, h.initrdAddrMax + 1));
    assert.ok(boot.initrd!.start >= boot.kernel.end, 'initrd above the kernel');
    assert.is(zp[0x1e8], memoryMap.length);
    assert.is(Number(new DataView(zp.buffer).getBigUint64(0x70, true)), 0xf0000);
    assert.is(boot.cpu.regs.rip, BigInt(h.prefAddress + 0x200));
  },
);

test.run();
