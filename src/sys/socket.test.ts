import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as libc from './libc.js';
import {
  unixSocket,
  socketPair,
  bindUnix,
  listenSocket,
  acceptConnection,
  connectUnix,
  shutdownSocket,
  sendWithFds,
  receiveWithFds,
  pollSync,
  pollAsync,
  peerCredentials,
  socketOption,
  closeAll,
  TruncatedMessageError,
  SOCK_SEQPACKET,
  SOL_SOCKET,
  SO_SNDBUF,
  SCM_RIGHTS,
  POLLIN,
  POLLOUT,
  SCM_MAX_FD,
  UNIX_PATH_MAX,
  SOCKET_LAYOUTS,
  CMSG_DATA_OFFSET,
  cmsgLen,
  cmsgSpace,
} from './socket.js';
import { SysError, Errno } from './errno.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-socket-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const openFds = (): number => readdirSync('/proc/self/fd').length;
const eventfd = (): number => libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
function eventfdAdd(fd: number, value: bigint): void {
  assert.is(libc.write(fd, new BigUint64Array([value])), 8);
}
function eventfdTake(fd: number): bigint {
  const v = new BigUint64Array(1);
  return libc.read(fd, v) === 8 ? v[0] : 0n;
}
const isCloexec = (fd: number): boolean => (libc.fcntl(fd, libc.F_GETFD) & libc.FD_CLOEXEC) !== 0;

test('socket: sendmsg carries data and fds; each fd arrives as a new close-on-exec descriptor of the same file', () => {
  const [a, b] = socketPair({ nonBlocking: true });
  const e1 = eventfd(),
    e2 = eventfd();
  try {
    assert.is(sendWithFds(a, [new Uint8Array([1, 2, 3])], [e1, e2]), 3);
    const buffer = new Uint8Array(16);
    const r = receiveWithFds(b, buffer);
    assert.is(r.bytes, 3);
    assert.equal([...buffer.subarray(0, 3)], [1, 2, 3]);
    assert.is(r.fds.length, 2);
    for (const fd of r.fds) {
      assert.ok(![a, b, e1, e2].includes(fd), 'a new descriptor');
      assert.ok(isCloexec(fd), 'MSG_CMSG_CLOEXEC');
    }
    // Same files: a write through the received descriptor is read through the original, in order.
    eventfdAdd(r.fds[0], 5n);
    eventfdAdd(r.fds[1], 7n);
    assert.is(eventfdTake(e1), 5n);
    assert.is(eventfdTake(e2), 7n);
    closeAll(r.fds);
  } finally {
    closeAll([a, b, e1, e2]);
  }
});

test('socket: gathered chunks — subarrays at odd offsets, tiny and large arrays — arrive intact', () => {
  const [a, b] = socketPair();
  try {
    const backing = new Uint8Array(300).map((_, i) => i);
    const chunks = [
      backing.subarray(7, 19),
      new Uint8Array([0xaa]),
      new Uint8Array(0),
      Buffer.from('hello'),
      new Uint8Array(new ArrayBuffer(5000)).fill(0x5c).subarray(1000, 3000),
      backing.subarray(299),
    ];
    const expected = Buffer.concat(chunks);
    assert.is(sendWithFds(a, chunks), expected.length);
    const got = new Uint8Array(expected.length + 10);
    let n = 0;
    while (n < expected.length) n += receiveWithFds(b, got.subarray(n), 0).bytes;
    assert.is(n, expected.length);
    assert.ok(Buffer.from(got.subarray(0, n)).equals(expected));
    // Scattered receive into several buffers.
    sendWithFds(a, [backing.subarray(0, 100)]);
    const parts = [new Uint8Array(30), new Uint8Array(70)];
    assert.is(receiveWithFds(b, parts, 0).bytes, 100);
    assert.equal([...parts[0].subarray(0, 3), ...parts[1].subarray(0, 2)], [0, 1, 2, 30, 31]);
  } finally {
    closeAll([a, b]);
  }
});

test(`socket: one message carries up to SCM_MAX_FD (${SCM_MAX_FD}) fds, as the kernel allows`, () => {
  const [a, b] = socketPair();
  const e = eventfd();
  try {
    assert.throws(() => sendWithFds(a, [new Uint8Array(1)], new Array(SCM_MAX_FD + 1).fill(e)), /at most 253/);
    // The kernel's own limit: 253 pass…
    assert.is(sendWithFds(a, [new Uint8Array(1)], new Array(SCM_MAX_FD).fill(e)), 1);
    const r = receiveWithFds(b, new Uint8Array(1), SCM_MAX_FD);
    assert.is(r.fds.length, SCM_MAX_FD);
    closeAll(r.fds);
    // …and 254 are refused by the kernel with EINVAL (built by hand: sendWithFds refuses before asking).
    const msg = rawMsghdrWithFds(new Array(SCM_MAX_FD + 1).fill(e));
    assert.is(libc.socketCalls.sendmsg(a, msg.address, 0), -Errno.EINVAL);
  } finally {
    closeAll([a, b, e]);
  }
});

