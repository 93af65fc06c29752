// The CPR channel between two real processes (this test spawns itself as the "new" VMM process: `node
// channel.test.js peer <socket path>`), and its error paths in one process over a socketpair.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import * as libc from '../../src/sys/libc.js';
import {
  socketPair,
  sendWithFds,
  closeAll,
  socketOption,
  unixSocket,
  SOL_SOCKET,
  SO_SNDBUF,
} from '../../src/sys/socket.js';
import {
  CprChannel,
  CprListener,
  CprChannelError,
  FRAME_MAGIC,
  FRAME_HEAD_BYTES,
  type ReceivedMessage,
} from './channel.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** A memfd of `size` bytes filled with pattern(seed), and a shared mapping of it. */
function patternWord(seed: number, i: number): number {
  return (Math.imul(i, 2654435761) ^ seed) >>> 0;
}
function withMapping<T>(fd: number, size: number, use: (words: Uint32Array) => T): T {
  const address = libc.mmap(null, size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0);
  try {
    return use(new Uint32Array(libc.view(address, size)));
  } finally {
    libc.munmap(address, size);
  }
}
function fillPattern(fd: number, size: number, seed: number): void {
  withMapping(fd, size, (words) => {
    for (let i = 0; i < words.length; i++) words[i] = patternWord(seed, i);
  });
}
function patternMismatches(fd: number, size: number, seed: number): number {
  return withMapping(fd, size, (words) => {
    let bad = 0;
    for (let i = 0; i < words.length; i++) if (words[i] !== patternWord(seed, i)) bad++;
    return bad;
  });
}
function memfdWithPattern(size: number, seed: number): number {
  const fd = libc.memfdCreate(`cpr-test-${seed}`, libc.MFD_CLOEXEC);
  libc.ftruncate(fd, size);
  fillPattern(fd, size, seed);
  return fd;
}
function eventfdTake(fd: number): bigint {
  const v = new BigUint64Array(1);
  return libc.read(fd, v) === 8 ? v[0] : 0n;
}

// ---- the peer: the "new" process --------------------------------------------------------------------------------

async function runPeer(path: string): Promise<void> {
  const fdsAtStart = openFds();
  const listener = CprListener.bind(path);
  process.stdout.write('listening\n');
  const channel = await listener.accept(20_000);
  listener.close();
  for (;;) {
    let m: ReceivedMessage;
    try {
      m = channel.receiveSync(30_000);
    } catch (e) {
      if (e instanceof CprChannelError && e.code === 'closed') break;
      throw e;
    }
    switch (m.type) {
      case 'check-memfds': {
        // Map each memfd, check its pattern, write the next pattern back; report in the order received.
        const { sizes, seeds, newSeeds } = m.header as { sizes: number[]; seeds: number[]; newSeeds: number[] };
        const mismatches = m.fds.map((fd, i) => patternMismatches(fd, sizes[i], seeds[i]));
        for (const [i, fd] of m.fds.entries()) fillPattern(fd, sizes[i], newSeeds[i]);
        closeAll(m.fds);
        channel.send({ type: 'checked', header: { mismatches } });
        break;
      }
      case 'signal-eventfd': {
        libc.write(m.fds[0], new BigUint64Array([BigInt((m.header as { value: number }).value)]));
        closeAll(m.fds);
        channel.send({ type: 'signalled' });
        break;
      }
      case 'echo':
        channel.send({ type: 'echo', header: m.header, payload: m.payload, fds: m.fds });
        closeAll(m.fds);
        break;
      case 'ack':
        closeAll(m.fds);
        channel.send({ type: 'ack' });
        break;
      case 'bye':
        // Open now: what was open at start, plus this channel's socket and wake-up eventfd.
        channel.send({ type: 'bye', header: { fdsAtStart, fdsNow: openFds(), channelFds: 2 } });
        break;
      default:
        throw new Error(`peer: unknown message ${m.type}`);
    }
  }
  channel.close();
}

// ---- the test side: the "old" process ---------------------------------------------------------------------------

