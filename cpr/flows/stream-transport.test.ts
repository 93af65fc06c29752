// A checkpoint's bytes over a stream: to and from a command (exec:) or an fd (fd:), natively, with files of
// random bytes standing in for checkpoints. Every failure is one clear line, and an fd handed in is closed
// whatever happens.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CprError } from './cpr-error.js';
import { StreamCancelled, receiveFile, sendFile, type StreamEnd } from './stream-transport.js';
import { close } from '../../src/sys/libc.js';
import { sendWithFds, socketPair, shutdownSocket, SHUT_WR } from '../../src/sys/socket.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-stream-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `f${n++}`);
const openFds = () => readdirSync('/proc/self/fd').length;
const sh = (command: string): StreamEnd => ({
  kind: 'exec',
  argv: ['/bin/sh', '-c', command],
  label: `exec:${command}`,
});

/** A 3 MiB file of random bytes (more than a pipe holds, so the copy really streams). */
function checkpointLike(): { path: string; bytes: Buffer } {
  const path = fresh();
  const bytes = randomBytes(3 << 20);
  writeFileSync(path, bytes);
  return { path, bytes };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, CprError);
    assert.not.match((e as Error).message, /\n/);
    return (e as Error).message;
  }
  assert.unreachable('expected a refusal');
  return '';
}

test('exec: the command gets the whole file on its stdin (cat > F), and exec: a command that writes it back gives it', async () => {
  const { path, bytes } = checkpointLike();
  const out = fresh();
  assert.is(await sendFile(path, sh(`cat > '${out}'`)), bytes.length);
  assert.ok(readFileSync(out).equals(bytes));
  const back = fresh();
  assert.is(await receiveFile(sh(`cat '${out}'`), back, 16 << 20), bytes.length);
  assert.ok(readFileSync(back).equals(bytes));
});

test('exec: a command that fails, or reads nothing, is refused with its status; one that writes nothing too', async () => {
  const { path } = checkpointLike();
  assert.match(await refusal(sendFile(path, sh('exit 3'))), 'exec:exit 3: the command exited with status 3');
  assert.match(await refusal(sendFile(path, sh('cat > /dev/null; exit 7'))), 'exited with status 7');
  assert.match(await refusal(sendFile(path, sh('true'))), /exec:true: the stream broke after \d+ bytes/);
  assert.match(await refusal(sendFile(path, sh('kill -9 $$'))), /killed by SIGKILL|the stream broke/);
  const target = fresh();
  assert.match(await refusal(receiveFile(sh('true'), target, 1 << 20)), 'exec:true: the stream was empty');
  assert.match(await refusal(receiveFile(sh(`cat '${path}'; exit 2`), fresh(), 16 << 20)), 'exited with status 2');
  assert.match(
    await refusal(
      receiveFile({ kind: 'exec', argv: ['/nonexistent/cmd'], label: 'exec:/nonexistent/cmd' }, fresh(), 1),
    ),
    /exec:\/nonexistent\/cmd: (cannot run the command|the command exited)/,
  );
});

test('receive: a stream longer than the bound is cut off and refused (a peer cannot fill the disk)', async () => {
  const { path } = checkpointLike();
  const target = fresh();
  assert.match(
    await refusal(receiveFile(sh(`cat '${path}'`), target, 1 << 20)),
    `exec:cat '${path}': the stream is longer than 1048576 bytes`,
  );
});

test('fd: a socket passed in carries the file both ways and is closed after, success or not', async () => {
  const { path, bytes } = checkpointLike();
  const before = openFds();
  // Outgoing: tsvmm writes into one end; the test reads the other until EOF (which needs tsvmm's end closed).
  const [ours, theirs] = socketPair();
  const reading = new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    const s = new net.Socket({ fd: ours, readable: true, writable: false });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      s.destroy();
      resolve(Buffer.concat(chunks));
    });
  });
  assert.is(await sendFile(path, { kind: 'fd', fd: theirs, label: 'fd:mig' }), bytes.length);
  assert.ok((await reading).equals(bytes));
  // Incoming: the test writes a small stream and closes; tsvmm reads to EOF.
  const [a, b] = socketPair();
  assert.is(sendWithFds(a, [Buffer.from('tsvmm checkpoint bytes')]), 22);
  shutdownSocket(a, SHUT_WR);
  const target = fresh();
  assert.is(await receiveFile({ kind: 'fd', fd: b, label: 'fd:in' }, target, 1 << 20), 22);
  close(a);
  // A regular file passed as the fd works too (written from its current offset).
  const file = fresh();
  await sendFile(path, { kind: 'fd', fd: openSync(file, 'w'), label: 'fd:file' });
  assert.ok(readFileSync(file).equals(bytes));
  // A peer that closes early: refused, and the fd still closed.
  const [c, d] = socketPair();
  close(c);
  assert.match(await refusal(sendFile(path, { kind: 'fd', fd: d, label: 'fd:gone' })), 'fd:gone: the stream broke');
  await new Promise((r) => setTimeout(r, 50));
  assert.is(openFds(), before, 'every fd handed in was closed');
  assert.ok(existsSync(target));
});

test('cancel (migrate_cancel): a command that never reads, never exits or never writes is given up at once and killed', async () => {
  const { path } = checkpointLike();
  // Each would hang for 100 s; the 5 s bound still fails before cancelling worked, and holds on a loaded host.
  for (const [what, start] of [
    ['send to sleep 100', (signal: AbortSignal) => sendFile(path, sh('sleep 100'), signal)],
    [
      'send to cat > /dev/null; sleep 100',
      (signal: AbortSignal) => sendFile(path, sh('cat > /dev/null; sleep 100'), signal),
    ],
    ['receive from sleep 100', (signal: AbortSignal) => receiveFile(sh('sleep 100'), fresh(), 1 << 20, signal)],
  ] as const) {
    const abort = new AbortController();
    const t0 = Date.now();
    const running = start(abort.signal);
    setTimeout(() => abort.abort(), 200);
    const message = await refusal(running);
    assert.match(message, 'cancelled (migrate_cancel)', what);
    await running.catch((e) => assert.instance(e, StreamCancelled));
    assert.ok(Date.now() - t0 < 5000, `${what}: cancelled in ${Date.now() - t0} ms`);
  }
});

test('fd: a number that is no open fd is refused by name', async () => {
  const { path } = checkpointLike();
  assert.match(
    await refusal(sendFile(path, { kind: 'fd', fd: 987654, label: 'fd:987654' })),
    'fd:987654: not an open file descriptor',
  );
});

test.run();
