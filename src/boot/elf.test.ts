// The ELF reader as a specification: what it reads from a well-formed file, and that a malformed one — cut short,
// with counts or offsets that point past the end, an unknown class or machine — is one ElfError naming the field,
// never a RangeError from a DataView or an allocation sized by the file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EM_386, EM_X86_64, ElfError, ElfFile, hasElfMagic, parseNotes, PT_LOAD, PT_NOTE, SHT_NOTE } from './elf.js';
import { concat, elf32, pattern } from './testing/images.js';
import { elfKernel, pvhNote, type ElfKernelSpec } from './linux/testing/images.js';

const TEXT = pattern(0x3000);
const kernel = (over: Partial<ElfKernelSpec> = {}) =>
  elfKernel({
    entry: 0xffffffff81000000n,
    segments: [
      { paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: TEXT },
      { paddr: 0x1200000, data: pattern(0x100), memsz: 0x1000 },
    ],
    notes: [pvhNote(0x1000040)],
    sectionNotes: [pvhNote(0x1000080, 4)],
    ...over,
  });

/** An ELF64 object with the given sections, after a null section and the section name table (index 1). */
function withSections(sections: { name: string; data: Uint8Array }[]): Uint8Array {
  const names = ['', '.shstrtab', ...sections.map((s) => s.name)];
  const nameAt = names.map((_, i) => names.slice(0, i).reduce((n, name) => n + name.length + 1, 0));
  const strtab = new TextEncoder().encode(names.map((n) => `${n}\0`).join(''));
  const bodies = [new Uint8Array(0), strtab, ...sections.map((s) => s.data)];
  const offsets = bodies.map((_, i) => 64 + bodies.slice(0, i).reduce((n, b) => n + b.length, 0));
  const shoff = 64 + bodies.reduce((n, b) => n + b.length, 0);
  const header = new Uint8Array(64);
  const h = new DataView(header.buffer);
  header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  h.setUint16(16, 1, true); // ET_REL, as a kernel module
  h.setUint16(18, EM_X86_64, true);
  h.setBigUint64(40, BigInt(shoff), true);
  h.setUint16(58, 64, true);
  h.setUint16(60, bodies.length, true);
  h.setUint16(62, 1, true);
  const table = new Uint8Array(64 * bodies.length);
  const t = new DataView(table.buffer);
  for (const [i, body] of bodies.entries()) {
    t.setUint32(i * 64, nameAt[i], true);
    t.setUint32(i * 64 + 4, i === 0 ? 0 : 1, true); // SHT_NULL, then SHT_PROGBITS
    t.setBigUint64(i * 64 + 24, BigInt(offsets[i]), true);
    t.setBigUint64(i * 64 + 32, BigInt(body.length), true);
  }
  return concat(header, ...bodies, table);
}

/** What a loader does with a file: every table, segment and note it can reach. */
function readAll(bytes: Uint8Array): void {
  const elf = ElfFile.read(bytes);
  elf.requireExecutable(elf.is64 ? EM_X86_64 : EM_386);
  elf.loadSegments();
  for (const ph of elf.programHeaders())
    if (ph.type === PT_NOTE) parseNotes('notes', elf.slice('notes', ph.offset, ph.filesz), ph.align);
  for (const sh of elf.sectionHeaders())
    if (sh.type === SHT_NOTE) parseNotes('notes', elf.slice('notes', sh.offset, sh.size), sh.align);
  elf.section('.modinfo');
}

function refusal(bytes: Uint8Array, read: (bytes: Uint8Array) => unknown = readAll): string {
  try {
    read(bytes);
  } catch (e) {
    assert.instance(e, ElfError, `${(e as Error).name}: ${(e as Error).message}`);
    assert.not.match((e as Error).message, /\n/);
    return (e as Error).message;
  }
  return assert.unreachable('the file was accepted') as never;
}