// The peer child runs this module too: only the test side makes (and removes) the scratch directory.
const dir = process.argv[2] === 'peer' ? '' : mkdtempSync(join(tmpdir(), 'tsvmm-cpr-channel-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface Peer {
  child: ChildProcess;
  channel: CprChannel;
  exited: Promise<number | null>;
}
let peerCount = 0;

async function startPeer(): Promise<Peer> {
  const path = join(dir, `peer-${peerCount++}.sock`);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'peer', path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    lines.once('line', (line) => (line === 'listening' ? resolve() : reject(new Error(`peer said ${line}`))));
    child.once('exit', (code) => reject(new Error(`peer exited with ${code} before listening`)));
  });
  return { child, channel: CprChannel.connect(path), exited };
}

async function stopPeer(peer: Peer): Promise<void> {
  peer.channel.send({ type: 'bye' });
  const bye = await peer.channel.receive(10_000);
  const { fdsAtStart, fdsNow, channelFds } = bye.header as Record<string, number>;
  assert.is(fdsNow, fdsAtStart + channelFds, 'the peer leaked no descriptor');
  peer.channel.close();
  assert.is(await peer.exited, 0, 'the peer exited cleanly');
}

test('channel: a memfd sent to another process maps to the same bytes there, and its writes are seen here', async () => {
  const peer = await startPeer();
  const size = 1 << 20;
  const fd = memfdWithPattern(size, 0x1234);
  try {
    peer.channel.send({
      type: 'check-memfds',
      header: { sizes: [size], seeds: [0x1234], newSeeds: [0xbeef] },
      fds: [fd],
    });
    const reply = await peer.channel.receive(10_000);
    assert.is(reply.type, 'checked');
    assert.equal(reply.header, { mismatches: [0] }, "every word of the pattern read through the peer's mapping");
    assert.is(patternMismatches(fd, size, 0xbeef), 0, "the peer's writes through its mapping are in our memfd");
  } finally {
    libc.close(fd);
    await stopPeer(peer);
  }
});

test('channel: several fds in one message arrive in order, each usable (memfds and an eventfd)', async () => {
  const peer = await startPeer();
  const sizes = [4096, 65536, 3 * 4096];
  const seeds = [1, 2, 3];
  const memfds = sizes.map((size, i) => memfdWithPattern(size, seeds[i]));
  const efd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  try {
    // Sent in reverse order of seeds: the peer checks fd i against seed i, so any reordering shows.
    const order = [2, 0, 1];
    peer.channel.send({
      type: 'check-memfds',
      header: {
        sizes: order.map((i) => sizes[i]),
        seeds: order.map((i) => seeds[i]),
        newSeeds: order.map((i) => seeds[i] + 100),
      },
      fds: order.map((i) => memfds[i]),
    });
    assert.equal((await peer.channel.receive(10_000)).header, { mismatches: [0, 0, 0] });
    for (const [i, fd] of memfds.entries()) assert.is(patternMismatches(fd, sizes[i], seeds[i] + 100), 0);

    peer.channel.send({ type: 'signal-eventfd', header: { value: 41 }, fds: [efd] });
    assert.is((await peer.channel.receive(10_000)).type, 'signalled');
    assert.is(eventfdTake(efd), 41n, "the peer's eventfd write is seen here");
  } finally {
    closeAll([...memfds, efd]);
    await stopPeer(peer);
  }
});

test('channel: a payload much larger than the socket buffer crosses to the other process and back intact', async () => {
  const peer = await startPeer();
  try {
    const probe = unixSocket();
    const socketBuffer = socketOption(probe, SOL_SOCKET, SO_SNDBUF);
    libc.close(probe);
    const payload = randomBytes(8 << 20);
    assert.ok(payload.length > 8 * socketBuffer, `payload ${payload.length} vs SO_SNDBUF ${socketBuffer}`);
    peer.channel.send({ type: 'echo', header: { note: 'big' }, payload });
    const back = await peer.channel.receive(30_000);
    assert.equal(back.header, { note: 'big' });
    assert.is(back.payload.length, payload.length);
    assert.is(
      createHash('sha256').update(back.payload).digest('hex'),
      createHash('sha256').update(payload).digest('hex'),
    );
  } finally {
    await stopPeer(peer);
  }
});

