import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { openCharBackend } from './backend.js';
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { Serial16550, serialState, UART_THR, UART_RBR, UART_LSR, LSR_DR } from '../../devices/serial.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-unix-'));
let n = 0;
const socketPath = () => join(dir, `s${n++}.sock`);
const quiet = { log: () => {} };
const text = (s: string) => new TextEncoder().encode(s);

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A test client that records what it receives. */
async function connect(path: string): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
  const socket = net.createConnection(path);
  let data = '';
  let closed = false;
  socket.on('data', (chunk) => {
    data += chunk.toString('latin1');
  });
  socket.on('close', () => {
    closed = true;
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed: () => closed };
}

function serialOn(out: { write(b: Uint8Array): void }) {
  const uart = new Serial16550(newRecord(serialState), {
    irq: { set() {}, pulse() {} },
    out,
    clock: { monotonicNs: () => process.hrtime.bigint(), realtimeNs: () => 0n },
  });
  uart.reset();
  return uart;
}

test('chardev unix: the server socket is created with mode 0600 and removed on close', async () => {
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  const stat = statSync(path);
  assert.ok(stat.isSocket());
  assert.is(stat.mode & 0o777, 0o600);
  await backend.close();
  assert.is(existsSync(path), false);
});

test('chardev unix: a socket client receives serial output and its input reaches the guest', async () => {
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  const uart = serialOn(backend.out);
  backend.setInputHandler((bytes) => uart.receive(bytes));
  const client = await connect(path);
  await until('the client to be attached', () => backend.connected);
  for (const c of text('login: ')) uart.write(UART_THR, 1, c);
  await until('serial output at the client', () => client.received() === 'login: ');
  // Without the FIFO the UART takes one byte at a time: the rest waits in the backend until the guest reads RBR.
  client.socket.write('root\r');
  let typed = '';
  await until('serial input in RBR', () => {
    if (uart.read(UART_LSR, 1) & LSR_DR) {
      typed += String.fromCharCode(uart.read(UART_RBR, 1));
      backend.retryInput();
    }
    return typed.length === 5;
  });
  assert.is(typed, 'root\r');
  client.socket.destroy();
  await backend.close();
});

test('chardev unix: output while nobody is connected is dropped; a later client gets what follows', async () => {
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server=on,wait=off`, quiet);
  backend.out.write(text('lost'));
  assert.is(backend.droppedBytes, 4);
  const first = await connect(path);
  await until('first client', () => backend.connected);
  backend.out.write(text('one'));
  await until('first output', () => first.received() === 'one');
  first.socket.end();
  await until('the first client to be gone', () => !backend.connected);
  backend.out.write(text('gap'));
  const second = await connect(path);
  await until('second client', () => backend.connected);
  backend.out.write(text('two'));
  await until('second output', () => second.received() === 'two');
  assert.is(backend.droppedBytes, 7);
  second.socket.destroy();
  await backend.close();
});

test('chardev unix: one client at a time — a second connection is closed at once', async () => {
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  const first = await connect(path);
  await until('first client', () => backend.connected);
  const second = await connect(path);
  await until('the second client to be refused', () => second.closed());
  backend.out.write(text('only first'));
  await until('output at the first client', () => first.received() === 'only first');
  assert.is(second.received(), '');
  first.socket.destroy();
  await backend.close();
});

test('chardev unix: with wait (the QEMU default) open resolves only once a client connects', async () => {
  const path = socketPath();
  const messages: string[] = [];
  let opened = false;
  const opening = openCharBackend(`unix:${path},server`, { log: (m) => messages.push(m) }).then((b) => {
    opened = true;
    return b;
  });
  await until('the socket to exist', () => existsSync(path));
  await sleep(30);
  assert.is(opened, false);
  assert.match(messages.join('\n'), /waiting for connection/);
  const client = await connect(path);
  const backend = await opening;
  assert.is(backend.connected, true);
  client.socket.destroy();
  await backend.close();
});

test('chardev unix: output written by a worker thread reaches the client', async () => {
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  const client = await connect(path);
  await until('client', () => backend.connected);
  const worker = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.module).then(({ openCharOut }) => {
      openCharOut(workerData.transfer).write(new TextEncoder().encode('hello from a vCPU'));
      parentPort.postMessage('done');
    });`,
    {
      eval: true,
      workerData: { module: new URL('./char-out.js', import.meta.url).href, transfer: backend.transferable() },
    },
  );
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  await until('worker output at the client', () => client.received() === 'hello from a vCPU');
  client.socket.destroy();
  await backend.close();
});