/** A msghdr with one SCM_RIGHTS message of `fds` and one byte of data, built without socket.ts's checks. */
function rawMsghdrWithFds(fds: number[]): { address: bigint; keep: ArrayBuffer } {
  const f = (struct: 'msghdr' | 'iovec' | 'cmsghdr', field: string) => SOCKET_LAYOUTS[struct].fields[field].offset;
  const controlLength = cmsgLen(4 * fds.length);
  const iov = 64,
    data = iov + SOCKET_LAYOUTS.iovec.size,
    control = data + 8;
  const memory = new ArrayBuffer(control + cmsgSpace(4 * fds.length));
  const base = libc.addressOf(memory);
  const v = new DataView(memory);
  v.setBigUint64(iov + f('iovec', 'iov_base'), base + BigInt(data), true);
  v.setBigUint64(iov + f('iovec', 'iov_len'), 1n, true);
  v.setBigUint64(f('msghdr', 'msg_iov'), base + BigInt(iov), true);
  v.setBigUint64(f('msghdr', 'msg_iovlen'), 1n, true);
  v.setBigUint64(f('msghdr', 'msg_control'), base + BigInt(control), true);
  v.setBigUint64(f('msghdr', 'msg_controllen'), BigInt(controlLength), true);
  v.setBigUint64(control + f('cmsghdr', 'cmsg_len'), BigInt(controlLength), true);
  v.setInt32(control + f('cmsghdr', 'cmsg_level'), SOL_SOCKET, true);
  v.setInt32(control + f('cmsghdr', 'cmsg_type'), SCM_RIGHTS, true);
  for (const [i, fd] of fds.entries()) v.setInt32(control + CMSG_DATA_OFFSET + 4 * i, fd, true);
  return { address: base, keep: memory };
}

test('socket: more fds than the receive has room for → MSG_CTRUNC error, and the fds that arrived are closed', () => {
  const [a, b] = socketPair();
  const e = eventfd();
  try {
    const before = openFds();
    sendWithFds(a, [new Uint8Array([9])], [e, e, e, e, e]);
    // Room for 1 fd is CMSG_SPACE(4) = 24 bytes: 2 fds fit, 3 are dropped by the kernel.
    const error = (() => {
      try {
        receiveWithFds(b, new Uint8Array(4), 1);
      } catch (x) {
        return x;
      }
    })();
    assert.instance(error, TruncatedMessageError);
    assert.match((error as Error).message, /MSG_CTRUNC/);
    assert.is(openFds(), before, 'no descriptor left behind');
    // With no room at all, the fds are dropped and the error is the same.
    sendWithFds(a, [new Uint8Array([9])], [e]);
    assert.throws(
      () => receiveWithFds(b, new Uint8Array(4), 0),
      (x: Error) => x instanceof TruncatedMessageError,
    );
    assert.is(openFds(), before);
  } finally {
    closeAll([a, b, e]);
  }
});

test('socket: SOCK_SEQPACKET keeps record boundaries; a record longer than the buffer is reported (MSG_TRUNC)', () => {
  const [a, b] = socketPair({ type: SOCK_SEQPACKET });
  try {
    sendWithFds(a, [new Uint8Array([1, 2])]);
    sendWithFds(a, [new Uint8Array([3, 4, 5])]);
    const buffer = new Uint8Array(10);
    assert.is(receiveWithFds(b, buffer, 0).bytes, 2);
    assert.is(receiveWithFds(b, buffer, 0).bytes, 3);
    sendWithFds(a, [new Uint8Array(8)]);
    assert.throws(() => receiveWithFds(b, new Uint8Array(4), 0), /MSG_TRUNC/);
  } finally {
    closeAll([a, b]);
  }
});