// How long these round trips take (against the 2 ms pause budget) is a figure of bench/cpr-parts, not a test: a
// test must pass on a slow or loaded machine. Here, the same round trips must come back exact.
test('channel: round trips with 1 fd + 4 KiB and with 64 KiB between two processes come back exact, with the blocking receive of the pause window', async () => {
  const peer = await startPeer();
  const memfd = memfdWithPattern(4096, 7);
  try {
    for (const [label, size, fds, reply] of [
      ['1 fd + 4 KiB, echoed (fd + 4 KiB back)', 4096, [memfd], 'echo'],
      ['1 fd + 4 KiB, acked', 4096, [memfd], 'ack'],
      ['64 KiB, echoed', 65536, [], 'echo'],
      ['64 KiB, acked', 65536, [], 'ack'],
    ] as const) {
      for (let i = 0; i < 20; i++) {
        const payload = randomBytes(size);
        peer.channel.send({ type: reply, header: { i }, payload, fds: [...fds] });
        const back = peer.channel.receiveSync(10_000); // the pause window: blocking receive, no thread hop
        try {
          assert.is(back.type, reply, label);
          if (reply === 'ack') {
            assert.is(back.payload.length, 0, label);
            assert.is(back.fds.length, 0, label);
            continue;
          }
          assert.equal(back.header, { i }, label);
          assert.ok(Buffer.compare(back.payload, payload) === 0, `${label}: round ${i} payload came back changed`);
          assert.is(back.fds.length, fds.length, label);
          if (fds.length)
            assert.is(
              patternMismatches(back.fds[0], 4096, 7),
              0,
              `${label}: the fd that came back maps the same memfd`,
            );
        } finally {
          closeAll(back.fds);
        }
      }
    }
  } finally {
    libc.close(memfd);
    await stopPeer(peer);
  }
});

// ---- one process: listening, limits and failures ----------------------------------------------------------------

test('channel: the listening socket file is 0600, and is removed once the peer has connected', async () => {
  const path = join(dir, 'mode.sock');
  const oldMask = process.umask(0);
  let accepted: Promise<CprChannel>;
  try {
    accepted = CprChannel.listen(path, { timeoutMs: 5000 }); // binds before returning
  } finally {
    process.umask(oldMask);
  }
  assert.is(statSync(path).mode & 0o777, 0o600);
  const client = CprChannel.connect(path);
  const server = await accepted;
  assert.not.ok(existsSync(path), 'the one-shot listener removed its socket file');
  assert.is(server.peer.pid, process.pid);
  client.close();
  server.close();
});

test('channel: waiting for the peer keeps the event loop running; a timeout says so and cleans up', async () => {
  const path = join(dir, 'wait.sock');
  const before = openFds();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const t0 = performance.now();
  const error = await CprChannel.listen(path, { timeoutMs: 150 }).then(
    () => null,
    (e: unknown) => e,
  );
  clearInterval(timer);
  assert.instance(error, CprChannelError);
  assert.is((error as CprChannelError).code, 'timeout');
  assert.match((error as Error).message, /nobody connected to .*wait\.sock within 150 ms/);
  assert.ok(performance.now() - t0 >= 140, 'the wait lasted its timeout');
  // Blocking the event loop for the wait would leave no tick at all; how many fit in 150 ms depends on the machine.
  assert.ok(ticks > 0, `timers ran while waiting (${ticks})`);
  assert.not.ok(existsSync(path));
  assert.is(openFds(), before);
});

