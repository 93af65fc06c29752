import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { e820FromRam, lowerUpperKiB, E820_RAM, E820_RESERVED } from './e820.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('e820: a small VM gets the SeaBIOS-style map: low RAM, EBDA and BIOS area reserved, RAM from 1 MiB', () => {
  assert.equal(e820FromRam([{ start: 0, size: 128 * MiB }]), [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
    { addr: 0xf0000, size: 0x10000, type: E820_RESERVED },
    { addr: 0x100000, size: 127 * MiB, type: E820_RAM },
  ]);
});

test('e820: RAM above the PCI hole and extra reserved ranges appear in address order', () => {
  const map = e820FromRam(
    [
      { start: 0, size: 3 * GiB },
      { start: 4 * GiB, size: 2 * GiB },
    ],
    [{ start: 0xfeffc000, size: 0x4000 }],
  );
  assert.equal(
    map.map((e) => [e.addr, e.size, e.type]),
    [
      [0, 0x9fc00, E820_RAM],
      [0x9fc00, 0x400, E820_RESERVED],
      [0xf0000, 0x10000, E820_RESERVED],
      [0x100000, 3 * GiB - MiB, E820_RAM],
      [0xfeffc000, 0x4000, E820_RESERVED],
      [4 * GiB, 2 * GiB, E820_RAM],
    ],
  );
});

test('e820: mem_lower is usable KiB from 0 (at most 640), mem_upper contiguous usable KiB from 1 MiB', () => {
  assert.equal(lowerUpperKiB(e820FromRam([{ start: 0, size: 128 * MiB }])), { lower: 639, upper: 127 * 1024 });
  assert.equal(
    lowerUpperKiB(
      e820FromRam([
        { start: 0, size: 3 * GiB },
        { start: 4 * GiB, size: GiB },
      ]),
    ),
    { lower: 639, upper: 3 * 1024 * 1024 - 1024 },
  );
  // Adjacent usable entries count as one stretch; a hole ends it.
  assert.equal(
    lowerUpperKiB([
      { addr: 0, size: 0xa0000, type: E820_RAM },
      { addr: 0x100000, size: MiB, type: E820_RAM },
      { addr: 0x200000, size: MiB, type: E820_RAM },
      { addr: 0x400000, size: MiB, type: E820_RAM },
    ]),
    { lower: 640, upper: 2048 },
  );
  assert.equal(lowerUpperKiB([]), { lower: 0, upper: 0 });
});

test('e820: a RAM region smaller than 640 KiB is reported as it is', () => {
  assert.equal(e820FromRam([{ start: 0, size: 0x80000 }]), [{ addr: 0, size: 0x80000, type: E820_RAM }]);
  assert.throws(() => e820FromRam([{ start: 0, size: 0 }]), /bad RAM region/);
});

test.run();
