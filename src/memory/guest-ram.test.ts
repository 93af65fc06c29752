import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import { GuestRam, DEFAULT_CHUNK_SIZE, type RamRegion } from './guest-ram.js';
import { GuestMemoryError } from './guest-memory.js';
import { createAnonBackend } from './anon-backend.js';
import { createMemfdBackend } from './memfd-backend.js';
import type { RamBackend } from './backend.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** A backend plus a GuestRam over it; `done()` releases the views, then unmaps. */
function withRam(
  size: number,
  layout: (host: bigint) => RamRegion[],
  options?: ConstructorParameters<typeof GuestRam>[1],
) {
  const backend: RamBackend = createAnonBackend({ size });
  const ram = new GuestRam(layout(backend.hostAddress), options);
  return {
    backend,
    ram,
    done: () => {
      ram.release();
      backend.close();
    },
  };
}
const flat =
  (size: number) =>
  (host: bigint): RamRegion[] => [{ gpa: 0, size, hostAddress: host }];

function throwsGuestMemoryError(fn: () => unknown, pattern?: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, GuestMemoryError, String(e));
    if (pattern) assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable('expected a GuestMemoryError');
}

test('guest-ram: u8/u16/u32/u64 round-trip, little endian', () => {
  const { ram, done } = withRam(2 * MiB, flat(2 * MiB));
  try {
    ram.writeU32(0x100, 0x11223344);
    assert.is(ram.readU32(0x100), 0x11223344);
    assert.equal([...ram.read(0x100, 4)], [0x44, 0x33, 0x22, 0x11]);
    assert.is(ram.readU16(0x101), 0x2233);
    assert.is(ram.readU8(0x103), 0x11);
    ram.writeU64(0x200, 0x8877665544332211n);
    assert.is(ram.readU64(0x200), 0x8877665544332211n);
    assert.is(ram.readU32(0x204), 0x88776655);
    ram.writeU16(0x300, 0xbeef);
    assert.is(ram.readU16(0x300), 0xbeef);
    ram.writeU8(0x1fffff, 0xab);
    assert.is(ram.readU8(0x1fffff), 0xab);
  } finally {
    done();
  }
});

test('guest-ram: writes keep only the low bits of the value, as a store of that width does', () => {
  const { ram, done } = withRam(2 * MiB, flat(2 * MiB));
  try {
    ram.writeU8(0, 0x1ff);
    assert.is(ram.readU8(0), 0xff);
    ram.writeU16(2, 0x12345);
    assert.is(ram.readU16(2), 0x2345);
    ram.writeU32(4, -1);
    assert.is(ram.readU32(4), 0xffffffff);
    ram.writeU64(8, (1n << 64n) + 5n);
    assert.is(ram.readU64(8), 5n);
  } finally {
    done();
  }
});

test('guest-ram: read copies, write and fill store, slice is a live view', () => {
  const { ram, done } = withRam(2 * MiB, flat(2 * MiB));
  try {
    ram.write(0x1000, new Uint8Array([1, 2, 3, 4, 5]));
    const copy = ram.read(0x1000, 5);
    assert.equal([...copy], [1, 2, 3, 4, 5]);
    copy[0] = 99;
    assert.is(ram.readU8(0x1000), 1, 'read() returns a copy');
    const live = ram.slice(0x1000, 5);
    live[0] = 42;
    assert.is(ram.readU8(0x1000), 42, 'slice() aliases guest RAM');
    ram.fill(0x1001, 3, 0x1ee);
    assert.equal([...ram.read(0x1000, 5)], [42, 0xee, 0xee, 0xee, 5]);
    assert.is(ram.read(0x1000, 0).length, 0);
  } finally {
    done();
  }
});