test('channel: close() ends a waiting accept() and a waiting receive() at once', async () => {
  const before = openFds();
  const listener = CprListener.bind(join(dir, 'close.sock'));
  const pending = listener.accept(60_000);
  setTimeout(() => listener.close(), 20);
  const t0 = performance.now();
  assert.is((await errorOf(pending)).code, 'closed');
  // Only a hang guard: close() woke the wait (~20 ms), it did not run on to its 60 s timeout.
  assert.ok(performance.now() - t0 < 30_000, 'close() woke the waiting accept()');

  const [a, b] = socketPair({ nonBlocking: true });
  const channel = CprChannel.fromFd(b);
  const receiving = channel.receive(60_000);
  setTimeout(() => channel.close(), 20);
  assert.match((await errorOf(receiving)).message, /closed while receiving/);
  libc.close(a);
  assert.is(openFds(), before);
});

/** A channel over one end of a socketpair, and the raw other end to misbehave through. */
function rawPair(options?: Parameters<typeof CprChannel.fromFd>[1]): { raw: number; channel: CprChannel } {
  const [raw, b] = socketPair({ nonBlocking: true });
  return { raw, channel: CprChannel.fromFd(b, options) };
}
function frameHead(fields: {
  magic?: number;
  typeLength: number;
  fdCount?: number;
  headerLength?: number;
  payloadLength?: number;
}): Uint8Array {
  const head = new Uint8Array(FRAME_HEAD_BYTES);
  const v = new DataView(head.buffer);
  v.setUint32(0, fields.magic ?? FRAME_MAGIC, true);
  v.setUint16(4, fields.typeLength, true);
  v.setUint16(6, fields.fdCount ?? 0, true);
  v.setUint32(8, fields.headerLength ?? 0, true);
  v.setUint32(12, fields.payloadLength ?? 0, true);
  return head;
}
async function errorOf(promise: Promise<unknown>): Promise<CprChannelError> {
  const e = await promise.then(
    () => null,
    (x: unknown) => x,
  );
  assert.instance(e, CprChannelError, `expected a CprChannelError, got ${String(e)}`);
  return e as CprChannelError;
}
const receiveError = (channel: CprChannel, timeoutMs = 2000) => errorOf(channel.receive(timeoutMs));

test('channel: the peer closing in the middle of a message is a clear "truncated" error', async () => {
  const { raw, channel } = rawPair();
  sendWithFds(raw, [frameHead({ typeLength: 3, payloadLength: 1000 }), Buffer.from('ram'), new Uint8Array(100)]);
  libc.close(raw);
  const e = await receiveError(channel);
  assert.is(e.code, 'truncated');
  assert.match(e.message, /peer closed the channel after 119 of 1019 bytes of message 'ram'/);
  // Later calls report the same failure instead of reading garbage.
  assert.throws(() => channel.receiveSync(10), /failed earlier/);
  channel.close();

  const second = rawPair();
  sendWithFds(second.raw, [frameHead({ typeLength: 3 }).subarray(0, 10)]);
  libc.close(second.raw);
  assert.match((await receiveError(second.channel)).message, /after 10 of 16 bytes of a frame head/);
  second.channel.close();
});

test('channel: the peer closing between messages is "closed"; sending to a gone peer is "closed" too', async () => {
  const { raw, channel } = rawPair();
  libc.close(raw);
  const e = await receiveError(channel);
  assert.is(e.code, 'closed');
  channel.close();

  const other = rawPair();
  libc.close(other.raw);
  assert.throws(
    () => other.channel.send({ type: 'state', payload: new Uint8Array(10) }),
    (x: CprChannelError) =>
      x.code === 'closed' && /peer closed the channel while message 'state' was being sent/.test(x.message),
  );
  other.channel.close();
});

