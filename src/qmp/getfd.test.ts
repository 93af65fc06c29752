// QMP fd passing, as QEMU's monitor does it: a client attaches a descriptor (SCM_RIGHTS) to the getfd command (or
// sends it just before, with a single byte, as QEMU's Python qemu.qmp does); the server keeps it under a name until
// closefd or a command that takes it (migrate fd:NAME). Other clients and plain commands are unaffected, and no
// descriptor a client sends can outlive what the server promises to keep.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_NAMED_FDS, QmpServer, defineCommand } from './server.js';
import { Q } from './qapi.js';
import { MAX_RECEIVED_FDS } from './session.js';
import { connectRaw, type RawClient } from './test-client.js';
import { close, write } from '../sys/libc.js';
import { MSG_DONTWAIT, receiveWithFds, sendWithFds, socketPair } from '../sys/socket.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-getfd-'));
let n = 0;
test.after(() => rmSync(dir, { recursive: true, force: true }));

const openFds = () => readdirSync('/proc/self/fd').length;
/**
 * The open fd count once closes still in flight have landed (Node closes a socket's fd a tick or more after
 * close(); on a loaded host an earlier test's socket was still open when this one took its baseline, CI 2026-12-08).
 */
async function settledFds(): Promise<number> {
  let last = openFds();
  for (;;) {
    await sleep(50);
    const now = openFds();
    if (now === last) return now;
    last = now;
  }
}

/** A server whose `x-write` command writes `text` to the fd named `fdname` and closes it (as migrate fd: does). */
async function start(): Promise<QmpServer> {
  return QmpServer.listen(`unix:${join(dir, `q${n++}.sock`)},server,wait=off`, {
    version: '9.9.9-test',
    commands: { 'query-status': () => ({ running: true, status: 'running' }) },
    extraCommands: {
      'x-write': defineCommand({ fdname: Q.str, text: Q.str }, ({ fdname, text }, ctx) => {
        const fd = ctx.takeNamedFd(fdname);
        if (fd === undefined) return { found: false };
        write(fd, Buffer.from(text));
        close(fd);
        return { found: true };
      }),
    },
    log: () => {},
  });
}

async function negotiated(server: QmpServer): Promise<RawClient> {
  const client = await connectRaw(server.path);
  await client.next(); // greeting
  assert.equal(await client.execute('qmp_capabilities'), { return: {} });
  return client;
}

/** Sends `text` with `fds` attached, through the client's socket (Node's sockets cannot attach fds). */
function sendWith(client: RawClient, text: string, fds: number[]): void {
  const fd = (client.socket as unknown as { _handle: { fd: number } })._handle.fd;
  assert.equal(sendWithFds(fd, [Buffer.from(text)], fds), Buffer.byteLength(text));
}

/** A fresh socket pair: `mine` to watch, `theirs` to send (and close here once sent). */
function pair(): { mine: number; theirs: number } {
  const [mine, theirs] = socketPair();
  return { mine, theirs };
}

/** Whether the peer of `mine` has been closed everywhere (EOF), waiting up to 2 s for it. */
async function peerClosed(mine: number): Promise<boolean> {
  const buf = new Uint8Array(64);
  for (let i = 0; i < 200; i++) {
    const r = receiveWithFds(mine, buf, 0, MSG_DONTWAIT);
    if (r.bytes === 0) return true;
    await sleep(10);
  }
  return false;
}

/** Whether the peer of `mine` is open somewhere (nothing to read, no EOF). */
function stillOpen(mine: number): boolean {
  return receiveWithFds(mine, new Uint8Array(1), 0, MSG_DONTWAIT).bytes < 0;
}

async function reply(client: RawClient): Promise<Record<string, unknown>> {
  for (;;) {
    const message = await client.next();
    if (!('event' in message)) return message;
  }
}

test('getfd: an fd sent with the command is kept under its name; a command that takes it owns it', async () => {
  const server = await start();
  const client = await negotiated(server);
  const { mine, theirs } = pair();
  sendWith(client, '{"execute": "getfd", "arguments": {"fdname": "mig"}}', [theirs]);
  close(theirs);
  assert.equal(await reply(client), { return: {} });
  assert.ok(stillOpen(mine), 'the server keeps it');
  assert.equal(await client.execute('x-write', { fdname: 'mig', text: 'stream' }), { return: { found: true } });
  const buf = new Uint8Array(16);
  assert.equal(receiveWithFds(mine, buf, 0, MSG_DONTWAIT).bytes, 6);
  assert.ok(await peerClosed(mine), 'the taker closed it');
  assert.equal(await client.execute('x-write', { fdname: 'mig', text: 'x' }), { return: { found: false } });
  close(mine);
  client.close();
  await server.close();
});

