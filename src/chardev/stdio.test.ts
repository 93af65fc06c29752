import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-stdio-'));
const backendUrl = new URL('./backend.js', import.meta.url).href;

// A child process whose stdio is the backend: it reports each input chunk as hex on stdout (through the backend's
// own CharOut, i.e. write(2) on fd 1), and closes the backend on 'q' or on Ctrl-a x.
const child = join(dir, 'child.mjs');
writeFileSync(
  child,
  `
  const { openCharBackend } = await import(${JSON.stringify(backendUrl)});
  const say = s => backend.out.write(new TextEncoder().encode(s + '\\n'));
  const finish = async why => {
    say(why + ' raw=' + !!process.stdin.isRaw);
    await backend.close();
    process.stderr.write('closed raw=' + !!process.stdin.isRaw + '\\n');
  };
  const backend = await openCharBackend('stdio', {
    onInput: bytes => {
      say('in ' + Buffer.from(bytes).toString('hex'));
      if (bytes.includes(0x71)) void finish('q');
    },
    onQuit: () => void finish('quit'),
  });
  say('READY tty=' + backend.isRawTerminal);
`,
);

function run(
  command: string,
  args: string[],
  input: (write: (s: string) => void, output: () => string) => Promise<void>,
) {
  const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  proc.stderr.on('data', (d) => {
    err += d;
  });
  const done = new Promise<number | null>((resolve) => proc.on('close', resolve));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000); // a hang guard: the child takes ~0.5 s here
  return input(
    (s) => proc.stdin.write(s),
    () => out,
  ).then(async () => {
    const code = await done;
    clearTimeout(timer);
    return { code, out: out.replace(/\r/g, ''), err: err.replace(/\r/g, '') };
  });
}

async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('chardev stdio: piped stdin reaches onInput unfiltered and output goes to stdout', async () => {
  const result = await run(process.execPath, [child], async (write, output) => {
    await until('READY', () => output().includes('READY'));
    write('a\x01xq');
  });
  assert.is(result.code, 0, result.err);
  assert.match(result.out, /READY tty=false/);
  assert.match(result.out, /in 6101787[1]/, 'Ctrl-a has no meaning when stdin is not a terminal');
});

const hasScript =
  spawnSync('script', ['--version']).status === 0 ? null : 'util-linux script(1) is not installed (needed for a pty)';

testIf(
  test,
  hasScript,
  'chardev stdio: on a terminal, raw mode, Ctrl-a Ctrl-a sends Ctrl-a, Ctrl-a x quits and the terminal is restored',
  async () => {
    const result = await run(
      'script',
      ['-qfec', `${process.execPath} ${child}`, '/dev/null'],
      async (write, output) => {
        await until('READY', () => output().includes('READY'));
        write('ab');
        await until('the first keys', () => output().includes('in 6162'));
        write('\x01\x01');
        await until('the escaped Ctrl-a', () => output().includes('in 01'));
        write('\x01x');
      },
    );
    assert.is(result.code, 0, result.out + result.err);
    assert.match(result.out, /READY tty=true/);
    assert.match(result.out, /in 6162\n/, 'raw mode: keys arrive without waiting for Enter');
    assert.match(result.out, /quit raw=true/);
    assert.match(result.out + result.err, /closed raw=false/);
  },
);

// A child that writes 1 MiB of guest output to stdout through the backend (as a vCPU holding the machine lock does)
// while nobody reads its stdout, then says on stderr what it wrote and dropped.
const flooder = join(dir, 'flooder.mjs');
writeFileSync(
  flooder,
  `
  const { openCharBackend } = await import(${JSON.stringify(backendUrl)});
  const backend = await openCharBackend('stdio');
  const chunk = new Uint8Array(4096).fill(0x41);
  for (let i = 0; i < 256; i++) backend.out.write(chunk);
  process.stderr.write('wrote 1048576 dropped ' + backend.droppedBytes + '\\n');
  await backend.close();
  process.exit(0);
`,
);

/** Runs the flooder with `stdout` as its fd 1; resolves with its stderr once it exits (or says it hung). */
function flood(stdout: 'pipe' | number): Promise<string> {
  const proc = spawn(process.execPath, [flooder], { stdio: ['ignore', stdout, 'pipe'] });
  proc.stdout?.pause(); // nobody reads: the socket and Node's buffer fill up
  let err = '';
  proc.stderr!.on('data', (d) => {
    err += d;
  });
  // A hang guard, not a budget: a blocked write(2) never returns.
  const guard = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    proc.on('close', (_code, signal) => {
      clearTimeout(guard);
      proc.stdout?.destroy();
      resolve(signal ? `hung (killed): ${err}` : err);
    }),
  );
}

test('chardev stdio: with stdout a pipe nobody reads, 1 MiB of output never blocks the writer; the excess is dropped and counted', async () => {
  const fifo = join(dir, 'unread-stdout');
  spawnSync('mkfifo', [fifo]);
  const { openSync, closeSync, constants } = await import('node:fs');
  const reader = openSync(fifo, constants.O_RDWR); // keeps the FIFO open, never reads
  try {
    const said = await flood(reader);
    const m = /wrote 1048576 dropped (\d+)/.exec(said);
    assert.ok(m, said);
    assert.ok(Number(m![1]) > 0, 'what did not fit in the pipe was dropped');
  } finally {
    closeSync(reader);
  }
});

test('chardev stdio: with stdout a socket nobody reads (a child_process pipe), 1 MiB of output never blocks the writer', async () => {
  const said = await flood('pipe');
  const m = /wrote 1048576 dropped (\d+)/.exec(said);
  assert.ok(m, said);
  assert.ok(Number(m![1]) > 0, 'what did not fit was dropped');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
