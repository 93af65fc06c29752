import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  FACS_LENGTH,
  FACS_OFF_FIRMWARE_WAKING_VECTOR,
  FACS_OFF_OSPM_FLAGS,
  FACS_OFF_X_FIRMWARE_WAKING_VECTOR,
  FACS_OSPM_64BIT_WAKE,
  buildFacs,
  readWakingVector,
} from './facs.js';
import { ArrayGuestMemory } from '../testing/array-memory.js';

const RAM = 1 << 20;
const FACS_AT = 0xf4000;

function guest() {
  const mem = new ArrayGuestMemory([{ start: 0, size: RAM }]);
  mem.write(FACS_AT, buildFacs());
  return mem;
}

test('facs: 64 bytes, signature FACS, version 2, both waking vectors 0, no 64-bit wake offered', () => {
  const f = buildFacs();
  const v = new DataView(f.buffer);
  assert.is(f.length, FACS_LENGTH);
  assert.is(String.fromCharCode(...f.subarray(0, 4)), 'FACS');
  assert.is(v.getUint32(4, true), 64);
  assert.is(v.getUint32(FACS_OFF_FIRMWARE_WAKING_VECTOR, true), 0);
  assert.is(v.getBigUint64(FACS_OFF_X_FIRMWARE_WAKING_VECTOR, true), 0n);
  assert.is(v.getUint32(20, true), 0); // flags: no S4BIOS, no 64BIT_WAKE_SUPPORTED
  assert.is(f[32], 2);
});

test('facs: no waking vector set means none (firmware would boot normally)', () => {
  assert.equal(readWakingVector(guest(), FACS_AT), { kind: 'none' });
});

test('facs: a real-mode vector below 1 MiB resumes at CS = vector >> 4, IP = vector & 0xF', () => {
  const mem = guest();
  mem.writeU32(FACS_AT + FACS_OFF_FIRMWARE_WAKING_VECTOR, 0x9a123);
  assert.equal(readWakingVector(mem, FACS_AT), { kind: 'real', cs: 0x9a12, ip: 0x3, address: 0x9a123 });
  mem.writeU32(FACS_AT + FACS_OFF_FIRMWARE_WAKING_VECTOR, 0x100000);
  assert.is(readWakingVector(mem, FACS_AT).kind, 'invalid');
});

test('facs: X_Firmware_Waking_Vector wins: 32-bit protected mode, or long mode when the OS set 64BIT_WAKE_F', () => {
  const mem = guest();
  mem.writeU32(FACS_AT + FACS_OFF_FIRMWARE_WAKING_VECTOR, 0x9a000);
  mem.writeU64(FACS_AT + FACS_OFF_X_FIRMWARE_WAKING_VECTOR, 0x1234000n);
  assert.equal(readWakingVector(mem, FACS_AT), { kind: 'protected32', address: 0x1234000 });
  mem.writeU32(FACS_AT + FACS_OFF_OSPM_FLAGS, FACS_OSPM_64BIT_WAKE);
  assert.equal(readWakingVector(mem, FACS_AT), { kind: 'long64', address: 0x1234000n });
  mem.writeU32(FACS_AT + FACS_OFF_OSPM_FLAGS, 0);
  mem.writeU64(FACS_AT + FACS_OFF_X_FIRMWARE_WAKING_VECTOR, 0x1_0000_0000n);
  assert.is(readWakingVector(mem, FACS_AT).kind, 'invalid'); // a 32-bit entry point above 4 GiB
});

test('facs: a FACS address outside RAM, straddling its end, or without the signature is reported, never thrown', () => {
  const mem = guest();
  for (const at of [-1, 1.5, RAM, RAM - 32, 2 ** 60]) {
    const r = readWakingVector(mem, at);
    assert.is(r.kind, 'invalid', String(at));
  }
  const r = readWakingVector(mem, 0x1000);
  assert.is(r.kind, 'invalid');
  assert.match((r as { reason: string }).reason, /no FACS/);
  mem.writeU32(FACS_AT + 4, 16); // a guest that shrank the length
  assert.match((readWakingVector(mem, FACS_AT) as { reason: string }).reason, /length 16/);
});

test.run();