test('guest-ram: addresses and lengths outside RAM, negative, fractional, NaN or overflowing throw GuestMemoryError', () => {
  const { ram, done } = withRam(2 * MiB, flat(2 * MiB));
  try {
    throwsGuestMemoryError(() => ram.readU8(2 * MiB), /not in guest RAM/);
    throwsGuestMemoryError(() => ram.readU32(2 * MiB - 2), /runs past the end of RAM region \[0x0, 0x200000\)/);
    throwsGuestMemoryError(() => ram.readU64(-8), /invalid address/);
    throwsGuestMemoryError(() => ram.readU32(-0.5), /invalid address/);
    throwsGuestMemoryError(() => ram.writeU32(1.5, 0), /invalid address/);
    throwsGuestMemoryError(() => ram.readU8(Number.NaN), /invalid address/);
    throwsGuestMemoryError(() => ram.readU8(Infinity), /invalid address/);
    throwsGuestMemoryError(() => ram.read(0, -1), /invalid length/);
    throwsGuestMemoryError(() => ram.read(0, 2.5), /invalid length/);
    throwsGuestMemoryError(() => ram.slice(0x10, 2 * MiB), /runs past the end/);
    throwsGuestMemoryError(() => ram.fill(0, 2 * MiB + 1, 0), /runs past the end/);
    throwsGuestMemoryError(() => ram.write(2 * MiB - 1, new Uint8Array(2)), /runs past the end/);
    throwsGuestMemoryError(() => ram.read(Number.MAX_SAFE_INTEGER, 8), /overflows/);
    throwsGuestMemoryError(() => ram.readU64(Number.MAX_SAFE_INTEGER - 3));
    throwsGuestMemoryError(() => ram.hostAddressOf(2 * MiB - 1, 2));
    // The same checks hold while a window is cached (the fast path).
    ram.readU8(0);
    throwsGuestMemoryError(() => ram.readU8(-1));
    throwsGuestMemoryError(() => ram.readU8(0.25));
    throwsGuestMemoryError(() => ram.read(1, -1));
    throwsGuestMemoryError(() => ram.fill(1, 0.5, 0));
    throwsGuestMemoryError(() => ram.slice(1, Number.NaN));
    assert.is(ram.contains(0, 2 * MiB), true);
    assert.is(ram.contains(1, 2 * MiB), false);
    assert.is(ram.contains(-1, 1), false);
    assert.is(ram.contains(0.5, 1), false);
  } finally {
    done();
  }
});

test('guest-ram: an access that straddles two regions throws even when both regions exist and touch', () => {
  // Two adjacent regions over one contiguous mapping: the bytes exist, but one access may not span two regions.
  const { ram, done } = withRam(2 * MiB, (host) => [
    { gpa: 0, size: MiB, hostAddress: host },
    { gpa: MiB, size: MiB, hostAddress: host + BigInt(MiB) },
  ]);
  try {
    ram.writeU32(MiB - 4, 7);
    ram.writeU32(MiB, 8);
    throwsGuestMemoryError(() => ram.readU32(MiB - 2), /runs past the end of RAM region \[0x0, 0x100000\)/);
    throwsGuestMemoryError(() => ram.read(MiB - 1, 2));
    assert.is(ram.totalSize, 2 * MiB);
  } finally {
    done();
  }
});

test('guest-ram: the gap between regions (the PCI hole) is not RAM', () => {
  const { ram, done } = withRam(2 * MiB, (host) => [
    { gpa: 0, size: MiB, hostAddress: host },
    { gpa: 4 * GiB, size: MiB, hostAddress: host + BigInt(MiB) },
  ]);
  try {
    ram.writeU32(4 * GiB, 0x12345678);
    assert.is(ram.readU32(4 * GiB), 0x12345678);
    assert.is(ram.hostAddressOf(4 * GiB + 16, 4), ram.regions[1].hostAddress + 16n);
    throwsGuestMemoryError(() => ram.readU8(3 * GiB), /not in guest RAM/);
    throwsGuestMemoryError(() => ram.readU8(MiB), /not in guest RAM/);
  } finally {
    done();
  }
});

test('guest-ram: views are created lazily, one per chunk touched', () => {
  const { ram, done } = withRam(4 * MiB, flat(4 * MiB), { chunkSize: MiB, overlap: 4 * KiB });
  try {
    assert.is(ram.windowCount, 0);
    ram.readU32(10);
    ram.writeU32(MiB - 100, 1);
    assert.is(ram.windowCount, 1);
    ram.readU8(3 * MiB + 5);
    assert.is(ram.windowCount, 2);
    assert.is(ram.viewsCreated.windows, 2);
    assert.is(DEFAULT_CHUNK_SIZE, 64 * MiB);
  } finally {
    done();
  }
});

