// An ELF kernel loaded from its file (headers and notes read, segments read into guest RAM) must load exactly what
// the whole image in memory loads: same entry, same bytes in guest RAM.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrayGuestMemory } from '../testing/array-memory.js';
import { e820FromRam } from '../e820.js';
import { loadVmlinux } from './vmlinux.js';
import { parseKernelElf } from './elf-kernel.js';
import { readElfMetadata, readExactly } from './elf-file.js';
import { elfKernel, pvhNote, type ElfKernelSpec } from './testing/images.js';

const dir = mkdtempSync(join(tmpdir(), 'elf-file-'));
const ram = [{ start: 0, size: 32 << 20 }];
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

function spec(notesIn: 'segment' | 'section'): ElfKernelSpec {
  const note = [pvhNote(0x1000040)];
  return {
    entry: 0xffffffff81000000n,
    segments: [
      { paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: bytes(300_000, 1), memsz: 400_000 },
      { paddr: 0x1200000, vaddr: 0xffffffff81200000n, data: bytes(70_000, 7) },
    ],
    ...(notesIn === 'segment' ? { notes: note } : { sectionNotes: note }),
  };
}

for (const notesIn of ['segment', 'section'] as const) {
  test(`elf file: a kernel with its PVH note in a ${notesIn} loads from the file exactly as from memory`, () => {
    const image = elfKernel(spec(notesIn));
    const path = join(dir, `vmlinux-${notesIn}`);
    writeFileSync(path, image);
    const fd = openSync(path, 'r');
    try {
      const metadata = readElfMetadata(fd, image.length);
      const elf = parseKernelElf(metadata);
      assert.is(elf.pvhEntry, 0x1000040);
      // Only the metadata (and the first 64 KiB) was read: the segment bytes after that are still zero in it.
      const second = elf.segments[1];
      assert.ok(metadata.subarray(second.offset, second.offset + second.filesz).every((b) => b === 0));
      assert.ok(metadata.subarray(100_000, 200_000).every((b) => b === 0));

      const options = { memoryMap: e820FromRam(ram), cmdline: 'console=ttyS0' };
      const fromMemory = new ArrayGuestMemory(ram);
      const a = loadVmlinux(fromMemory, image, options);
      const fromFile = new ArrayGuestMemory(ram);
      const b = loadVmlinux(fromFile, metadata, {
        ...options,
        readSegment: (offset, into) => readExactly(fd, into, offset, 'vmlinux'),
      });
      assert.equal(b.cpu, a.cpu);
      assert.is(b.entry, a.entry);
      for (const range of [
        [0x1000000, 400_000],
        [0x1200000, 70_000],
        [0x20000, 0x1000],
      ] as const) {
        assert.equal(
          fromFile.read(range[0], range[1]),
          fromMemory.read(range[0], range[1]),
          `guest bytes at 0x${range[0].toString(16)}`,
        );
      }
    } finally {
      closeSync(fd);
    }
  });
}

test('elf file: a kernel file cut short after it was opened is one clear error, not a partial load', () => {
  const image = elfKernel(spec('segment'));
  const path = join(dir, 'vmlinux-cut');
  writeFileSync(path, image);
  const fd = openSync(path, 'r');
  try {
    const metadata = readElfMetadata(fd, image.length);
    truncateSync(path, 100_000);
    const mem = new ArrayGuestMemory(ram);
    assert.throws(
      () =>
        loadVmlinux(mem, metadata, {
          memoryMap: e820FromRam(ram),
          readSegment: (offset, into) => readExactly(fd, into, offset, 'vmlinux'),
        }),
      /vmlinux: the file ended at 100000, inside a segment/,
    );
  } finally {
    closeSync(fd);
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
