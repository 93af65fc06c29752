import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, recordBytes } from '../../cpr/vmstate/vmstate.js';
import {
  SplitQueue,
  VirtqueueError,
  resetVirtqueueState,
  virtqueueStateDescriptor,
  vringNeedEvent,
  serveQueue,
  SERVE_MAX_CHAINS,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  MAX_INDIRECT_DESCRIPTORS,
  type VirtqueueState,
} from './queue.js';
import {
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_RING_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  type VirtioBackend,
} from './types.js';
import { CheckedMemory } from './testing/checked-memory.js';
import { DriverQueue, GuestAllocator } from './testing/driver.js';
import { FakeTransport } from './testing/transport.js';

const INDIRECT = 1n << VIRTIO_F_RING_INDIRECT_DESC;
const EVENT_IDX = 1n << VIRTIO_F_RING_EVENT_IDX;
const ALL = (1n << VIRTIO_F_VERSION_1) | INDIRECT | EVENT_IDX;

function setup(options: { size?: number; features?: bigint; ram?: number | { start: number; size: number }[] } = {}) {
  const memory = new CheckedMemory(options.ram ?? 1 << 20);
  const alloc = new GuestAllocator(
    0x1000,
    typeof options.ram === 'number' || options.ram === undefined ? (options.ram ?? 1 << 20) : options.ram[0].size,
  );
  const state = newRecord(virtqueueStateDescriptor);
  const size = options.size ?? 16;
  resetVirtqueueState(state, size);
  const driver = new DriverQueue(memory, alloc, size);
  driver.configure(state);
  const queue = new SplitQueue(memory, state, options.features ?? ALL, 3, 'test-queue');
  return { memory, alloc, state, driver, queue };
}

const bytes = (...v: number[]) => Uint8Array.from(v);