test('getfd: an fd sent ahead with a single space byte (qemu.qmp send_fd_scm) is the one getfd takes', async () => {
  const server = await start();
  const client = await negotiated(server);
  const { mine, theirs } = pair();
  sendWith(client, ' ', [theirs]);
  close(theirs);
  assert.equal(await client.execute('getfd', { fdname: 'early' }), { return: {} });
  assert.equal(await client.execute('closefd', { fdname: 'early' }), { return: {} });
  assert.ok(await peerClosed(mine), 'closefd closed it');
  close(mine);
  client.close();
  await server.close();
});

test("getfd/closefd: QEMU's errors for no fd, an unknown name and a name starting with a digit", async () => {
  const server = await start();
  const client = await negotiated(server);
  assert.equal(await client.execute('getfd', { fdname: 'x' }), {
    error: { class: 'GenericError', desc: 'No file descriptor supplied via SCM_RIGHTS' },
  });
  assert.equal(await client.execute('closefd', { fdname: 'nope' }), {
    error: { class: 'GenericError', desc: "File descriptor named 'nope' not found" },
  });
  const { mine, theirs } = pair();
  sendWith(client, '{"execute": "getfd", "arguments": {"fdname": "3"}}', [theirs]);
  close(theirs);
  assert.equal(await reply(client), {
    error: { class: 'GenericError', desc: "Parameter 'fdname' expects a name not starting with a digit" },
  });
  assert.ok(await peerClosed(mine), 'the refused fd was closed');
  close(mine);
  client.close();
  await server.close();
});

test('getfd: the same name again replaces the old fd and closes it', async () => {
  const server = await start();
  const client = await negotiated(server);
  const a = pair();
  const b = pair();
  sendWith(client, '{"execute": "getfd", "arguments": {"fdname": "f"}}', [a.theirs]);
  assert.equal(await reply(client), { return: {} });
  sendWith(client, '{"execute": "getfd", "arguments": {"fdname": "f"}}', [b.theirs]);
  assert.equal(await reply(client), { return: {} });
  close(a.theirs);
  close(b.theirs);
  assert.ok(await peerClosed(a.mine), 'the first fd was closed');
  assert.equal(await client.execute('x-write', { fdname: 'f', text: 'b' }), { return: { found: true } });
  assert.ok(await peerClosed(b.mine));
  close(a.mine);
  close(b.mine);
  client.close();
  await server.close();
});

test(`getfd: at most ${MAX_NAMED_FDS} named fds; unclaimed and surplus fds never leak, and named ones close with the server`, async () => {
  const before = await settledFds();
  const server = await start();
  const { mine, theirs } = pair();
  try {
    const client = await negotiated(server);
    const afterConnect = (await settledFds()) - 2; // the pair is counted apart
    for (let i = 0; i < MAX_NAMED_FDS; i++) {
      sendWith(client, `{"execute": "getfd", "arguments": {"fdname": "f${i}"}}`, [theirs]);
      assert.equal(await reply(client), { return: {} });
    }
    sendWith(client, '{"execute": "getfd", "arguments": {"fdname": "one-too-many"}}', [theirs]);
    assert.equal(await reply(client), {
      error: { class: 'GenericError', desc: `too many named file descriptors (${MAX_NAMED_FDS}): closefd one first` },
    });
    assert.equal(openFds(), afterConnect + 2 + MAX_NAMED_FDS, 'the refused one was closed');
    // Fds sent with commands that do not take them wait for a getfd, MAX_RECEIVED_FDS at most per connection.
    for (let i = 0; i < 3 * MAX_RECEIVED_FDS; i++) {
      sendWith(client, '{"execute": "query-status"}', [theirs, theirs]);
      assert.equal(await reply(client), { return: { running: true, status: 'running' } });
    }
    assert.equal(openFds(), afterConnect + 2 + MAX_NAMED_FDS + MAX_RECEIVED_FDS);
    client.close();
    await sleep(200);
    assert.equal(await settledFds(), before + 2 + MAX_NAMED_FDS + 1, 'the connection and its unclaimed fds are closed');
  } finally {
    await server.close();
    close(theirs);
  }
  assert.ok(await peerClosed(mine), 'closing the server closed every named fd');
  close(mine);
  assert.equal(await settledFds(), before);
});

test('getfd: a client that sends no fds is served as before, and many clients each get their own replies', async () => {
  const server = await start();
  const clients = await Promise.all([1, 2, 3].map(() => negotiated(server)));
  for (let round = 0; round < 20; round++) {
    const replies = await Promise.all(clients.map((c) => c.execute('query-status', {}, round)));
    for (const r of replies) assert.equal(r, { return: { running: true, status: 'running' }, id: round });
  }
  // A request split across writes, and two in one write.
  const c = clients[0];
  c.send('{"execute": "query-');
  await sleep(20);
  c.send('status"}\n{"execute": "query-status", "id": 2}');
  assert.equal(await reply(c), { return: { running: true, status: 'running' } });
  assert.equal(await reply(c), { return: { running: true, status: 'running' }, id: 2 });
  for (const client of clients) client.close();
  await server.close();
});

test.run();
