// Fuzzing the split virtqueue with random guest memory: descriptor tables, rings, indices, indirect tables, ring
// addresses and queue sizes that a hostile or buggy driver could produce, in a small guest RAM (two regions with a
// hole between them) whose every access is checked. The rules: the queue throws nothing but VirtqueueError, never
// touches memory outside RAM (CheckedMemory records any attempt, even one the caller caught), every chain it hands
// out lies inside RAM, and every case ends (all loops are bounded by the queue's own validation).
//
// A share of the cases are well-formed, built by the test driver; for those, pop() must return exactly the buffers
// that were added. A fixed number of cases from a fixed seed, so every machine, however slow, runs the same cases
// (~2 s here natively); TSVMM_FUZZ_SEED=<n> runs (or replays) another seed, TSVMM_FUZZ_CASES=<n> changes the
// length, TSVMM_FUZZ_STATS=1 prints how often each kind of refusal was reached.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import {
  SplitQueue,
  VirtqueueError,
  virtqueueStateDescriptor,
  resetVirtqueueState,
  MAX_CHAIN_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  availRingBytes,
  usedRingBytes,
  descTableBytes,
} from './queue.js';
import { VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC } from './types.js';
import { CheckedMemory } from './testing/checked-memory.js';
import { DriverQueue, GuestAllocator } from './testing/driver.js';

const SEED = Number(process.env.TSVMM_FUZZ_SEED ?? 0x5eed_0a11);
const CASES = Number(process.env.TSVMM_FUZZ_CASES ?? 12_000);

// Two RAM regions with a hole between them: buffers may straddle the hole or run off the end.
const LOW = { start: 0, size: 16 << 10 };
const HIGH = { start: 20 << 10, size: 8 << 10 };
const RAM_END = HIGH.start + HIGH.size;

/** xorshift32: small, fast, and reproducible from one 32-bit seed. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  below(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }
}

const INDIRECT = 1n << VIRTIO_F_RING_INDIRECT_DESC;
const EVENT_IDX = 1n << VIRTIO_F_RING_EVENT_IDX;

function fillRandom(memory: CheckedMemory, rng: Rng): void {
  for (const r of [LOW, HIGH]) {
    const bytes = memory.ram.slice(r.start, r.size);
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, r.size / 4);
    for (let i = 0; i < words.length; i++) words[i] = rng.u32();
  }
}

/** An address a driver might write: mostly inside RAM, often near edges, sometimes absurd. */
function someAddress(rng: Rng, align = 1): number {
  const a = rng.pick([
    () => rng.below(LOW.size),
    () => HIGH.start + rng.below(HIGH.size),
    () => LOW.size - rng.below(64), // near the end of the low region
    () => HIGH.start - rng.below(64), // in the hole
    () => RAM_END - rng.below(64),
    () => rng.u32() * 2 ** 20 + rng.u32(), // huge (beyond 2^53 sometimes)
    () => 0,
  ])();
  return Math.floor(a / align) * align;
}

function someLength(rng: Rng): number {
  return rng.pick([
    () => rng.below(64),
    () => rng.below(4096),
    () => 16 * (1 + rng.below(8)), // plausible indirect table
    () => rng.u32(),
    () => 0,
    () => 0xffff_fff0,
  ])();
}

function writeRandomDescriptor(memory: CheckedMemory, table: number, i: number, tableSize: number, rng: Rng): void {
  const at = table + 16 * i;
  if (!memory.contains(at, 16)) return;
  let flags: number, addr: number, len: number;
  if (rng.chance(0.75)) {
    // plausible: a small buffer inside one region, ordinary flags
    flags = rng.pick([
      0,
      VIRTQ_DESC_F_WRITE,
      VIRTQ_DESC_F_NEXT,
      VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
      VIRTQ_DESC_F_INDIRECT,
    ]);
    const region = rng.pick([LOW, HIGH]);
    len = flags & VIRTQ_DESC_F_INDIRECT ? 16 * (1 + rng.below(8)) : 1 + rng.below(256);
    addr = region.start + rng.below(region.size - len);
  } else {
    flags = rng.chance(0.7) ? rng.below(8) : rng.u32() & 0xffff;
    addr = flags & VIRTQ_DESC_F_INDIRECT && rng.chance(0.7) ? someAddress(rng, 16) : someAddress(rng);
    len = someLength(rng);
  }
  memory.writeU64(at, BigInt.asUintN(64, BigInt(addr)));
  memory.writeU32(at + 8, len);
  memory.writeU16(at + 12, flags);
  memory.writeU16(at + 14, rng.chance(0.9) ? rng.below(Math.max(1, tableSize)) : rng.u32() & 0xffff);
}

