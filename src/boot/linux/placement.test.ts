import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ArrayGuestMemory } from '../testing/array-memory.js';
import { E820_ACPI, E820_RAM, E820_RESERVED, e820FromRam } from '../e820.js';
import { placeHighest, requireFree, requireUsableRam, usableRanges } from './placement.js';

const MiB = 1024 * 1024;

test('placement: usable RAM is the RAM entries joined, minus what other entries reserve inside them', () => {
  const map = [...e820FromRam([{ start: 0, size: 64 * MiB }]), { addr: 60 * MiB, size: 0x10000, type: E820_ACPI }];
  assert.equal(usableRanges(map), [
    { start: 0, end: 0x9fc00 },
    { start: 0x100000, end: 60 * MiB },
    { start: 60 * MiB + 0x10000, end: 64 * MiB },
  ]);
  assert.equal(
    usableRanges([
      { addr: 0, size: 0x1000, type: E820_RAM },
      { addr: 0x1000, size: 0x1000, type: E820_RAM },
    ]),
    [{ start: 0, end: 0x2000 }],
  );
});

test('placement: the highest page-aligned free spot under the ceiling, skipping taken ranges and reserved holes', () => {
  const mem = new ArrayGuestMemory([{ start: 0, size: 64 * MiB }]);
  const map = [...e820FromRam([{ start: 0, size: 64 * MiB }]), { addr: 63 * MiB, size: MiB, type: E820_RESERVED }];
  const usable = usableRanges(map);
  assert.equal(placeHighest(mem, usable, [], 'x', 0x1001, 2 ** 40), {
    start: 63 * MiB - 0x2000,
    end: 63 * MiB - 0x2000 + 0x1001,
  });
  assert.equal(placeHighest(mem, usable, [{ start: 40 * MiB, end: 63 * MiB, what: 'k' }], 'x', 0x1000, 2 ** 40), {
    start: 40 * MiB - 0x1000,
    end: 40 * MiB,
  });
  assert.equal(
    placeHighest(mem, usable, [], 'x', 0x1000, 0x800000),
    { start: 0x7ff000, end: 0x800000 },
    'ceiling is exclusive',
  );
  assert.throws(
    () => placeHighest(mem, usable, [], 'the initrd', 70 * MiB, 2 ** 40),
    /the initrd \(0x4600000 bytes\) does not fit in free usable RAM below 0x100000000/,
  );
});

test('placement: RAM that the map promises but guest memory lacks is not usable', () => {
  const mem = new ArrayGuestMemory([{ start: 0, size: 16 * MiB }]);
  const usable = usableRanges(e820FromRam([{ start: 0, size: 64 * MiB }]));
  assert.equal(placeHighest(mem, usable, [], 'x', 0x1000, 2 ** 40), { start: 16 * MiB - 0x1000, end: 16 * MiB });
  assert.throws(
    () => requireUsableRam(mem, usable, 'the kernel', { start: 15 * MiB, end: 17 * MiB }),
    /the kernel \[0xf00000, 0x1100000\) is not \(wholly\) in usable RAM/,
  );
  assert.throws(
    () =>
      requireFree('the kernel', { start: 0x7000, end: 0x9000 }, [
        { start: 0x8000, end: 0x8001, what: 'the zero page' },
      ]),
    /overlaps the zero page \[0x8000, 0x8001\)/,
  );
});

test.run();
