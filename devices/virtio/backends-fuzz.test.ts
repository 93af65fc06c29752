// The back ends against random requests: chains of random shape (readable/writable splits, lengths, indirect or
// not) with random contents (request types, sectors, headers), now and then a malformed ring entry. Whatever the
// guest sends, notify()/pollHost()/receive() must not throw, must not touch memory outside RAM, and virtio-blk must
// never write outside the image's capacity. Seeded like the queue fuzzer (TSVMM_FUZZ_SEED).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomInt } from 'node:crypto';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { close, read, write } from '../../src/sys/libc.js';
import { socketPair, SOCK_SEQPACKET } from '../../src/sys/socket.js';
import { VirtioBlk, SECTOR_SIZE } from './blk.js';
import { VirtioConsole, virtioConsoleState } from './console.js';
import { VirtioNet, virtioNetState } from './net.js';
import { VirtioRng } from './rng.js';
import type { VirtioBackend } from './types.js';
import { FakeTransport } from './testing/transport.js';
import type { BufferSpec } from './testing/driver.js';

const SEED = Number(process.env.TSVMM_FUZZ_SEED ?? randomInt(2 ** 31));
const ROUNDS = Number(process.env.TSVMM_FUZZ_CASES ?? 12_000) / 6;

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
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
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.u32() & 0xff);
  }
}

/** A random chain whose first readable buffer starts with `head` (a request header), then random buffers. */
function randomChain(rng: Rng, head: Uint8Array | null): BufferSpec[] {
  const specs: BufferSpec[] = [];
  if (head) specs.push({ data: head.subarray(0, rng.chance(0.9) ? head.length : rng.below(head.length + 1)) });
  const readable = rng.below(3);
  for (let i = 0; i < readable; i++)
    specs.push({ data: rng.bytes(rng.pick([1, 16, 100, 512, 1024, rng.below(3000)])) });
  const writable = rng.below(4);
  for (let i = 0; i < writable; i++)
    specs.push({ length: rng.pick([1, 1, 20, 512, 513, 1024, 1526, rng.below(4000)]), write: true });
  return specs.filter((s) => (s.data?.length ?? s.length ?? 0) > 0);
}

/** What one random chain may need at most: 3 readable and 3 writable buffers of < 4 KiB, plus an indirect table. */
const MIN_ROOM = 32 << 10;

/** Plays `rounds` random requests against a started back end; `poke` exercises its host side. */
function play(
  name: string,
  first: FakeTransport,
  rng: Rng,
  rounds: number,
  header: () => Uint8Array | null,
  poke: () => void = () => {},
): void {
  let t = first;
  let restarts = 0;
  let served = 0;
  for (let r = 0; r < rounds; r++) {
    const q = rng.below(t.drivers.length);
    const d = t.drivers[q];
    const specs = randomChain(rng, header());
    try {
      if (rng.chance(0.01)) {
        d.pushHead(d.size + rng.below(100)); // a malformed entry: the back end must fail the device, not throw
      } else if (specs.length > 0 && d.freeDescriptors >= 1) {
        d.add(specs, { indirect: d.freeDescriptors < specs.length || rng.chance(0.3) });
      }
      t.kick(q);
      poke();
      served += d.takeUsed().length;
    } catch (e) {
      throw new Error(`${name}: seed ${SEED}, round ${r}: ${(e as Error).stack}`);
    }
    if (t.failures.length > 0 || r === rounds - 1) {
      assert.equal(t.memory.violations, [], `${name}: seed ${SEED}: access outside RAM`);
    }
    if (t.failures.length > 0) {
      // The device is broken until reset: start over, as a driver would.
      t.backend.reset();
      t = new FakeTransport(t.backend, { ramSize: 1 << 20 }).start();
      restarts++;
    } else if (t.allocator.room < MIN_ROOM) {
      // The test driver never reuses buffers: when its RAM runs low, reset the device and start over.
      t.backend.reset();
      t = new FakeTransport(t.backend, { ramSize: 1 << 20 }).start();
    }
  }
  assert.ok(restarts > 0, `${name}: the malformed entries were reached`);
  assert.ok(served > rounds / 4, `${name}: only ${served} of ${rounds} requests were served`);
}

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-fuzz-'));

test(`virtio back ends fuzz: random requests never throw or reach outside RAM or the disk (seed ${SEED})`, () => {
  const rng = new Rng(SEED);
  const started = Date.now();

  // virtio-blk: headers of every type, sectors near and far beyond the 64-sector capacity.
  const path = join(dir, 'disk.img');
  writeFileSync(path, new Uint8Array(64 * SECTOR_SIZE));
  const fd = openSync(path, 'r+');
  const blk = new VirtioBlk({ fd, serial: 'fuzz' });
  play('virtio-blk', new FakeTransport(blk, { ramSize: 1 << 20 }).start(), rng, ROUNDS * 2, () => {
    const h = new Uint8Array(16);
    const v = new DataView(h.buffer);
    v.setUint32(0, rng.pick([0, 1, 4, 8, 11, 13, 2, rng.u32()]), true);
    v.setBigUint64(8, rng.chance(0.8) ? BigInt(rng.below(70)) : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32()), true);
    return h;
  });
  assert.is(fstatSync(fd).size, 64 * SECTOR_SIZE, 'the image never grew');
  closeSync(fd);

  // virtio-net: random transmit chains; random host frames and receive buffers, with and without MRG_RXBUF.
  for (const mergeable of [true, false]) {
    const [ours, peer] = socketPair({ type: SOCK_SEQPACKET, nonBlocking: true });
    const net = new VirtioNet(newRecord(virtioNetState), { fd: ours, mergeableRxBuffers: mergeable });
    net.powerOn();
    const drain = new Uint8Array(70000);
    play(
      `virtio-net${mergeable ? '' : ' (no MRG_RXBUF)'}`,
      new FakeTransport(net, { ramSize: 1 << 20 }).start(),
      rng,
      ROUNDS,
      () => rng.bytes(12),
      () => {
        if (rng.chance(0.5)) write(peer, rng.bytes(12 + rng.below(3000)));
        net.pollHost();
        while (read(peer, drain) > 0) {
          /* the host side drains what the guest sent */
        }
      },
    );
    close(ours);
    close(peer);
  }

  // virtio-console: random output chains, random host input.
  const out = {
    bytes: 0,
    write(b: Uint8Array) {
      this.bytes += b.length;
    },
  };
  const con = new VirtioConsole(newRecord(virtioConsoleState), { out });
  play(
    'virtio-console',
    new FakeTransport(con, { ramSize: 1 << 20 }).start(),
    rng,
    ROUNDS,
    () => null,
    () => {
      if (rng.chance(0.5)) con.receive(rng.bytes(rng.below(300)));
    },
  );

  // virtio-rng.
  play(
    'virtio-rng',
    new FakeTransport(new VirtioRng() as VirtioBackend, { ramSize: 1 << 20 }).start(),
    rng,
    ROUNDS,
    () => null,
  );

  console.log(`virtio back ends fuzz: seed ${SEED}, ${Date.now() - started} ms`);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
