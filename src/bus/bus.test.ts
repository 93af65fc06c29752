import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PioBus, MmioBus, pioWindow, mmioWindow, BusConflictError } from './bus.js';
import type { AccessSize, IoHandler } from './types.js';

/** A device that records every access and answers reads with offset-derived bytes. */
function recorder() {
  const log: string[] = [];
  const handler: IoHandler = {
    read(offset: number, size: AccessSize) {
      log.push(`r${offset}/${size}`);
      return 0x11223344 + offset;
    },
    write(offset: number, size: AccessSize, value: number) {
      log.push(`w${offset}/${size}=${value.toString(16)}`);
    },
  };
  return { log, handler };
}

test('pio bus: an access inside a window reaches its handler with the window-relative offset', () => {
  const bus = new PioBus();
  const dev = recorder();
  bus.add(pioWindow('uart', 0x3f8, 8, dev.handler));
  bus.write(0x3fb, 1, 0x83);
  assert.is(bus.read(0x3fd, 1), (0x11223344 + 5) & 0xff);
  assert.equal(dev.log, ['w3/1=83', 'r5/1']);
});

test('pio bus: unclaimed ports read as all-ones and swallow writes', () => {
  const bus = new PioBus();
  assert.is(bus.read(0x80, 1), 0xff);
  assert.is(bus.read(0x80, 2), 0xffff);
  assert.is(bus.read(0x80, 4), 0xffffffff);
  bus.write(0x80, 1, 1);
});

test('pio bus: an access running past a window splits into byte accesses', () => {
  const bus = new PioBus();
  const dev = recorder();
  bus.add(pioWindow('dev', 0x10, 2, dev.handler));
  const v = bus.read(0x11, 2);
  assert.equal(dev.log, ['r1/1']);
  assert.is(v, (0x11223345 & 0xff) | (0xff << 8));
});

test('pio bus: overlapping windows are refused with both names', () => {
  const bus = new PioBus();
  bus.add(pioWindow('a', 0x60, 1, recorder().handler));
  assert.throws(
    () => bus.add(pioWindow('b', 0x5f, 4, recorder().handler)),
    (e: Error) => e instanceof BusConflictError && /b .* overlaps a/.test(e.message),
  );
});

test('pio bus: windows outside the 64 KiB port space are refused', () => {
  assert.throws(() => new PioBus().add(pioWindow('x', 0xfffe, 4, recorder().handler)), /outside the I\/O space/);
});

test('mmio bus: finds windows by binary search and splits 8-byte accesses', () => {
  const bus = new MmioBus();
  const a = recorder();
  const b = recorder();
  bus.add(mmioWindow('a', 0xfec00000, 0x1000, a.handler));
  bus.add(mmioWindow('b', 0xd0000000, 0x100, b.handler));
  bus.write(0xd0000008, 8, 0x1_0000_0002n);
  assert.equal(b.log, ['w8/4=2', 'w12/4=1']);
  assert.is(bus.read(0xfec00010, 4), 0x11223344 + 0x10);
  assert.is(bus.read(0xe0000000, 4), 0xffffffff);
  assert.is(bus.find(0xd0000100), undefined);
});

test.run();