test('elf: an ELF64 kernel — header, PT_LOAD segments in file order, notes from a segment and a section', () => {
  const elf = ElfFile.read(kernel());
  assert.is(elf.elfClass, 2);
  assert.ok(elf.is64);
  assert.is(elf.entry, 0xffffffff81000000n);
  assert.equal(
    elf.loadSegments().map((s) => [s.index, s.paddr, s.filesz, s.memsz, s.vaddr]),
    [
      [0, 0x1000000, 0x3000, 0x3000, 0xffffffff81000000n],
      [1, 0x1200000, 0x100, 0x1000, 0x1200000n],
    ],
  );
  const [note] = elf.programHeaders().filter((ph) => ph.type === PT_NOTE);
  assert.equal(
    parseNotes('note segment', elf.slice('note segment', note.offset, note.filesz), note.align).map((n) => [
      n.name,
      n.type,
      n.desc.length,
    ]),
    [['Xen', 18, 8]],
  );
  const [section] = elf.sectionHeaders().filter((sh) => sh.type === SHT_NOTE);
  assert.is(
    parseNotes('note section', elf.slice('note section', section.offset, section.size), section.align)[0].desc.length,
    4,
  );
});

test('elf: an ELF32 executable, and the file offsets of its segments', () => {
  const bytes = elf32({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(64) }] });
  const elf = ElfFile.read(bytes);
  assert.is(elf.elfClass, 1);
  elf.requireExecutable(EM_386);
  const [seg] = elf.loadSegments();
  assert.equal(bytes.subarray(seg.offset, seg.offset + seg.filesz), pattern(64));
  assert.is(elf.programHeaders()[0].type, PT_LOAD);
});

test('elf: a section found by its name; null for a missing name or a file without sections', () => {
  const modinfo = new TextEncoder().encode('license=GPL\0depends=virtio\0');
  const bytes = withSections([
    { name: '.text', data: pattern(16) },
    { name: '.modinfo', data: modinfo },
  ]);
  assert.equal(ElfFile.read(bytes).section('.modinfo'), modinfo);
  assert.is(ElfFile.read(bytes).section('.modinf'), null, 'a prefix of a name is not the name');
  assert.is(ElfFile.read(bytes).section('.data'), null);
  assert.is(ElfFile.read(kernel({ sectionNotes: undefined })).section('.modinfo'), null);
});

test('elf: not ELF, an unknown class, another byte order or version, a header cut short', () => {
  assert.not.ok(hasElfMagic(new Uint8Array(100)));
  assert.not.ok(hasElfMagic(kernel().subarray(0, 15)), 'e_ident is 16 bytes');
  assert.is(refusal(new Uint8Array(100)), 'ELF: no ELF magic');
  const set = (at: number, value: number) => {
    const b = kernel();
    b[at] = value;
    return b;
  };
  assert.is(refusal(set(4, 3)), 'ELF: unknown class 3');
  assert.is(refusal(set(5, 2)), 'ELF: not little-endian');
  assert.is(refusal(set(6, 0)), 'ELF: unknown version 0');
  assert.is(refusal(kernel().slice(0, 63)), 'ELF: the file is 63 bytes, shorter than its 64-byte header');
  const elf32Header = elf32({ entry: 0, segments: [{ paddr: 0, data: pattern(4) }] }).slice(0, 51);
  assert.is(refusal(elf32Header), 'ELF: the file is 51 bytes, shorter than its 52-byte header');
});

test('elf: the wrong type or machine for the loader', () => {
  assert.is(refusal(kernel({ machine: 40 })), 'ELF: e_machine 40 is not EM_X86_64 (62)');
  assert.is(refusal(kernel({ elfClass: 1, machine: 62, entry: 0x1000000n })), 'ELF: e_machine 62 is not EM_386 (3)');
  const b = kernel();
  b[16] = 1;
  assert.is(refusal(b), 'ELF: e_type 1 is not ET_EXEC (an executable)');
});

