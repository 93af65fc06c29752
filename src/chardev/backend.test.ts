import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { openCharBackend } from './backend.js';
import { openCharOut } from './char-out.js';
import { charSpecFromChardev } from './spec.js';

/** Hang guard for a write that must not block (generous: a loaded machine is slow; a blocked one never ends). */
const HANG_GUARD_MS = 10_000;
const dir = mkdtempSync(join(tmpdir(), 'tsvmm-chardev-'));
const text = (s: string) => new TextEncoder().encode(s);

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Runs `openCharOut(transfer).write(...)` in a real worker thread, `count` times. */
function writeFromWorker(transfer: unknown, line: string, count: number): Promise<void> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.module).then(({ openCharOut }) => {
      const out = openCharOut(workerData.transfer);
      const bytes = new TextEncoder().encode(workerData.line);
      for (let i = 0; i < workerData.count; i++) out.write(bytes);
      parentPort.postMessage('done');
    });`;
  const worker = new Worker(code, {
    eval: true,
    workerData: { module: new URL('./char-out.js', import.meta.url).href, transfer, line, count },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', () => {
      void worker.terminate();
      resolve();
    });
    worker.once('error', reject);
  });
}

test('chardev: file: output lands in the file, truncating what was there', async () => {
  const path = join(dir, 'serial.log');
  writeFileSync(path, 'old contents that must go away\n');
  const backend = await openCharBackend(`file:${path}`);
  backend.out.write(text('hello '));
  backend.out.write(text('file\n'));
  assert.is(backend.connected, true);
  await backend.close();
  assert.is(readFileSync(path, 'utf8'), 'hello file\n');
  assert.is(backend.droppedBytes, 0);
});

test("chardev: file: a new log file is its user's alone (0600 whatever the umask); a planted symlink is refused", async () => {
  const path = join(dir, 'private.log');
  const old = process.umask(0);
  try {
    await (await openCharBackend(`file:${path}`)).close();
  } finally {
    process.umask(old);
  }
  assert.is(statSync(path).mode & 0o7777, 0o600);

  const victim = join(dir, 'victim');
  writeFileSync(victim, "not the guest's to truncate\n");
  const link = join(dir, 'planted.log');
  symlinkSync(victim, link);
  try {
    await openCharBackend(`file:${link}`);
    assert.unreachable('a symlink was followed');
  } catch (e) {
    assert.is((e as Error).message, `file:${link}: refused: the path is a symbolic link (give the file itself)`);
  }
  assert.is(readFileSync(victim, 'utf8'), "not the guest's to truncate\n");
});

test('chardev: -chardev file,append=on appends', async () => {
  const path = join(dir, 'append.log');
  writeFileSync(path, 'first\n');
  const backend = await openCharBackend(charSpecFromChardev('file', { id: 'f0', path, append: 'on' }));
  backend.out.write(text('second\n'));
  await backend.close();
  assert.is(readFileSync(path, 'utf8'), 'first\nsecond\n');
});

test('chardev: output from a worker-thread CharOut arrives in the file', async () => {
  const path = join(dir, 'worker.log');
  const backend = await openCharBackend(`file:${path}`);
  await writeFromWorker(backend.transferable(), 'from the vCPU thread\n', 3);
  await backend.close();
  assert.is(readFileSync(path, 'utf8'), 'from the vCPU thread\n'.repeat(3));
});

test('chardev: a worker and the main thread writing at once lose no line', async () => {
  const path = join(dir, 'both.log');
  const backend = await openCharBackend(`file:${path}`);
  const worker = writeFromWorker(backend.transferable(), 'W\n', 2000);
  const main = text('M\n');
  for (let i = 0; i < 2000; i++) backend.out.write(main);
  await worker;
  await backend.close();
  const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
  assert.is(lines.length, 4000);
  assert.is(lines.filter((l) => l === 'W').length, 2000);
  assert.is(lines.filter((l) => l === 'M').length, 2000);
});

test('chardev: after close, writers on any thread drop output instead of touching the old fd', async () => {
  const path = join(dir, 'closed.log');
  const backend = await openCharBackend(`file:${path}`);
  const transfer = backend.transferable();
  await backend.close();
  const out = openCharOut(transfer);
  out.write(text('late'));
  await writeFromWorker(transfer, 'later', 1);
  assert.is(readFileSync(path, 'utf8'), '');
  assert.is(out.dropped, 9);
});

test('chardev: null drops output and counts it', async () => {
  const backend = await openCharBackend('null');
  backend.out.write(text('gone'));
  assert.is(backend.connected, false);
  assert.is(backend.droppedBytes, 4);
  await backend.close();
  const none = await openCharBackend('none');
  assert.is(none.spec.kind, 'none', 'the machine can tell QEMU\'s "no device" apart');
  await none.close();
});

test('chardev: pipe: PATH.in feeds input and PATH.out receives output', async () => {
  const base = join(dir, 'fifo');
  execFileSync('mkfifo', [`${base}.in`, `${base}.out`]);
  const got: number[] = [];
  const backend = await openCharBackend(`pipe:${base}`, {
    onInput: (bytes) => {
      got.push(...bytes);
    },
  });
  backend.out.write(text('to the reader'));
  // The FIFO buffers what we wrote until someone reads it.
  const { openSync, readSync, writeSync, closeSync, constants } = await import('node:fs');
  const reader = openSync(`${base}.out`, constants.O_RDONLY | constants.O_NONBLOCK);
  const buffer = Buffer.alloc(64);
  const n = readSync(reader, buffer);
  closeSync(reader);
  assert.is(buffer.subarray(0, n).toString(), 'to the reader');
  const writer = openSync(`${base}.in`, constants.O_WRONLY | constants.O_NONBLOCK);
  writeSync(writer, 'from the writer');
  closeSync(writer);
  await until('pipe input', () => got.length === 15);
  assert.is(Buffer.from(got).toString(), 'from the writer');
  await backend.close();
});

test('chardev: pipe: with nobody reading PATH.out, 1 MiB of output is written without blocking: the FIFO takes what fits, the rest is dropped and counted', async () => {
  const base = join(dir, 'unread');
  execFileSync('mkfifo', [`${base}.in`, `${base}.out`]);
  const backend = await openCharBackend(`pipe:${base}`);
  // A vCPU thread writes as the UART does, holding the machine lock; a blocking write(2) would never return.
  // The guard is only a hang guard (a blocked writer never finishes); the stall limit is 100 ms.
  const chunk = 'x'.repeat(4096);
  const wrote = writeFromWorker(backend.transferable(), chunk, 256).then(() => 'written' as const);
  const guard = sleep(HANG_GUARD_MS).then(() => 'still blocked' as const);
  assert.is(await Promise.race([wrote, guard]), 'written');
  assert.ok(backend.droppedBytes > 0, 'what did not fit was dropped');
  assert.ok(backend.droppedBytes < 1 << 20, 'what fits in the FIFO was kept');
  const { openSync, readSync, closeSync, constants } = await import('node:fs');
  const reader = openSync(`${base}.out`, constants.O_RDONLY | constants.O_NONBLOCK);
  const buffer = Buffer.alloc(1 << 20);
  const n = readSync(reader, buffer);
  closeSync(reader);
  assert.is(n + backend.droppedBytes, 1 << 20, 'every byte is either in the FIFO or counted as dropped');
  await backend.close();
});

test('chardev: pipe: a path that is not a FIFO is refused', async () => {
  const path = join(dir, 'plain');
  writeFileSync(path, '');
  try {
    await openCharBackend(`pipe:${path}`);
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /not a FIFO/);
  }
  assert.ok(statSync(path).isFile());
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