interface Outcome {
  chains: number;
  errors: number;
  kinds: Map<string, number>;
}

/** A hostile case: random rings and tables. */
function hostileCase(rng: Rng, out: Outcome): CheckedMemory {
  const memory = new CheckedMemory([LOW, HIGH]);
  fillRandom(memory, rng);
  const state = newRecord(virtqueueStateDescriptor);
  const size = rng.chance(0.95) ? 1 << rng.below(8) : rng.pick([0, 3, 12, 100, 65535]);
  resetVirtqueueState(state, size);
  const ringsFit = (d: number, a: number, u: number) =>
    memory.contains(d, descTableBytes(size)) &&
    memory.contains(a, availRingBytes(size)) &&
    memory.contains(u, usedRingBytes(size));
  let desc = someAddress(rng, 16),
    avail = someAddress(rng, 2),
    used = someAddress(rng, 4);
  if (rng.chance(0.85)) {
    // mostly a plausible layout, so the chain walker gets exercised
    for (let tries = 0; tries < 8 && !ringsFit(desc, avail, used); tries++) {
      desc = rng.below(LOW.size) & ~15;
      avail = rng.below(LOW.size) & ~1;
      used = HIGH.start + (rng.below(HIGH.size) & ~3);
    }
  }
  if (rng.chance(0.05)) desc += 8; // misaligned
  state.descAddr = BigInt(desc);
  state.availAddr = BigInt(avail);
  state.usedAddr = BigInt(used);
  state.ready = !rng.chance(0.03);
  state.lastAvailIdx = rng.u32() & 0xffff;
  state.usedIdx = rng.u32() & 0xffff;
  state.signalledUsed = rng.u32() & 0xffff;
  state.signalledUsedValid = rng.chance(0.5);
  if (ringsFit(desc, avail, used) && size > 0) {
    for (let i = 0; i < size; i++) writeRandomDescriptor(memory, desc, i, size, rng);
    // Plausible indirect tables wherever indirect descriptors point.
    for (let i = 0; i < size; i++) {
      const at = desc + 16 * i;
      if (!(memory.readU16(at + 12) & VIRTQ_DESC_F_INDIRECT) || !rng.chance(0.8)) continue;
      const table = Number(memory.readU64(at));
      const n = 1 + rng.below(8);
      if (!memory.contains(table, 16 * n)) continue;
      memory.writeU32(at + 8, 16 * n);
      for (let j = 0; j < n; j++) writeRandomDescriptor(memory, table, j, n, rng);
    }
    const ahead = rng.chance(0.9) ? rng.below(size + 1) : rng.u32() & 0xffff;
    memory.writeU16(avail + 2, (state.lastAvailIdx + ahead) & 0xffff);
    for (let i = 0; i < size; i++)
      memory.writeU16(avail + 4 + 2 * i, rng.chance(0.9) ? rng.below(size) : rng.u32() & 0xffff);
  }
  const features = (rng.chance(0.7) ? INDIRECT : 0n) | (rng.chance(0.5) ? EVENT_IDX : 0n);

  try {
    const queue = new SplitQueue(memory, state, features, 0, 'fuzz');
    for (let step = 0; step < 2 * size + 4; step++) {
      const chain = queue.pop();
      if (!chain) break;
      out.chains++;
      let r = 0,
        w = 0;
      for (const b of chain.readable) {
        assert.ok(b.length > 0 && memory.contains(b.gpa, b.length), 'readable buffer inside RAM');
        r += b.length;
      }
      for (const b of chain.writable) {
        assert.ok(b.length > 0 && memory.contains(b.gpa, b.length), 'writable buffer inside RAM');
        w += b.length;
      }
      assert.is(r, chain.readableBytes);
      assert.is(w, chain.writableBytes);
      assert.ok(r + w <= MAX_CHAIN_BYTES);
      assert.ok(chain.head < size);
      queue.readFrom(chain, rng.below(64), rng.below(8192));
      const data = new Uint8Array(rng.below(256));
      queue.writeTo(chain, rng.below(64), data);
      if (rng.chance(0.1)) {
        queue.rewind(1);
        continue;
      }
      queue.push(chain, rng.chance(0.5) ? rng.below(512) : rng.u32());
      if (rng.chance(0.5)) queue.needsInterrupt();
      // The driver scribbles over its ring between our calls.
      if (rng.chance(0.2) && memory.contains(avail, 4)) memory.writeU16(avail + 2, rng.u32() & 0xffff);
      if (rng.chance(0.1) && size > 0) writeRandomDescriptor(memory, desc, rng.below(size), size, rng);
    }
    queue.needsInterrupt();
  } catch (e) {
    if (!(e instanceof VirtqueueError)) throw e;
    out.errors++;
    const kind = e.problem.replace(/0x[0-9a-f]+|\d+/g, 'N');
    out.kinds.set(kind, (out.kinds.get(kind) ?? 0) + 1);
  }
  return memory;
}

