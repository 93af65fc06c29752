import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectKernelFormat } from './detect.js';
import { concat, elf32, elf64Header, multibootHeader, pattern } from './testing/images.js';
import { loadMultiboot } from './multiboot.js';
import { ArrayGuestMemory } from './testing/array-memory.js';
import { e820FromRam } from './e820.js';
import { elfKernel, pvhNote } from './linux/testing/images.js';

test('detect: a Linux bzImage is recognised by "HdrS" at 0x202 and is loadable', () => {
  const image = new Uint8Array(0x1000);
  image.set([0x48, 0x64, 0x72, 0x53, 0x0f, 0x02], 0x202);
  const d = detectKernelFormat(image);
  assert.is(d.kind, 'bzimage');
  assert.is(d.loadable, true);
  assert.match(d.description, /protocol 2\.15/);
});

test('detect: a multiboot ELF32 or a.out image is "multiboot" and loadable', () => {
  const header = multibootHeader();
  const elf = elf32({ entry: 0x100000, segments: [{ paddr: 0x100000, data: concat(header, pattern(16)) }] });
  assert.is(detectKernelFormat(elf).kind, 'multiboot');
  assert.is(detectKernelFormat(elf).loadable, true);
  assert.is(detectKernelFormat(concat(pattern(64), header)).kind, 'multiboot');
});

test('detect: ELF64 is loadable (a vmlinux); a header-less ELF32 only with a PVH note', () => {
  assert.equal(
    [
      detectKernelFormat(concat(elf64Header(), pattern(100))).kind,
      detectKernelFormat(concat(elf64Header(), pattern(100))).loadable,
    ],
    ['elf64', true],
  );
  const plain32 = elf32({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(64) }] });
  assert.equal([detectKernelFormat(plain32).kind, detectKernelFormat(plain32).loadable], ['elf32', false]);
  assert.match(detectKernelFormat(plain32).description, /no PVH note/);
  const pvh32 = elfKernel({
    elfClass: 1,
    entry: 0x100000n,
    segments: [{ paddr: 0x100000, data: pattern(64) }],
    notes: [pvhNote(0x100010, 4)],
  });
  assert.equal([detectKernelFormat(pvh32).kind, detectKernelFormat(pvh32).loadable], ['elf32', true]);
  assert.match(detectKernelFormat(pvh32).description, /PVH entry 0x100010/);
  const pvh64 = elfKernel({
    entry: 0x1000000n,
    segments: [{ paddr: 0x1000000, data: pattern(64) }],
    notes: [pvhNote(0x1000020)],
  });
  assert.match(detectKernelFormat(pvh64).description, /64-bit ELF \(e_machine 62, PVH entry 0x1000020\)/);
});

test('detect: a damaged multiboot header is still "multiboot", so the loader reports the exact fault', () => {
  const image = concat(pattern(32), multibootHeader({ checksum: 7 }));
  const d = detectKernelFormat(image);
  assert.is(d.kind, 'multiboot');
  assert.match(d.description, /bad checksum/);
  const mem = new ArrayGuestMemory([{ start: 0, size: 4 << 20 }]);
  assert.throws(
    () => loadMultiboot(mem, image, { memoryMap: e820FromRam([{ start: 0, size: 4 << 20 }]) }),
    /bad checksum at offset 0x20/,
  );
  const elf = elf32({
    entry: 0x100000,
    segments: [{ paddr: 0x100000, data: concat(multibootHeader({ checksum: 7 }), pattern(16)) }],
  });
  assert.is(detectKernelFormat(elf).kind, 'multiboot', 'an ELF32 with a damaged header too');
});

test('detect: anything else, including an empty file, is a flat binary', () => {
  assert.is(detectKernelFormat(pattern(5000, 0x11)).kind, 'flat');
  assert.is(detectKernelFormat(new Uint8Array(0)).kind, 'flat');
  assert.is(detectKernelFormat(new Uint8Array(0)).loadable, true);
});

test.run();
