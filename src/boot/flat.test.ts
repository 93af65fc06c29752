import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFlat, FlatLoadError } from './flat.js';
import { SEL_CODE32, SEL_CODE64 } from './cpu-modes.js';
import { ArrayGuestMemory } from './testing/array-memory.js';
import { pattern } from './testing/images.js';

const MiB = 1024 * 1024;
const newRam = (size = 4 * MiB) => {
  const mem = new ArrayGuestMemory([{ start: 0, size }]);
  mem.fill(0, size, 0xaa);
  return mem;
};

test('flat: the image is copied to its load address and started at entry in each mode', () => {
  const image = pattern(300);
  const real = newRam();
  const r = loadFlat(real, image, { loadAddress: 0x7c00, mode: 'real' });
  assert.equal(real.read(0x7c00, 300), image);
  assert.is(r.sregs.cs!.selector, 0);
  assert.is(r.regs.rip, 0x7c00n);

  const prot = newRam();
  const p = loadFlat(prot, image, { loadAddress: 0x100000, entry: 0x100010, mode: 'protected', stack: 0x90000 });
  assert.equal(prot.read(0x100000, 300), image);
  assert.is(p.regs.rip, 0x100010n);
  assert.is(p.regs.rsp, 0x90000n);
  assert.is(p.sregs.cs!.selector, SEL_CODE32);

  const long = newRam();
  const l = loadFlat(long, image, { loadAddress: 0x200000, mode: 'long' });
  assert.equal(long.read(0x200000, 300), image);
  assert.is(l.regs.rip, 0x200000n);
  assert.is(l.sregs.cs!.selector, SEL_CODE64);
});

test('flat: images that do not fit, overlap the boot tables, or have an entry outside are refused untouched', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['empty image', () => loadFlat(mem, new Uint8Array(0), { loadAddress: 0x100000, mode: 'protected' }), /empty/],
    [
      'past end of RAM',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 4 * MiB - 0x80, mode: 'protected' }),
      /does not fit in guest RAM/,
    ],
    [
      'over the boot GDT',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0x480, mode: 'real' }),
      /overlaps the reserved boot range \[0x500, 0x1000\)/,
    ],
    [
      'over the page tables (long)',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0x9800, mode: 'long' }),
      /overlaps the reserved boot range \[0x9000, 0xf000\)/,
    ],
    [
      'real mode above 1 MiB',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0xfff80, mode: 'real' }),
      /not addressable in real mode/,
    ],
    [
      'entry before image',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0x8000, entry: 0x7fff, mode: 'real' }),
      /entry 0x7fff is outside/,
    ],
    [
      'entry after image',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0x8000, entry: 0x8100, mode: 'real' }),
      /entry 0x8100 is outside/,
    ],
    [
      'negative load address',
      () => loadFlat(mem, pattern(0x100), { loadAddress: -16, mode: 'protected' }),
      /bad load address/,
    ],
    [
      'fractional load address',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0.5, mode: 'protected' }),
      /bad load address/,
    ],
    [
      'unknown mode',
      () => loadFlat(mem, pattern(0x100), { loadAddress: 0x100000, mode: 'v86' as never }),
      /unknown mode/,
    ],
  ];
  const mem = newRam();
  for (const [name, load, error] of cases) {
    assert.throws(load, (e: Error) => e instanceof FlatLoadError && error.test(e.message), name);
    assert.ok(mem.allBytes(0, 4 * MiB, 0xaa), `${name}: nothing written`);
  }
});

test('flat: protected mode may use the long-mode page-table range, long mode may not', () => {
  const mem = newRam();
  loadFlat(mem, pattern(0x100), { loadAddress: 0x9800, mode: 'protected' });
  assert.equal(mem.read(0x9800, 0x100), pattern(0x100));
});

test.run();