test('chardev unix: a client that stops reading costs at most the stall limit, then output is dropped', async () => {
  // The limit is long next to a write that does not wait (µs), so that "waited again" (>= the limit, by
  // construction) and "dropped at once" stay apart on any machine; the bounds below are only hang guards.
  const stallLimitMs = 500;
  const path = socketPath();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, { ...quiet, stallLimitMs });
  const client = await connect(path);
  client.socket.pause(); // never reads: the socket buffers fill
  await until('client', () => backend.connected);
  const chunk = new Uint8Array(64 * 1024);
  const started = performance.now();
  for (let i = 0; i < 64 && backend.droppedBytes === 0; i++) backend.out.write(chunk);
  const firstStall = performance.now() - started;
  assert.ok(backend.droppedBytes > 0, 'something was dropped');
  assert.ok(firstStall < 20 * stallLimitMs, `the writer gave up after the stall limit, not never (${firstStall} ms)`);
  const dropped = backend.droppedBytes;
  const again = performance.now();
  backend.out.write(chunk);
  assert.is(backend.droppedBytes, dropped + chunk.length, 'the next write is dropped whole');
  assert.ok(performance.now() - again < stallLimitMs, 'a stalled reader does not make every write wait again');
  client.socket.destroy();
  await backend.close();
});

test('chardev unix: a stale socket file is replaced; any other file is refused', async () => {
  const path = socketPath();
  // A process that dies without cleaning up leaves its socket file behind, as a crashed run would.
  spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.ok(statSync(path).isSocket());
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  await backend.close();
  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  try {
    await openCharBackend(`unix:${file},server,wait=off`, quiet);
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /not a socket/);
  }
  assert.ok(statSync(file).isFile());
});

test("chardev unix: a backend closing after a successor took over its path leaves the successor's socket alone", async () => {
  // Checkpoint/restart starts the new tsvmm with the same -serial unix:PATH,server while the old one still runs.
  const path = socketPath();
  const old = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  const successor = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  let client: Awaited<ReturnType<typeof connect>> | null = null;
  try {
    const successorSocket = statSync(path);
    await old.close();
    assert.ok(existsSync(path), "the old backend's close left the path in place");
    const stat = statSync(path);
    assert.ok(stat.isSocket(), 'the path still holds a socket');
    assert.is(stat.ino, successorSocket.ino, "it is the successor's socket");
    assert.is(stat.mode & 0o777, 0o600);
    client = await connect(path);
    await until('the successor to have a client', () => successor.connected);
    successor.out.write(text('still here'));
    await until('output from the successor', () => client!.received() === 'still here');
  } finally {
    client?.socket.destroy();
    await old.close();
    await successor.close();
  }
  assert.is(existsSync(path), false, 'the successor removes its own socket on close');
});

test('chardev unix: no socket file is reachable under a wider mode, even briefly', async () => {
  // The socket is bound in a private 0700 directory and renamed onto PATH once it is 0600: nothing else appears
  // in the socket's directory under its own name, and PATH's first appearance is already 0600.
  const path = socketPath();
  const seen: number[] = [];
  let watching = true;
  const watch = (async () => {
    while (watching) {
      try {
        seen.push(statSync(path).mode & 0o777);
      } catch {
        /* not there yet */
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  const backend = await openCharBackend(`unix:${path},server,wait=off`, quiet);
  watching = false;
  await watch;
  seen.push(statSync(path).mode & 0o777);
  assert.ok(
    seen.every((mode) => mode === 0o600),
    `modes seen: ${seen.map((m) => m.toString(8))}`,
  );
  await backend.close();
  assert.equal(
    readdirSync(dir).filter((name) => name.startsWith('.')),
    [],
    'no private directory is left behind',
  );
});

test('chardev unix: without server, tsvmm connects as a client', async () => {
  const path = socketPath();
  let peer: net.Socket | null = null;
  let received = '';
  const server = net.createServer((socket) => {
    peer = socket;
    socket.on('data', (d) => {
      received += d;
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const got: number[] = [];
  const backend = await openCharBackend(`unix:${path}`, {
    ...quiet,
    onInput: (bytes) => {
      got.push(...bytes);
    },
  });
  backend.out.write(text('hi server'));
  await until('output at the server', () => received === 'hi server');
  await until('peer', () => peer !== null);
  peer!.write('hi vm');
  await until('input from the server', () => got.length === 5);
  await backend.close();
  await new Promise((resolve) => server.close(resolve));
  try {
    await openCharBackend(`unix:${join(dir, 'nobody.sock')}`, quiet);
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /cannot connect/);
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