test('guest-ram: short accesses across a chunk boundary take the overlap; long ones are stitched from several chunks', () => {
  const chunk = 64 * KiB;
  const { ram, done } = withRam(2 * MiB, flat(2 * MiB), { chunkSize: chunk, overlap: 16 });
  try {
    // A u64 crossing the boundary between chunks 0 and 1.
    ram.writeU64(chunk - 3, 0x0102030405060708n);
    assert.is(ram.readU64(chunk - 3), 0x0102030405060708n);
    assert.is(ram.readU8(chunk), 0x05, 'the bytes past the boundary are where chunk 1 sees them');

    // A 200 KiB pattern over chunks 1..4, written in one call and read back in one call.
    const start = chunk + 1000;
    const pattern = new Uint8Array(200 * KiB).map((_, i) => (i * 7 + 3) & 0xff);
    ram.write(start, pattern);
    assert.equal(ram.read(start, pattern.length), pattern);
    for (const i of [0, chunk - 1000 - 1, chunk - 1000, 3 * chunk, pattern.length - 1]) {
      assert.is(ram.readU8(start + i), pattern[i], `byte ${i}`);
    }

    ram.fill(start + 10, 150 * KiB, 0x5a);
    const filled = ram.read(start + 10, 150 * KiB);
    assert.ok(filled.every((b) => b === 0x5a));
    assert.is(ram.readU8(start + 9), pattern[9]);
    assert.is(ram.readU8(start + 10 + 150 * KiB), pattern[10 + 150 * KiB]);

    // A slice longer than the overlap across a boundary is a one-off view of exactly that range.
    const before = ram.viewsCreated.oneOff;
    const s = ram.slice(2 * chunk - 50, 100);
    assert.is(ram.viewsCreated.oneOff, before + 1);
    assert.is(s.length, 100);
    s[99] = 0x77;
    assert.is(ram.readU8(2 * chunk + 49), 0x77);
  } finally {
    done();
  }
});

test('guest-ram: release() drops every view and later accesses throw instead of touching memory', () => {
  const { backend, ram } = withRam(2 * MiB, flat(2 * MiB));
  ram.writeU32(0, 1);
  ram.release();
  assert.is(ram.windowCount, 0);
  assert.is(ram.isReleased, true);
  throwsGuestMemoryError(() => ram.readU32(0), /released/);
  throwsGuestMemoryError(() => ram.writeU8(100, 1), /released/);
  throwsGuestMemoryError(() => ram.read(0, 16), /released/);
  throwsGuestMemoryError(() => ram.slice(0, 16), /released/);
  assert.is(ram.hostAddressOf(0x10, 4), backend.hostAddress + 0x10n, 'addresses stay known: they touch nothing');
  backend.close();
  throwsGuestMemoryError(() => ram.readU32(0), /released/);
});

test('guest-ram: regions that overlap, or are not integers, are refused', () => {
  assert.throws(
    () =>
      new GuestRam([
        { gpa: 0, size: MiB, hostAddress: 0x1000n },
        { gpa: MiB - 4096, size: MiB, hostAddress: 0x2000n },
      ]),
    /overlaps/,
  );
  assert.throws(() => new GuestRam([{ gpa: 0.5, size: MiB, hostAddress: 0x1000n }]), /gpa/);
  assert.throws(() => new GuestRam([{ gpa: 0, size: 0, hostAddress: 0x1000n }]), /size/);
  assert.throws(() => new GuestRam([{ gpa: 0, size: MiB, hostAddress: 0n }]), /hostAddress/);
  assert.throws(() => new GuestRam([], { overlap: 4 }), /overlap/);
});

test('guest-ram: a worker thread builds its own GuestRam from the same plain regions and shares the RAM', async () => {
  const backend = createMemfdBackend({ size: 4 * MiB });
  const ram = new GuestRam([{ gpa: 0, size: 4 * MiB, hostAddress: backend.hostAddress }]);
  try {
    ram.writeU32(0x100, 0xfeedface);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.url).then(({ GuestRam }) => {
        const ram = new GuestRam(workerData.regions);
        const seen = ram.readU32(0x100);
        ram.writeU32(0x3ffffc, 0xc0ffee);
        ram.release();
        parentPort.postMessage(seen);
      });`;
    const worker = new Worker(code, {
      eval: true,
      workerData: { url: new URL('./guest-ram.js', import.meta.url).href, regions: ram.regions },
    });
    const seen = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.is(seen, 0xfeedface);
    assert.is(ram.readU32(0x3ffffc), 0xc0ffee);
  } finally {
    ram.release();
    backend.close();
  }
});

test.run();