test('socket: bind makes the socket file 0600 whatever the umask, and the listener accepts (CLOEXEC) a connection', () => {
  const path = join(dir, 'mode.sock');
  const oldMask = process.umask(0); // the most permissive umask: bind must not rely on it
  const listener = unixSocket({ nonBlocking: true });
  let client = -1,
    server: number | null = null;
  try {
    bindUnix(listener, path);
    process.umask(oldMask);
    const st = statSync(path);
    assert.ok(st.isSocket());
    assert.is(st.mode & 0o777, 0o600);
    listenSocket(listener);
    assert.is(acceptConnection(listener, { nonBlocking: true }), null, 'nobody yet');
    client = unixSocket();
    assert.ok(connectUnix(client, path));
    server = acceptConnection(listener);
    assert.ok(server !== null && server >= 0);
    assert.ok(isCloexec(server!));
    const creds = peerCredentials(server!);
    assert.equal(creds, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  } finally {
    process.umask(oldMask);
    closeAll([listener, client, ...(server === null ? [] : [server])].filter((fd) => fd >= 0));
    rmSync(path, { force: true });
  }
});

test('socket: bind replaces a stale socket file, refuses a live one and leaves a non-socket file untouched', () => {
  const path = join(dir, 'stale.sock');
  // A stale socket: bound, then closed without unlinking.
  const old = unixSocket();
  bindUnix(old, path);
  libc.close(old);
  const fresh = unixSocket();
  const other = unixSocket();
  try {
    bindUnix(fresh, path);
    listenSocket(fresh);
    // Somebody listens there now: a second bind must not steal the path.
    assert.throws(
      () => bindUnix(other, path),
      (e: Error) => e instanceof SysError && e.code === 'EADDRINUSE',
    );
    assert.ok(statSync(path).isSocket());
  } finally {
    closeAll([fresh, other]);
    rmSync(path, { force: true });
  }
  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  const s = unixSocket();
  try {
    assert.throws(() => bindUnix(s, file), /refusing to replace .* not a socket/);
    assert.is(readFileSync(file, 'utf8'), 'keep me');
  } finally {
    libc.close(s);
  }
});

test('socket: a path longer than sun_path is refused before any system call; connect names the path it failed on', () => {
  const s = unixSocket();
  try {
    assert.throws(() => bindUnix(s, `/tmp/${'x'.repeat(UNIX_PATH_MAX)}`), /at most 107 fit in sun_path/);
    const missing = join(dir, 'nobody-here.sock');
    assert.throws(
      () => connectUnix(s, missing),
      (e: Error) => e instanceof SysError && e.code === 'ENOENT' && e.message.includes(missing),
    );
  } finally {
    libc.close(s);
  }
});

test('socket: end of stream reads as 0 bytes; sending to a closed peer is EPIPE, not SIGPIPE', () => {
  const [a, b] = socketPair();
  shutdownSocket(a);
  assert.is(receiveWithFds(b, new Uint8Array(4), 0).bytes, 0);
  libc.close(b);
  assert.throws(
    () => sendWithFds(a, [new Uint8Array(1)]),
    (e: Error) => e instanceof SysError && e.code === 'EPIPE',
  );
  libc.close(a);
});

test('socket: pollSync times out, and reports POLLIN / POLLOUT when ready', () => {
  const [a, b] = socketPair();
  try {
    const t0 = performance.now();
    assert.equal(pollSync([{ fd: b, events: POLLIN }], 30), [0]);
    assert.ok(performance.now() - t0 >= 25, 'waited');
    sendWithFds(a, [new Uint8Array(1)]);
    assert.equal(
      pollSync(
        [
          { fd: b, events: POLLIN },
          { fd: a, events: POLLOUT },
        ],
        1000,
      ),
      [POLLIN, POLLOUT],
    );
  } finally {
    closeAll([a, b]);
  }
});

test('socket: pollAsync waits on a pool thread — timers keep firing — and wakes when data arrives', async () => {
  const [a, b] = socketPair();
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    setTimeout(() => sendWithFds(a, [new Uint8Array([42])]), 100);
    const t0 = performance.now();
    const [revents] = await pollAsync([{ fd: b, events: POLLIN }], 5000);
    const waited = performance.now() - t0;
    clearInterval(timer);
    assert.is(revents & POLLIN, POLLIN); // woken by the data, not by its 5 s timeout
    assert.ok(waited >= 90, `waited for the data (woke after ${waited.toFixed(1)} ms)`);
    // Waiting on this thread would leave no tick at all; how many fit in the wait depends on the machine.
    assert.ok(ticks > 0, `the event loop ran while waiting (${ticks} ticks)`);
  } finally {
    closeAll([a, b]);
  }
});

// What each kind of wait costs (inline against on the pool thread) is a figure of bench/cpr-parts, not a test.
test('socket: a ready fd is reported readable by poll(2) inline and on the pool thread, call after call', async () => {
  const [a, b] = socketPair();
  try {
    sendWithFds(a, [new Uint8Array(1)]); // always readable
    for (let i = 0; i < 50; i++) {
      assert.equal(pollSync([{ fd: b, events: POLLIN }], 1000), [POLLIN]);
      assert.equal(await pollAsync([{ fd: b, events: POLLIN }], 1000), [POLLIN]);
    }
  } finally {
    closeAll([a, b]);
  }
});

test('socket: payloads larger than the socket buffer go through in pieces on a non-blocking socket', () => {
  const [a, b] = socketPair({ nonBlocking: true });
  try {
    const size = 4 * socketOption(a, SOL_SOCKET, SO_SNDBUF);
    const data = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const got = new Uint8Array(size);
    let sent = 0,
      received = 0;
    while (received < size) {
      if (sent < size) {
        const r = sendWithFds(a, [data.subarray(sent)]);
        if (r > 0) sent += r;
      }
      const r = receiveWithFds(b, got.subarray(received), 0);
      if (r.bytes > 0) received += r.bytes;
    }
    assert.ok(Buffer.from(got).equals(Buffer.from(data)));
  } finally {
    closeAll([a, b]);
  }
});

test('socket: no descriptor leaks across all of the above', () => {
  // Each test closes what it opened; this checks the sum over a fresh run of the common paths.
  const before = openFds();
  for (let i = 0; i < 20; i++) {
    const [a, b] = socketPair();
    const e = eventfd();
    sendWithFds(a, [new Uint8Array(1)], [e, e]);
    closeAll(receiveWithFds(b, new Uint8Array(1)).fds);
    closeAll([a, b, e]);
  }
  assert.is(openFds(), before);
  assert.ok(existsSync('/proc/self/fd'));
});

test.run();
