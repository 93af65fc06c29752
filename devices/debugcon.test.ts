import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord } from '../cpr/vmstate/vmstate.js';
import type { CharOut, HostClock } from '../src/bus/types.js';
import { Debugcon, debugconState, DEBUGCON_IOBASE } from './debugcon.js';

class FakeOut implements CharOut {
  chunks: Uint8Array[] = [];
  write(bytes: Uint8Array): void {
    this.chunks.push(bytes.slice());
  }
  get text(): string {
    return this.chunks.map((c) => Buffer.from(c).toString('latin1')).join('');
  }
}

class FakeClock implements HostClock {
  real = 1_764_000_000_123_456_789n;
  realtimeNs(): bigint {
    return this.real;
  }
  monotonicNs(): bigint {
    return 0n;
  }
}

function setup(options: { timestamps?: boolean; readback?: number } = {}) {
  const state = newRecord(debugconState);
  const out = new FakeOut();
  const clock = new FakeClock();
  const dev = new Debugcon(state, { out, clock, ...options });
  dev.reset();
  return { state, out, clock, dev };
}

test('debugcon: QEMU defaults are port 0xe9 with readback 0xe9', () => {
  const { dev } = setup();
  assert.is(DEBUGCON_IOBASE, 0xe9);
  assert.is(dev.read(0, 1), 0xe9);
  assert.is(dev.read(0, 2), 0xe9e9);
  assert.is(dev.read(0, 4), 0xe9e9e9e9);
});

test('debugcon: the readback value is configurable', () => {
  assert.is(setup({ readback: 0x42 }).dev.read(0, 1), 0x42);
});

test('debugcon: every byte written goes to the CharOut, one write per access', () => {
  const { dev, out, state } = setup();
  for (const c of Buffer.from('ok\n')) dev.write(0, 1, c);
  dev.write(0, 2, 0x4241); // outw: little-endian bytes "AB"
  dev.write(0, 4, 0x44434241);
  assert.is(out.text, 'ok\nABABCD');
  assert.is(out.chunks.length, 5);
  assert.is(state.bytesWritten, 9);
});

test('debugcon: with timestamps each byte becomes "<realtime ns> <hex>\\n"', () => {
  const { dev, out, clock } = setup({ timestamps: true });
  dev.write(0, 1, 0x4f);
  clock.real += 1500n;
  dev.write(0, 1, 0x0a);
  clock.real += 1n;
  dev.write(0, 2, 0xff00);
  assert.is(
    out.text,
    '1764000000123456789 4f\n' + '1764000000123458289 0a\n' + '1764000000123458290 00\n' + '1764000000123458290 ff\n',
  );
  assert.is(out.chunks.length, 3, 'one write per access');
});

test('debugcon: timestamps without a clock are refused', () => {
  const state = newRecord(debugconState);
  assert.throws(() => new Debugcon(state, { out: new FakeOut(), timestamps: true }), /clock/);
});

test.run();