/** A well-formed case: the test driver adds random chains; pop() must return exactly them. */
function wellFormedCase(rng: Rng): CheckedMemory {
  const memory = new CheckedMemory([LOW, HIGH]);
  const alloc = new GuestAllocator(0x100, LOW.size);
  const size = 1 << rng.below(6);
  const state = newRecord(virtqueueStateDescriptor);
  resetVirtqueueState(state, size);
  const driver = new DriverQueue(memory, alloc, size);
  driver.configure(state);
  const features = INDIRECT | (rng.chance(0.5) ? EVENT_IDX : 0n);
  const queue = new SplitQueue(memory, state, features, 0, 'fuzz');
  for (let round = 0; round < 4; round++) {
    const added = [];
    for (let c = 0; c < size; c++) {
      const n = 1 + rng.below(4);
      const indirect = rng.chance(0.4);
      if (!indirect && driver.freeDescriptors < n) break;
      if (indirect && driver.freeDescriptors < 1) break;
      const readable = rng.below(n + 1);
      const specs = Array.from({ length: n }, (_, i) => ({ length: 1 + rng.below(64), write: i >= readable }));
      added.push(driver.add(specs, { indirect }));
    }
    for (const a of added) {
      const chain = queue.pop();
      assert.ok(chain, 'an added chain is available');
      assert.is(chain!.head, a.head);
      assert.equal([...chain!.readable, ...chain!.writable], a.buffers);
      queue.push(chain!, chain!.writableBytes);
    }
    assert.is(queue.pop(), null);
    assert.equal(
      driver.takeUsed().map((e) => e.id),
      added.map((a) => a.head),
    );
  }
  return memory;
}

test(`virtqueue fuzz: ${CASES} random rings and tables — only VirtqueueError, no access outside RAM, no hang (seed ${SEED})`, () => {
  const rng = new Rng(SEED);
  const outcome: Outcome = { chains: 0, errors: 0, kinds: new Map() };
  const started = Date.now();
  for (let n = 0; n < CASES; n++) {
    let memory: CheckedMemory;
    try {
      memory = n % 4 === 3 ? wellFormedCase(rng) : hostileCase(rng, outcome);
    } catch (e) {
      throw new Error(
        `virtqueue fuzz failed: seed ${SEED}, case ${n} (replay with TSVMM_FUZZ_SEED=${SEED}): ${(e as Error).stack}`,
      );
    }
    if (memory.violations.length > 0) {
      assert.unreachable(
        `seed ${SEED}, case ${n}: accesses outside RAM: ${JSON.stringify(memory.violations.slice(0, 3))}`,
      );
    }
  }
  const ms = Date.now() - started;
  console.log(
    `virtqueue fuzz: seed ${SEED}, ${CASES} cases, ${outcome.chains} chains served, ${outcome.errors} refused with VirtqueueError, ${ms} ms`,
  );
  if (process.env.TSVMM_FUZZ_STATS) {
    for (const [kind, count] of [...outcome.kinds].sort((a, b) => b[1] - a[1]))
      console.log(`${String(count).padStart(6)}  ${kind}`);
  }
  // The hostile generator must actually reach both outcomes, or it tests nothing.
  assert.ok(outcome.chains > CASES / 10, `too few chains served (${outcome.chains}), seed ${SEED}`);
  assert.ok(outcome.errors > CASES / 10, `too few refusals (${outcome.errors}), seed ${SEED}`);
});

test('virtqueue fuzz: a descriptor table of NEXT loops over the whole queue ends with a VirtqueueError', () => {
  const memory = new CheckedMemory([LOW, HIGH]);
  const alloc = new GuestAllocator(0x100, LOW.size);
  const driver = new DriverQueue(memory, alloc, 128);
  const state = newRecord(virtqueueStateDescriptor);
  driver.configure(state);
  for (let i = 0; i < 128; i++)
    driver.writeDesc(driver.desc, i, 0x3000, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (i + 1) % 128);
  driver.pushHead(5);
  const queue = new SplitQueue(memory, state, INDIRECT, 0, 'fuzz');
  memory.accesses = 0;
  assert.throws(
    () => queue.pop(),
    (e: unknown) => e instanceof VirtqueueError && /longer than the queue size 128/.test((e as Error).message),
  );
  assert.ok(memory.accesses < 128 * 6 + 20, `bounded work (${memory.accesses} accesses)`);
});

test.run();