test('channel: oversized length fields are refused from the head alone, without allocating the body', async () => {
  for (const [fields, pattern] of [
    [{ typeLength: 4, payloadLength: 0xffffffff }, /payload length 4294967295 exceeds the limit 268435456/],
    [{ typeLength: 4, headerLength: 0xfffffff0 }, /header length 4294967280 exceeds the limit 1048576/],
    [{ typeLength: 0xffff }, /message type length 65535 not in 1\.\.64/],
    [{ typeLength: 4, fdCount: 9999 }, /carries 9999 fds; the limit is 64/],
  ] as const) {
    const { raw, channel } = rawPair();
    const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
    sendWithFds(raw, [frameHead(fields)]);
    const e = await receiveError(channel);
    assert.is(e.code, 'limit');
    assert.match(e.message, pattern);
    assert.ok(process.memoryUsage().arrayBuffers - arrayBuffersBefore < 1 << 20, 'no body buffer was allocated');
    channel.close();
    libc.close(raw);
  }
  // The receiver's own, lower limit applies too.
  const { raw, channel } = rawPair({ limits: { maxPayloadBytes: 1000 } });
  sendWithFds(raw, [frameHead({ typeLength: 1, payloadLength: 1001 }), Buffer.from('x')]);
  assert.match((await receiveError(channel)).message, /payload length 1001 exceeds the limit 1000/);
  channel.close();
  libc.close(raw);
});

test('channel: a bad magic, fds where none belong and a wrong fd count are protocol errors; stray fds are closed', async () => {
  const efd = libc.eventfd(0, libc.EFD_CLOEXEC);
  const before = openFds();
  {
    const { raw, channel } = rawPair();
    sendWithFds(raw, [frameHead({ magic: 0x12345678, typeLength: 1 })]);
    const e = await receiveError(channel);
    assert.is(e.code, 'protocol');
    assert.match(e.message, /bad frame magic 0x12345678/);
    channel.close();
    libc.close(raw);
  }
  {
    // Two fds arrive, the head announces one.
    const { raw, channel } = rawPair();
    sendWithFds(raw, [frameHead({ typeLength: 1, fdCount: 1 }), Buffer.from('x')], [efd, efd]);
    const e = await receiveError(channel);
    assert.is(e.code, 'protocol');
    assert.match(e.message, /announces 1 fds but 2 arrived/);
    channel.close();
    libc.close(raw);
  }
  {
    // An fd attached to the body (a second sendmsg) instead of the head.
    const { raw, channel } = rawPair();
    sendWithFds(raw, [frameHead({ typeLength: 1, payloadLength: 4 })]);
    sendWithFds(raw, [Buffer.from('xabcd')], [efd]);
    const e = await receiveError(channel);
    assert.is(e.code, 'protocol');
    assert.match(e.message, /fds arrived inside the body of message/);
    channel.close();
    libc.close(raw);
  }
  {
    // More fds than this side accepts: the kernel drops the excess (MSG_CTRUNC), we close the rest.
    const { raw, channel } = rawPair({ limits: { maxFds: 2 } });
    sendWithFds(raw, [frameHead({ typeLength: 1, fdCount: 6 }), Buffer.from('x')], new Array(6).fill(efd));
    const e = await receiveError(channel);
    assert.is(e.code, 'limit');
    channel.close();
    libc.close(raw);
  }
  {
    const { raw, channel } = rawPair();
    sendWithFds(raw, [frameHead({ typeLength: 1, headerLength: 3 }), Buffer.from('x{{{')]);
    const e = await receiveError(channel);
    assert.is(e.code, 'protocol');
    assert.match(e.message, /header of message 'x' is not valid JSON/);
    channel.close();
    libc.close(raw);
  }
  assert.is(openFds(), before, 'every fd that arrived on an error path was closed');
  libc.close(efd);
});

