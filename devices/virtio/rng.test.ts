import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VirtioRng, RNG_REQUEST_MAX } from './rng.js';
import { VIRTIO_ID_RNG } from './types.js';
import { FakeTransport } from './testing/transport.js';

test('virtio-rng: fills every writable buffer of a request with host randomness and reports the length', () => {
  const t = new FakeTransport(new VirtioRng()).start();
  const q = t.drivers[0];
  const added = q.add([
    { length: 100, write: true },
    { length: 4000, write: true },
  ]);
  t.kick(0);
  assert.equal(q.takeUsed(), [{ id: added.head, len: 4100 }]);
  const a = t.memory.read(added.buffers[0].gpa, 100);
  const b = t.memory.read(added.buffers[1].gpa, 4000);
  assert.ok(a.some((x) => x !== 0) && b.some((x) => x !== 0), 'bytes were written');
  // 4000 random bytes: every byte value appears with overwhelming probability, far from a constant fill.
  assert.ok(new Set(b).size > 200, 'looks random');
  assert.equal(t.takeInterrupts(), [0]);
});

test('virtio-rng: a request larger than the bound gets only the bound', () => {
  const t = new FakeTransport(new VirtioRng({ requestMax: 1000 })).start();
  const q = t.drivers[0];
  const added = q.add([
    { length: 600, write: true },
    { length: 600, write: true },
  ]);
  t.memory.fill(added.buffers[1].gpa, 600, 0);
  t.kick(0);
  assert.equal(
    q.takeUsed().map((e) => e.len),
    [1000],
  );
  assert.ok(
    t.memory.read(added.buffers[1].gpa + 400, 200).every((x) => x === 0),
    'nothing past the bound',
  );
  assert.is(RNG_REQUEST_MAX, 65536);
});

test('virtio-rng: uses the injected source; readable buffers are ignored; several requests, one interrupt', () => {
  let calls = 0;
  const rng = new VirtioRng({
    fill: (into) => {
      calls++;
      into.fill(0x5a);
    },
  });
  assert.is(rng.deviceType, VIRTIO_ID_RNG);
  assert.is(rng.configSize, 0);
  const t = new FakeTransport(rng).start();
  const q = t.drivers[0];
  const one = q.add([{ data: new Uint8Array([1, 2, 3]) }, { length: 8, write: true }]);
  q.add([{ length: 0, write: true }]);
  q.add([{ length: 16, write: true }]);
  t.kick(0);
  assert.equal(
    q.takeUsed().map((e) => e.len),
    [8, 0, 16],
  );
  assert.equal([...t.memory.read(one.buffers[1].gpa, 8)], Array(8).fill(0x5a));
  assert.equal([...t.memory.read(one.buffers[0].gpa, 3)], [1, 2, 3]);
  assert.is(calls, 2);
  assert.equal(t.takeInterrupts(), [0]);
});

test('virtio-rng: a malformed chain fails the device instead of throwing', () => {
  const t = new FakeTransport(new VirtioRng()).start();
  t.drivers[0].pushHead(999);
  t.kick(0);
  assert.is(t.failures.length, 1);
  assert.match(t.failures[0], /beyond the queue size/);
});

test.run();
