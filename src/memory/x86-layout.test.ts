import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  x86RamLayout,
  X86_PCI_HOLE_START,
  X86_PCI_HOLE_END,
  X86_HIGH_RAM_START,
  X86_PCI_HOLE_SIZE,
} from './x86-layout.js';
import { createGuestRam, parseMemoryOptions } from './config.js';
import { GuestRam } from './guest-ram.js';
import { GuestMemoryError } from './guest-memory.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('x86 layout: the PCI hole is [3 GiB, 4 GiB)', () => {
  assert.is(X86_PCI_HOLE_START, 3 * GiB);
  assert.is(X86_PCI_HOLE_END, 4 * GiB);
  assert.is(X86_PCI_HOLE_SIZE, GiB);
  assert.is(X86_HIGH_RAM_START, 4 * GiB);
});

test('x86 layout: up to 3 GiB of RAM is one region at 0', () => {
  assert.equal(x86RamLayout(512 * MiB), [{ gpa: 0, size: 512 * MiB, offset: 0 }]);
  assert.equal(x86RamLayout(3 * GiB), [{ gpa: 0, size: 3 * GiB, offset: 0 }]);
});

test('x86 layout: RAM beyond 3 GiB continues at 4 GiB, at backend offset 3 GiB', () => {
  assert.equal(x86RamLayout(4 * GiB), [
    { gpa: 0, size: 3 * GiB, offset: 0 },
    { gpa: 4 * GiB, size: GiB, offset: 3 * GiB },
  ]);
  assert.equal(x86RamLayout(3 * GiB + 4096)[1], { gpa: 4 * GiB, size: 4096, offset: 3 * GiB });
});

test('x86 layout: a size that is not a positive integer is refused', () => {
  assert.throws(() => x86RamLayout(0), /not a positive byte count/);
  assert.throws(() => x86RamLayout(1.5), /not a positive byte count/);
});

test('x86 layout: a 4 GiB VM splits at 3 GiB, and guest addresses land at the right backend offsets', () => {
  // memfd RAM is sparse: mapping 4 GiB that is never touched costs nothing.
  const machine = createGuestRam(
    parseMemoryOptions({ object: 'memory-backend-memfd,id=ram,size=4G', machine: 'memory-backend=ram' }),
  );
  const { ram, backend } = machine;
  // A second, flat view of the backend: gpa here = offset into the backend.
  const flat = new GuestRam([{ gpa: 0, size: backend.size, hostAddress: backend.hostAddress }]);
  try {
    assert.equal(
      machine.regions.map((r) => [r.gpa, r.size, r.offset]),
      [
        [0, 3 * GiB, 0],
        [4 * GiB, GiB, 3 * GiB],
      ],
    );
    assert.is(ram.totalSize, 4 * GiB);
    ram.writeU32(3 * GiB - 4, 0x11111111);
    ram.writeU32(4 * GiB, 0x22222222);
    ram.writeU32(5 * GiB - 4, 0x33333333);
    assert.is(flat.readU32(3 * GiB - 4), 0x11111111);
    assert.is(flat.readU32(3 * GiB), 0x22222222, 'gpa 4 GiB is backend offset 3 GiB');
    assert.is(flat.readU32(4 * GiB - 4), 0x33333333);
    assert.is(ram.hostAddressOf(4 * GiB, 8), backend.hostAddress + BigInt(3 * GiB));
    assert.throws(
      () => ram.readU32(3 * GiB - 2),
      (e: unknown) => e instanceof GuestMemoryError,
    );
    assert.throws(
      () => ram.readU8(3 * GiB),
      (e: unknown) => e instanceof GuestMemoryError,
    );
    assert.throws(
      () => ram.readU8(4 * GiB - 1),
      (e: unknown) => e instanceof GuestMemoryError,
    );
    assert.throws(
      () => ram.readU8(5 * GiB),
      (e: unknown) => e instanceof GuestMemoryError,
    );
    assert.ok(ram.windowCount <= 3, 'only the touched chunks got views');
  } finally {
    flat.release();
    machine.close();
  }
});

test.run();