test('channel: send refuses an over-limit message before sending anything, and the channel stays usable', async () => {
  const [a, b] = socketPair({ nonBlocking: true });
  const sender = CprChannel.fromFd(a, { limits: { maxPayloadBytes: 100, maxFds: 1, maxHeaderBytes: 10 } });
  const receiver = CprChannel.fromFd(b);
  const efd = libc.eventfd(0, libc.EFD_CLOEXEC);
  try {
    assert.throws(
      () => sender.send({ type: 'x', payload: new Uint8Array(101) }),
      /payload of 'x' is 101 bytes; the limit is 100/,
    );
    assert.throws(() => sender.send({ type: 'x', fds: [efd, efd] }), /carries 2 fds; the limit is 1/);
    assert.throws(() => sender.send({ type: 'x', header: { long: 'header' } }), /header of 'x' is 17 bytes/);
    assert.throws(() => sender.send({ type: 'has space' }), /printable ASCII/);
    assert.throws(() => sender.send({ type: 'x'.repeat(65) }), /1\.\.64/);
    assert.throws(() => sender.send({ type: 'x', fds: [-1] }), /not a file descriptor/);
    sender.send({ type: 'fine', header: [1, 2], payload: new Uint8Array([7]), fds: [efd] });
    const m = await receiver.receive(1000);
    assert.equal(
      { type: m.type, header: m.header, payload: [...m.payload], fds: m.fds.length },
      { type: 'fine', header: [1, 2], payload: [7], fds: 1 },
    );
    closeAll(m.fds);
  } finally {
    sender.close();
    receiver.close();
    libc.close(efd);
  }
});

test('channel: a receive timeout leaves the channel usable, and a message that arrives in pieces is reassembled', async () => {
  const { raw, channel } = rawPair();
  const e = await receiveError(channel, 30);
  assert.is(e.code, 'timeout');
  assert.match(e.message, /no message arrived within 30 ms/);
  const type = Buffer.from('piece');
  const header = Buffer.from(JSON.stringify({ n: 1 }));
  const frame = Buffer.concat([
    frameHead({ typeLength: type.length, headerLength: header.length, payloadLength: 3 }),
    type,
    header,
    Buffer.from([1, 2, 3]),
  ]);
  sendWithFds(raw, [frame.subarray(0, 7)]);
  const partial = await receiveError(channel, 30);
  assert.is(partial.code, 'timeout', 'half a head, then nothing');
  assert.match(partial.message, /the rest of a message did not arrive within 30 ms/);
  setTimeout(() => sendWithFds(raw, [frame.subarray(7, 20)]), 10);
  setTimeout(() => sendWithFds(raw, [frame.subarray(20)]), 40);
  const m = await channel.receive(2000);
  assert.equal(
    { type: m.type, header: m.header, payload: [...m.payload] },
    { type: 'piece', header: { n: 1 }, payload: [1, 2, 3] },
  );
  channel.close();
  libc.close(raw);
});

test('channel: a message without header or payload, and many messages back to back, keep their boundaries', () => {
  const [a, b] = socketPair({ nonBlocking: true });
  const sender = CprChannel.fromFd(a);
  const receiver = CprChannel.fromFd(b);
  for (let i = 0; i < 50; i++)
    sender.send(i % 2 ? { type: `m${i}`, header: { i }, payload: new Uint8Array(i) } : { type: `m${i}` });
  for (let i = 0; i < 50; i++) {
    const m = receiver.receiveSync(1000);
    assert.is(m.type, `m${i}`);
    assert.equal(m.header, i % 2 ? { i } : undefined);
    assert.is(m.payload.length, i % 2 ? i : 0);
  }
  sender.close();
  receiver.close();
});

test('channel: no descriptor leaks over listen, connect, fd-carrying messages, errors and close', async () => {
  const before = openFds();
  const path = join(dir, 'leak.sock');
  for (let round = 0; round < 5; round++) {
    const accepted = CprChannel.listen(path, { timeoutMs: 5000 });
    const client = CprChannel.connect(path);
    const server = await accepted;
    const memfd = memfdWithPattern(4096, round);
    client.send({ type: 'ram', fds: [memfd, memfd, memfd] });
    const m = await server.receive(1000);
    assert.is(m.fds.length, 3);
    closeAll(m.fds);
    client.send({ type: 'partial', payload: new Uint8Array(10), fds: [memfd] });
    client.close(); // the server sees the message, then end of stream
    closeAll((await server.receive(1000)).fds);
    assert.is((await receiveError(server)).code, 'closed');
    server.close();
    libc.close(memfd);
  }
  assert.is(openFds(), before);
});

if (process.argv[2] === 'peer') await runPeer(process.argv[3]);
else test.run();