function throwsVirtqueue(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, VirtqueueError);
    assert.match((e as Error).message, /^test-queue: /);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a VirtqueueError matching ${pattern}`);
}

test('virtqueue: an empty or disabled queue pops nothing', () => {
  const { queue, state } = setup();
  assert.is(queue.pop(), null);
  state.ready = false;
  assert.is(queue.pop(), null);
  assert.is(queue.size, 0);
});

test('virtqueue: a direct chain reports readable then writable buffers and their totals', () => {
  const { queue, driver } = setup();
  const added = driver.add([
    { data: bytes(1, 2, 3) },
    { data: bytes(4, 5) },
    { length: 10, write: true },
    { length: 6, write: true },
  ]);
  const chain = queue.pop()!;
  assert.is(chain.head, added.head);
  assert.equal(chain.readable, added.buffers.slice(0, 2));
  assert.equal(chain.writable, added.buffers.slice(2));
  assert.is(chain.readableBytes, 5);
  assert.is(chain.writableBytes, 16);
  assert.equal([...queue.readFrom(chain, 0, 100)], [1, 2, 3, 4, 5]);
  assert.equal([...queue.readFrom(chain, 2, 2)], [3, 4]);
  assert.is(queue.pop(), null);
});

test('virtqueue: push writes the used element before the index; the driver sees head and length', () => {
  const { queue, driver, state } = setup();
  driver.add([{ length: 4, write: true }]);
  const second = driver.add([{ length: 8, write: true }]);
  queue.pop();
  const chain = queue.pop()!;
  queue.push(chain, 5);
  assert.equal(driver.takeUsed(), [{ id: second.head, len: 5 }]);
  assert.is(state.usedIdx, 1);
  assert.is(driver.usedIdx(), 1);
});

test('virtqueue: push clamps the used length to the writable bytes', () => {
  const { queue, driver } = setup();
  driver.add([{ length: 4, write: true }]);
  queue.push(queue.pop()!, 1000);
  assert.equal(
    driver.takeUsed().map((e) => e.len),
    [4],
  );
});

test('virtqueue: writeTo spreads bytes over writable buffers from an offset and reports what fit', () => {
  const { queue, driver, memory } = setup();
  const { buffers } = driver.add([{ data: bytes(9) }, { length: 3, write: true }, { length: 4, write: true }]);
  const chain = queue.pop()!;
  assert.is(queue.writeTo(chain, 1, bytes(10, 11, 12, 13, 14, 15, 16, 17)), 6);
  assert.equal([...memory.read(buffers[1].gpa, 3)], [0, 10, 11]);
  assert.equal([...memory.read(buffers[2].gpa, 4)], [12, 13, 14, 15]);
});

test('virtqueue: an indirect table is followed; the referring descriptor counts as no buffer', () => {
  const { queue, driver } = setup();
  const added = driver.add([{ data: bytes(1, 2) }, { length: 8, write: true }, { length: 8, write: true }], {
    indirect: true,
  });
  const chain = queue.pop()!;
  assert.is(chain.head, added.head);
  assert.equal(chain.readable, [added.buffers[0]]);
  assert.equal(chain.writable, added.buffers.slice(1));
  assert.is(chain.writableBytes, 16);
});

test('virtqueue: direct descriptors followed by one indirect descriptor form one chain (2.7.5.3.2)', () => {
  const { queue, driver, alloc, memory } = setup();
  const table = alloc.alloc(32, 16);
  const a = alloc.alloc(4),
    b = alloc.alloc(4),
    c = alloc.alloc(4);
  memory.write(a, bytes(1, 1, 1, 1));
  driver.writeDesc(driver.desc, 0, a, 4, VIRTQ_DESC_F_NEXT, 5);
  driver.writeDesc(driver.desc, 5, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0); // WRITE is ignored here
  driver.writeDesc(table, 0, b, 4, VIRTQ_DESC_F_NEXT, 1);
  driver.writeDesc(table, 1, c, 4, VIRTQ_DESC_F_WRITE, 0);
  driver.pushHead(0);
  const chain = queue.pop()!;
  assert.equal(chain.readable, [
    { gpa: a, length: 4 },
    { gpa: b, length: 4 },
  ]);
  assert.equal(chain.writable, [{ gpa: c, length: 4 }]);
});

test('virtqueue: an indirect descriptor without RING_INDIRECT_DESC negotiated is refused', () => {
  const { queue, driver } = setup({ features: EVENT_IDX });
  driver.add([{ length: 8, write: true }], { indirect: true });
  throwsVirtqueue(() => queue.pop(), /RING_INDIRECT_DESC was not negotiated/);
});

test('virtqueue: nested indirect tables, INDIRECT with NEXT, and bad table lengths are refused', () => {
  {
    const { queue, driver, alloc } = setup();
    const outer = alloc.alloc(16, 16),
      inner = alloc.alloc(16, 16);
    driver.writeDesc(driver.desc, 0, outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
    driver.writeDesc(outer, 0, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /indirect inside an indirect table/);
  }
  {
    const { queue, driver, alloc } = setup();
    driver.writeDesc(driver.desc, 0, alloc.alloc(16, 16), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /both INDIRECT and NEXT/);
  }
  for (const len of [0, 24]) {
    const { queue, driver, alloc } = setup();
    driver.writeDesc(driver.desc, 0, alloc.alloc(32, 16), len, VIRTQ_DESC_F_INDIRECT, 0);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /not a non-zero multiple of 16/);
  }
  {
    const { queue, driver, alloc } = setup({ ram: 4 << 20 });
    const n = MAX_INDIRECT_DESCRIPTORS + 1;
    driver.writeDesc(driver.desc, 0, alloc.alloc(16 * n, 16), 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /exceeds 1024/);
  }
});

test('virtqueue: a loop in the descriptor table or in an indirect table is detected', () => {
  {
    const { queue, driver, alloc } = setup({ size: 8 });
    const buf = alloc.alloc(4);
    driver.writeDesc(driver.desc, 0, buf, 4, VIRTQ_DESC_F_NEXT, 1);
    driver.writeDesc(driver.desc, 1, buf, 4, VIRTQ_DESC_F_NEXT, 0);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /longer than the queue size 8/);
  }
  {
    const { queue, driver, alloc } = setup({ size: 8 });
    const table = alloc.alloc(32, 16),
      buf = alloc.alloc(4);
    driver.writeDesc(driver.desc, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    driver.writeDesc(table, 0, buf, 4, VIRTQ_DESC_F_NEXT, 1);
    driver.writeDesc(table, 1, buf, 4, VIRTQ_DESC_F_NEXT, 0);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /indirect table of 2 descriptors .* loops/);
  }
});

test('virtqueue: head and next indices beyond the table are refused', () => {
  {
    const { queue, driver } = setup({ size: 8 });
    driver.pushHead(8);
    throwsVirtqueue(() => queue.pop(), /names descriptor 8, beyond the queue size 8/);
  }
  {
    const { queue, driver, alloc } = setup({ size: 8 });
    driver.writeDesc(driver.desc, 0, alloc.alloc(4), 4, VIRTQ_DESC_F_NEXT, 200);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /next 200 is beyond the queue size 8/);
  }
  {
    const { queue, driver, alloc } = setup({ size: 8 });
    const table = alloc.alloc(16, 16);
    driver.writeDesc(driver.desc, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    driver.writeDesc(table, 0, alloc.alloc(4), 4, VIRTQ_DESC_F_NEXT, 1);
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /next 1 is beyond the indirect table size 1/);
  }
});

test('virtqueue: buffers outside RAM, across a region boundary or at 64-bit addresses are refused without access', () => {
  for (const [addr, len] of [
    [(1 << 20) - 2, 4],
    [2 ** 40, 1],
    [2 ** 64 - 4096, 16],
  ]) {
    const { queue, driver, memory } = setup();
    driver.writeDesc(driver.desc, 0, 0, len, 0, 0);
    memory.writeU64(driver.desc, BigInt(addr)); // exact 64-bit value
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /not in guest RAM/);
    assert.equal(memory.violations, []);
  }
  {
    const { queue, driver, memory } = setup({
      ram: [
        { start: 0, size: 1 << 20 },
        { start: 1 << 20, size: 1 << 20 },
      ],
    });
    driver.writeDesc(driver.desc, 0, (1 << 20) - 8, 16, 0, 0); // both bytes are RAM, but two regions
    driver.pushHead(0);
    throwsVirtqueue(() => queue.pop(), /not in guest RAM/);
    assert.equal(memory.violations, []);
  }
});

test('virtqueue: a zero-length descriptor is dropped without looking at its address', () => {
  const { queue, driver, alloc } = setup();
  const buf = alloc.alloc(4);
  driver.writeDesc(driver.desc, 0, 0xdead_0000_0000, 0, VIRTQ_DESC_F_NEXT, 1);
  driver.writeDesc(driver.desc, 1, buf, 4, VIRTQ_DESC_F_WRITE, 0);
  driver.pushHead(0);
  const chain = queue.pop()!;
  assert.equal(chain.readable, []);
  assert.equal(chain.writable, [{ gpa: buf, length: 4 }]);
});

test('virtqueue: a device-readable buffer after a device-writable one is refused', () => {
  const { queue, driver } = setup();
  driver.add([{ length: 4, write: true }, { data: bytes(1) }]);
  throwsVirtqueue(() => queue.pop(), /device-readable but follows a device-writable/);
});

test('virtqueue: an available index more than the queue size ahead is refused', () => {
  const { queue, driver } = setup({ size: 8 });
  driver.setAvailIdx(9);
  throwsVirtqueue(() => queue.pop(), /available index 9 is 9 entries ahead of the 0 consumed \(queue size 8\)/);
});

test('virtqueue: a chain of more than 2^32 bytes is refused', () => {
  const { driver, state, memory } = setup({ size: 4 });
  // Two 4 GiB buffers cannot fit the test RAM: a view of it that claims every range is RAM lets the walk reach
  // the byte-count check (no buffer is ever accessed).
  const huge = Object.assign(Object.create(memory), { contains: () => true }) as CheckedMemory;
  const queue = new SplitQueue(huge, state, ALL, 3, 'test-queue');
  driver.writeDesc(driver.desc, 0, 0x1000_0000, 0xffff_f000, VIRTQ_DESC_F_NEXT, 1);
  driver.writeDesc(driver.desc, 1, 0x2_0000_0000, 0xffff_f000, 0, 0);
  driver.pushHead(0);
  throwsVirtqueue(() => queue.pop(), /longer than 2\^32 bytes/);
});

test('virtqueue: ring areas must be aligned, inside RAM, and the size a power of two', () => {
  const memory = new CheckedMemory(1 << 16);
  const cases: [Partial<Record<'size' | 'desc' | 'avail' | 'used', number>>, RegExp][] = [
    [{ size: 12 }, /queue size 12 is not a power of two/],
    [{ size: 0 }, /queue size 0/],
    [{ desc: 0x1008 }, /descriptor table at 0x1008 is not 16-byte aligned/],
    [{ avail: 0x2001 }, /available ring at 0x2001 is not 2-byte aligned/],
    [{ used: 0x3002 }, /used ring at 0x3002 is not 4-byte aligned/],
    [{ used: 0xfff0 }, /used ring 0xfff0\+0x86 is not in guest RAM/],
    [{ desc: 2 ** 60 }, /descriptor table at 0x1000000000000000 is not in guest RAM/],
  ];
  for (const [change, pattern] of cases) {
    const state = newRecord(virtqueueStateDescriptor);
    state.size = change.size ?? 16;
    state.descAddr = BigInt(change.desc ?? 0x1000);
    state.availAddr = BigInt(change.avail ?? 0x2000);
    state.usedAddr = BigInt(change.used ?? 0x3000);
    state.ready = true;
    throwsVirtqueue(() => new SplitQueue(memory, state, ALL, 0, 'test-queue'), pattern);
  }
  assert.equal(memory.violations, []);
});

test('virtqueue: 16-bit indices wrap around', () => {
  const { queue, driver, state } = setup({ size: 4 });
  state.lastAvailIdx = 65534;
  state.usedIdx = 65534;
  driver.memory.writeU16(driver.used + 2, 65534);
  (driver as any).lastUsed = 65534;
  driver.setAvailIdx(65534);
  for (let i = 0; i < 6; i++) {
    const { head } = driver.add([{ length: 2, write: true }]);
    const chain = queue.pop()!;
    assert.is(chain.head, head);
    queue.push(chain, 1);
    assert.equal(driver.takeUsed(), [{ id: head, len: 1 }]);
  }
  assert.is(state.lastAvailIdx, 4);
  assert.is(state.usedIdx, 4);
});

test('virtqueue: rewind gives popped chains back to be popped again', () => {
  const { queue, driver } = setup();
  const a = driver.add([{ length: 2, write: true }]);
  const b = driver.add([{ length: 2, write: true }]);
  assert.is(queue.pop()!.head, a.head);
  assert.is(queue.pop()!.head, b.head);
  queue.rewind(2);
  assert.is(queue.pop()!.head, a.head);
  assert.throws(() => queue.rewind(100), RangeError);
});

test('virtqueue: the position lives in the record — another instance over it continues (other thread, restore)', () => {
  const { queue, driver, state, memory } = setup();
  const a = driver.add([{ length: 2, write: true }]);
  const b = driver.add([{ length: 2, write: true }]);
  queue.push(queue.pop()!, 1);
  const copy = newRecord(virtqueueStateDescriptor);
  recordBytes(copy).set(recordBytes(state));
  const other = new SplitQueue(memory, copy as VirtqueueState, ALL, 3);
  const chain = other.pop()!;
  assert.is(chain.head, b.head);
  other.push(chain, 2);
  assert.equal(driver.takeUsed(), [
    { id: a.head, len: 1 },
    { id: b.head, len: 2 },
  ]);
});

test('virtqueue: a queue reconfigured in the record is re-validated before use', () => {
  const { queue, state } = setup();
  state.descAddr = 0x10_0000_0000n;
  assert.throws(() => queue.pop(), /descriptor table 0x1000000000\+0x100 is not in guest RAM/);
});

test('virtqueue: without EVENT_IDX, NO_INTERRUPT suppresses interrupts; nothing pushed means none', () => {
  const { queue, driver } = setup({ features: INDIRECT });
  driver.add([{ length: 2, write: true }]);
  driver.add([{ length: 2, write: true }]);
  queue.push(queue.pop()!, 0);
  assert.ok(queue.needsInterrupt());
  assert.not.ok(queue.needsInterrupt(), 'nothing new was used');
  driver.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
  queue.push(queue.pop()!, 0);
  assert.not.ok(queue.needsInterrupt());
});

test('virtqueue: vring_need_event matches the kernel helper', () => {
  // (u16)(new - event - 1) < (u16)(new - old)
  assert.ok(vringNeedEvent(0, 1, 0));
  assert.not.ok(vringNeedEvent(1, 1, 0));
  assert.ok(vringNeedEvent(4, 6, 3));
  assert.not.ok(vringNeedEvent(6, 6, 3));
  assert.ok(vringNeedEvent(65535, 1, 65534));
  assert.not.ok(vringNeedEvent(5, 5, 5));
});

test('virtqueue: with EVENT_IDX, interrupts follow used_event and avail.flags is ignored', () => {
  const { queue, driver } = setup();
  for (let i = 0; i < 6; i++) driver.add([{ length: 2, write: true }]);
  driver.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT); // must be ignored with EVENT_IDX
  driver.setUsedEvent(0);
  queue.push(queue.pop()!, 0); // used idx 0 → 1: crosses used_event 0
  assert.ok(queue.needsInterrupt(), 'first push always interrupts');
  driver.setUsedEvent(3);
  queue.push(queue.pop()!, 0); // 1 → 2
  assert.not.ok(queue.needsInterrupt());
  queue.push(queue.pop()!, 0); // 2 → 3
  assert.not.ok(queue.needsInterrupt());
  queue.push(queue.pop()!, 0); // 3 → 4: the entry at index 3 was written
  assert.ok(queue.needsInterrupt());
  queue.push(queue.pop()!, 0);
  queue.push(queue.pop()!, 0); // 4 → 6 in one batch, used_event 3 already passed
  assert.not.ok(queue.needsInterrupt());
});

test('virtqueue: with EVENT_IDX, avail_event tracks what the device consumed (pop and empty pop re-arm)', () => {
  const { queue, driver } = setup();
  driver.add([{ length: 2, write: true }]);
  driver.add([{ length: 2, write: true }]);
  queue.pop();
  assert.is(driver.availEvent(), 1);
  queue.pop();
  assert.is(driver.availEvent(), 2);
  assert.is(queue.pop(), null);
  assert.is(driver.availEvent(), 2);
});

test('virtqueue: without EVENT_IDX, avail_event is never written', () => {
  const { queue, driver } = setup({ features: 0n });
  driver.memory.writeU16(driver.used + 4 + 8 * driver.size, 0x5555);
  driver.add([{ length: 2, write: true }]);
  queue.pop();
  assert.is(queue.pop(), null);
  assert.is(driver.availEvent(), 0x5555);
});

test('virtqueue: serveQueue serves every chain, interrupts once, and turns a malformed chain into context.fail', () => {
  const backend: VirtioBackend = {
    deviceType: 99,
    queueMaxSizes: [8],
    deviceFeatures: 0n,
    configSize: 0,
    readConfig: () => 0,
    writeConfig: () => {},
    activate: () => {},
    reset: () => {},
    notify: () => {},
  };
  const t = new FakeTransport(backend);
  const d = t.drivers[0];
  d.add([{ length: 4, write: true }]);
  d.add([{ length: 4, write: true }]);
  assert.ok(serveQueue(t, 0, (chain) => chain.writableBytes));
  assert.equal(
    d.takeUsed().map((e) => e.len),
    [4, 4],
  );
  assert.equal(t.takeInterrupts(), [0]);
  d.pushHead(200);
  assert.not.ok(serveQueue(t, 0, () => 0));
  assert.is(t.failures.length, 1);
  assert.match(t.failures[0], /virtqueue 0: available ring entry names descriptor 200/);
  assert.equal(t.takeInterrupts(), []);
});

test('virtqueue: serveQueue stops after SERVE_MAX_CHAINS, or at once when a park is asked, and asks to be served again', () => {
  const backend: VirtioBackend = {
    deviceType: 99,
    queueMaxSizes: [64],
    deviceFeatures: 0n,
    configSize: 0,
    readConfig: () => 0,
    writeConfig: () => {},
    activate: () => {},
    reset: () => {},
    notify: () => {},
  };
  const t = new FakeTransport(backend);
  const d = t.drivers[0];
  for (let i = 0; i < SERVE_MAX_CHAINS + 3; i++) d.add([{ length: 4, write: true }]);
  assert.ok(serveQueue(t, 0, () => 4));
  assert.is(d.takeUsed().length, SERVE_MAX_CHAINS);
  assert.equal(t.servedLater.splice(0), [0]);
  assert.equal(t.takeInterrupts(), [0], 'what was done is announced');
  t.parkWanted = () => true;
  assert.ok(serveQueue(t, 0, () => 4));
  assert.equal(d.takeUsed(), [], 'nothing is started once the thread must park');
  assert.equal(t.servedLater.splice(0), [0]);
  t.parkWanted = () => false;
  assert.ok(serveQueue(t, 0, () => 4));
  assert.is(d.takeUsed().length, 3);
  assert.equal(t.servedLater, [], 'the queue is empty: nothing left for later');
});

test('virtqueue: the state descriptor has the fields a checkpoint needs', () => {
  const names = virtqueueStateDescriptor.fields.map((f) => f.name);
  for (const n of [
    'descAddr',
    'availAddr',
    'usedAddr',
    'size',
    'ready',
    'lastAvailIdx',
    'usedIdx',
    'signalledUsed',
    'signalledUsedValid',
  ]) {
    assert.ok(names.includes(n as any), n);
  }
  const s = newRecord(virtqueueStateDescriptor);
  s.usedIdx = 9;
  s.ready = true;
  resetVirtqueueState(s, 256);
  assert.is(s.size, 256);
  assert.is(s.usedIdx, 0);
  assert.is(s.ready, false);
});

test.run();