test('elf: e_phnum overflowing the file, PN_XNUM, a small e_phentsize and a 64-bit e_phoff that would wrap', () => {
  const edit = (f: (dv: DataView) => void) => {
    const b = kernel();
    f(new DataView(b.buffer));
    return b;
  };
  assert.is(
    refusal(edit((dv) => dv.setUint16(56, 0xfff0, true))),
    `ELF: program header table [0x40, +0x${(0xfff0 * 56).toString(16)}) runs past the end of the file ` +
      `(${kernel().length} bytes)`,
  );
  assert.is(
    refusal(edit((dv) => dv.setUint16(56, 0xffff, true))),
    'ELF: extended program header count (PN_XNUM) is not supported',
  );
  assert.is(refusal(edit((dv) => dv.setUint16(54, 32, true))), 'ELF: e_phentsize 32 is smaller than 56');
  assert.match(refusal(edit((dv) => dv.setBigUint64(32, 2n ** 64n - 8n, true))), /program header table \[0xfff/);
  assert.is(refusal(edit((dv) => dv.setUint16(56, 0, true))), 'ELF: no program headers');
});

test('elf: segments, sections and notes that point past the end of the file', () => {
  assert.match(
    refusal(kernel({ segments: [{ paddr: 0x1000000, data: TEXT, filesz: 0x100000 }] })),
    /^ELF: segment 0's file bytes \[0x[0-9a-f]+, \+0x100000\) runs past the end of the file/,
  );
  assert.match(
    refusal(kernel({ segments: [{ paddr: 0x1000000, data: TEXT, offset: 2 ** 52 }] })),
    /segment 0's file bytes \[0x10000000000000, \+0x3000\) runs past the end/,
  );
  const shnum = kernel();
  new DataView(shnum.buffer).setUint16(60, 0x8000, true);
  assert.match(refusal(shnum), /^ELF: section header table \[0x[0-9a-f]+, \+0x200000\) runs past the end of the file/);
  const shstrndx = withSections([{ name: '.modinfo', data: pattern(4) }]);
  new DataView(shstrndx.buffer).setUint16(62, 9, true);
  assert.is(
    refusal(shstrndx, (b) => ElfFile.read(b).section('.modinfo')),
    'ELF: section name table index 9 out of range (3 sections)',
  );
  const note = kernel({ sectionNotes: undefined }); // ends with the PVH note: 12 + "Xen\0" + 8 bytes
  new DataView(note.buffer).setUint32(note.length - 24 + 4, 0x100, true);
  assert.is(refusal(note), 'ELF: a note in notes (name size 4, desc size 256) runs past its end');
});

test('elf: filesz larger than memsz, overlapping segments, nothing to load', () => {
  assert.is(
    refusal(kernel({ segments: [{ paddr: 0x1000000, data: TEXT, memsz: 0x100 }] })),
    'ELF: segment 0: p_filesz 0x3000 is larger than p_memsz 0x100',
  );
  assert.is(
    refusal(
      kernel({
        segments: [
          { paddr: 0x1000000, data: TEXT },
          { paddr: 0x1002000, data: TEXT },
        ],
      }),
    ),
    'ELF: segments 0 and 1 overlap at physical 0x1002000',
  );
  assert.is(
    refusal(kernel({ segments: [{ paddr: 0x1000000, data: new Uint8Array(0) }] })),
    'ELF: no PT_LOAD segment with a non-zero size',
  );
});

test('elf: every cut of a file, and every byte of its headers changed, is read or refused as ElfError', () => {
  const whole = kernel();
  for (let length = 0; length < whole.length; length++) {
    try {
      readAll(whole.subarray(0, length));
    } catch (e) {
      assert.instance(e, ElfError, `cut at ${length}: ${(e as Error).message}`);
    }
  }
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 8;
  };
  const headers = 64 + 3 * 56;
  for (let round = 0; round < 3000; round++) {
    const bytes = kernel();
    for (let n = 1 + (random() % 3); n > 0; n--) bytes[random() % headers] = random() & 0xff;
    try {
      readAll(bytes);
    } catch (e) {
      assert.instance(e, ElfError, `round ${round}: ${(e as Error).message}`);
    }
  }
});

test.run();
