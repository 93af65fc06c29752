import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  QmpServer,
  QEMU_COMPAT_VERSION,
  MAX_MESSAGE_BYTES,
  defineCommand,
  type QmpHandlers,
  type QmpServerOptions,
} from './server.js';
import { QmpError } from './errors.js';
import { Q } from './qapi.js';
import { connectRaw, type RawClient } from './test-client.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-qmp-'));
let n = 0;
const socketPath = () => join(dir, `q${n++}.sock`);
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny machine: enough state for the handlers to be real. */
function machine() {
  const state = { running: false, stops: 0 };
  const handlers: QmpHandlers = {
    'query-status': () => ({ running: state.running, status: state.running ? 'running' : 'paused' }),
    stop: () => {
      state.running = false;
      state.stops++;
    },
    cont: () => {
      state.running = true;
    },
    'query-name': () => ({ name: 'vm0' }),
    'cpr-save': (args) => {
      if (args.mode !== 'reboot') throw new QmpError('GenericError', `mode '${args.mode}' is not supported`);
    },
  };
  return { state, handlers };
}

async function start(options: Partial<QmpServerOptions> = {}, spec?: string): Promise<QmpServer> {
  return QmpServer.listen(spec ?? `unix:${socketPath()},server,wait=off`, {
    version: '9.9.9-test',
    commands: machine().handlers,
    log: () => {},
    ...options,
  });
}

async function negotiated(server: QmpServer): Promise<RawClient> {
  const client = await connectRaw(server.path);
  await client.next(); // greeting
  assert.equal(await client.execute('qmp_capabilities'), { return: {} });
  return client;
}

const execLine = (command: string, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ execute: command, ...extra })}\n`;

test("qmp: the greeting is QEMU's, one line ending in CRLF, with tsvmm in package and no capabilities", async () => {
  const server = await start();
  const client = await connectRaw(server.path);
  const line = await client.nextLine();
  assert.is(
    line,
    '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "tsvmm 9.9.9-test"}, "capabilities": []}}',
  );
  assert.ok(client.received.endsWith('\r\n'));
  assert.equal(QEMU_COMPAT_VERSION, { major: 10, minor: 0, micro: 0 });
  client.close();
  await server.close();
});

test("qmp: before qmp_capabilities every other command is refused with QEMU's CommandNotFound text", async () => {
  const server = await start();
  const client = await connectRaw(server.path);
  await client.next();
  const refusal = { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" };
  assert.equal(await client.execute('query-status'), { error: refusal });
  assert.equal(await client.execute('query-commands', undefined, 'a'), { id: 'a', error: refusal });
  assert.equal(await client.execute('no-such-command'), { error: refusal });
  // Not a CommandNotFound, so not rewritten: a bad argument to qmp_capabilities itself.
  assert.equal(await client.execute('qmp_capabilities', { enable: 'oob' }), {
    error: { class: 'GenericError', desc: "Invalid parameter type for 'enable', expected: array" },
  });
  client.close();
  await server.close();
});

test('qmp: capability negotiation: oob is not offered, negotiation happens once, then commands run', async () => {
  const server = await start();
  const client = await connectRaw(server.path);
  await client.next();
  assert.equal(await client.execute('qmp_capabilities', { enable: ['oob'] }), {
    error: { class: 'GenericError', desc: 'Capability oob not available' },
  });
  assert.equal(await client.execute('qmp_capabilities', { enable: ['turbo'] }), {
    error: { class: 'GenericError', desc: "Parameter 'enable[0]' does not accept value 'turbo'" },
  });
  assert.equal((await client.execute('query-status')).error, {
    class: 'CommandNotFound',
    desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
  });
  assert.equal(await client.execute('qmp_capabilities', { enable: [] }, 1), { return: {}, id: 1 });
  assert.equal(await client.execute('qmp_capabilities', undefined, 2), {
    id: 2,
    error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
  });
  assert.equal(await client.execute('query-status'), { return: { running: false, status: 'paused' } });
  assert.equal(await client.execute('no-such-command'), {
    error: { class: 'CommandNotFound', desc: 'The command no-such-command has not been found' },
  });
  client.close();
  await server.close();
});

test('qmp: id is echoed verbatim: string, number, object, array, null, uint64, and on errors', async () => {
  const server = await start();
  const client = await negotiated(server);
  for (const id of ['abc', 7, -1.5, { a: [1, { b: 'c' }] }, [1, 'x'], null, true]) {
    assert.equal(await client.execute('query-name', undefined, id), { return: { name: 'vm0' }, id });
  }
  client.send('{"execute": "query-name", "id": 18446744073709551615}\n');
  assert.is(await client.nextLine(), '{"return": {"name": "vm0"}, "id": 18446744073709551615}');
  client.send('{"execute": "stop", "bogus": 1, "id": "x"}\n');
  assert.equal(await client.next(), {
    id: 'x',
    error: { class: 'GenericError', desc: "QMP input member 'bogus' is unexpected" },
  });
  client.send('{"id": {"k": 2}}\n');
  assert.equal(await client.next(), {
    id: { k: 2 },
    error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" },
  });
  client.close();
  await server.close();
});

test('qmp: every kind of malformed input gets an error reply and the connection keeps working', async () => {
  const server = await start();
  const client = await negotiated(server);
  const generic = (desc: string) => ({ error: { class: 'GenericError', desc } });
  const cases: Array<[string | Uint8Array, object]> = [
    ['{"execute" "x"}\n', generic('JSON parse error, missing : in object pair')],
    ['{"execute": query-status}\n', generic("JSON parse error, invalid keyword 'query'")],
    ['[1, 2]\n', generic('QMP input must be a JSON object')],
    ['"query-status"\n', generic('QMP input must be a JSON object')],
    ['42\n', generic('QMP input must be a JSON object')],
    ['null\n', generic('QMP input must be a JSON object')],
    ['{"arguments": {}}\n', generic("QMP input lacks member 'execute'")],
    ['{"execute": 1}\n', generic("QMP input member 'execute' must be a string")],
    ['{"execute": "stop", "arguments": []}\n', generic("QMP input member 'arguments' must be an object")],
    ['{"execute": "stop", "arguments": null}\n', generic("QMP input member 'arguments' must be an object")],
    ['{"exec-oob": "query-status"}\n', generic("QMP input member 'exec-oob' is unexpected")],
    ['{"execute": "stop", "arguments": {"now": true}}\n', generic("Parameter 'now' is unexpected")],
    ['{"execute": "cpr-save", "arguments": {"mode": "reboot"}}\n', generic("Parameter 'filename' is missing")],
    [
      '{"execute": "cpr-save", "arguments": {"filename": "/f", "mode": 1}}\n',
      generic("Invalid parameter type for 'mode', expected: string"),
    ],
    [
      '{"execute": "cpr-save", "arguments": {"filename": "/f", "mode": "restart"}}\n',
      generic("mode 'restart' is not supported"),
    ],
    [
      new Uint8Array([...Buffer.from('{"execute": "query-name", "id": "'), 0xc3, 0x28, ...Buffer.from('"}\n')]),
      generic('JSON parse error, invalid UTF-8 sequence in string'),
    ],
    [new Uint8Array([0xff]), generic('JSON parse error, stray byte 0xff')],
    ['}\n', generic('JSON parse error, expecting value')],
    ['{"execute": "query-status", "id": 1, "id": 2}\n', generic('JSON parse error, duplicate key')],
  ];
  for (const [input, reply] of cases) {
    client.send(input);
    assert.equal(await client.next(), reply, `reply to ${JSON.stringify(Buffer.from(input).toString('latin1'))}`);
    assert.equal(await client.execute('query-status', undefined, 'still-ok'), {
      return: { running: false, status: 'paused' },
      id: 'still-ok',
    });
  }
  client.close();
  await server.close();
});

test('qmp: a message over 1 MiB is one error; input is dropped to the next newline and the next command works', async () => {
  const server = await start();
  const client = await negotiated(server);
  const chunk = 'x'.repeat(256 * 1024);
  client.send('{"execute": "query-name", "id": "');
  for (let i = 0; i < 8; i++) client.send(chunk); // 2 MiB in pieces
  client.send('"}\n{"execute": "query-name", "id": "after"}\n');
  assert.equal(await client.next(), {
    error: {
      class: 'GenericError',
      desc: `JSON parse error, message larger than ${MAX_MESSAGE_BYTES} bytes; input dropped up to the next newline`,
    },
  });
  assert.equal(await client.next(), { return: { name: 'vm0' }, id: 'after' });
  // Just under the limit is fine and comes back whole.
  const id = 'y'.repeat(MAX_MESSAGE_BYTES - 64);
  assert.equal(await client.execute('query-name', undefined, id), { return: { name: 'vm0' }, id });
  client.close();
  await server.close();
});

test('qmp: JSON split across packets and several messages per packet are answered in order', async () => {
  const server = await start();
  const client = await negotiated(server);
  const text = execLine('query-name', { id: 'split' });
  for (const ch of text) {
    client.send(ch);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(await client.next(), { return: { name: 'vm0' }, id: 'split' });
  client.send(
    '{"execute":"cont","id":1}{"execute":"query-status","id":2}\r\n{"execute":"stop","id":3} {"execute":"query-status","id":4}\n',
  );
  assert.equal(await client.next(), { return: {}, id: 1 });
  assert.equal(await client.next(), { return: { running: true, status: 'running' }, id: 2 });
  assert.equal(await client.next(), { return: {}, id: 3 });
  assert.equal(await client.next(), { return: { running: false, status: 'paused' }, id: 4 });
  // A request spread over lines, as a person might type it into socat.
  client.send('{\n  "execute": "query-name",\n  "id": "multi"\n}\n');
  assert.equal(await client.next(), { return: { name: 'vm0' }, id: 'multi' });
  client.close();
  await server.close();
});

test("qmp: events reach negotiated clients only, with QEMU's timestamp format", async () => {
  const server = await start();
  const listening = await negotiated(server);
  const fresh = await connectRaw(server.path);
  await fresh.next();
  const before = Date.now();
  server.emit('STOP');
  server.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
  const after = Date.now();
  const stopLine = await listening.nextLine();
  assert.match(stopLine, /^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "STOP"\}$/);
  const stop = JSON.parse(stopLine) as { timestamp: { seconds: number; microseconds: number } };
  const ms = stop.timestamp.seconds * 1000 + stop.timestamp.microseconds / 1000;
  assert.ok(ms >= before - 50 && ms <= after + 50, `timestamp ${ms} within [${before}, ${after}]`);
  assert.ok(
    Number.isInteger(stop.timestamp.microseconds) &&
      stop.timestamp.microseconds >= 0 &&
      stop.timestamp.microseconds < 1_000_000,
  );
  const shutdown = await listening.next();
  assert.equal(shutdown.data, { guest: false, reason: 'host-qmp-quit' });
  assert.is(shutdown.event, 'SHUTDOWN');
  assert.ok(await fresh.silentFor(100), 'an un-negotiated client receives no events');
  // Once it negotiates, it gets the next ones.
  assert.equal(await fresh.execute('qmp_capabilities'), { return: {} });
  server.emit('RESUME');
  assert.is((await fresh.next()).event, 'RESUME');
  assert.is((await listening.next()).event, 'RESUME');
  listening.close();
  fresh.close();
  await server.close();
});

test('qmp: event timestamps come from the clock the machine passes (CLOCK_REALTIME ns)', async () => {
  const server = await start({ realtimeNs: () => 1_700_000_000_123_456_789n });
  const client = await negotiated(server);
  server.emit('MIGRATION', { status: 'completed' });
  assert.is(
    await client.nextLine(),
    '{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "MIGRATION", "data": {"status": "completed"}}',
  );
  client.close();
  await server.close();
});

test("qmp: an event emitted by a handler goes out before that command's reply, as in QEMU", async () => {
  let server!: QmpServer;
  server = await start({
    commands: {
      stop: () => {
        server.emit('STOP');
      },
    },
  });
  const client = await negotiated(server);
  client.send(execLine('stop', { id: 's' }));
  assert.is((await client.next()).event, 'STOP');
  assert.equal(await client.next(), { return: {}, id: 's' });
  client.close();
  await server.close();
});

test('qmp: the socket is created with mode 0600 whatever the umask, and removed on close', async () => {
  const path = socketPath();
  const oldMask = process.umask(0);
  let server: QmpServer;
  try {
    server = await start({}, `unix:${path},server=on,wait=off`);
  } finally {
    process.umask(oldMask);
  }
  const stat = lstatSync(path);
  assert.ok(stat.isSocket());
  assert.is(stat.mode & 0o777, 0o600);
  assert.equal(
    readdirSync(dir).filter((f) => f.startsWith('.')),
    [],
    'no private bind directory is left behind',
  );
  await server.close();
  assert.is(existsSync(path), false);
});

test('qmp: a socket file already at the path is replaced; any other file is refused and left alone', async () => {
  const stalePath = socketPath();
  const stale = net.createServer();
  await new Promise<void>((resolve) => stale.listen(stalePath, resolve));
  const staleIno = lstatSync(stalePath).ino;
  const server = await start({}, `unix:${stalePath},server,wait=off`);
  assert.is.not(lstatSync(stalePath).ino, staleIno);
  const client = await connectRaw(stalePath);
  assert.ok('QMP' in (await client.next()));
  client.close();
  await server.close();
  await new Promise<void>((resolve) => stale.close(() => resolve()));

  const filePath = socketPath();
  writeFileSync(filePath, 'precious');
  try {
    await start({}, `unix:${filePath},server,wait=off`);
    assert.unreachable('a regular file must not be replaced');
  } catch (e) {
    assert.match((e as Error).message, /exists and is not a socket; refusing to replace it/);
  }
  assert.is(readFileSync(filePath, 'utf8'), 'precious');
  const dirPath = socketPath();
  mkdirSync(dirPath);
  await start({}, `unix:${dirPath},server,wait=off`).then(
    () => assert.unreachable('a directory must not be replaced'),
    (e) => assert.match(String(e), /not a socket/),
  );
  assert.equal(
    readdirSync(dir).filter((f) => f.startsWith('.')),
    [],
  );
});

test('qmp: closing an old server leaves alone the socket of a new server that took over its path', async () => {
  const path = socketPath();
  const oldServer = await start({}, `unix:${path},server,wait=off`);
  const newServer = await start({}, `unix:${path},server,wait=off`); // e.g. the new process in a CPR flow
  await oldServer.close();
  assert.ok(existsSync(path), "the new server's socket is still there");
  const client = await connectRaw(path);
  assert.ok('QMP' in (await client.next()));
  client.close();
  await newServer.close();
  assert.is(existsSync(path), false);
});

test('qmp: two clients at once, each with its own negotiation and its own replies', async () => {
  const server = await start();
  const a = await connectRaw(server.path);
  const b = await connectRaw(server.path);
  await a.next();
  await b.next();
  assert.equal(await a.execute('qmp_capabilities'), { return: {} });
  assert.equal((await b.execute('query-status')).error, {
    class: 'CommandNotFound',
    desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
  });
  assert.equal(await b.execute('qmp_capabilities'), { return: {} });
  a.send(execLine('cont', { id: 'a1' }));
  b.send(execLine('query-name', { id: 'b1' }));
  a.send(execLine('query-status', { id: 'a2' }));
  assert.equal(await b.next(), { return: { name: 'vm0' }, id: 'b1' });
  assert.equal(await a.next(), { return: {}, id: 'a1' });
  assert.equal(await a.next(), { return: { running: true, status: 'running' }, id: 'a2' });
  assert.is(server.clientCount, 2);
  a.close();
  b.close();
  await server.close();
});

test("qmp: one command runs at a time across clients, and each client's replies keep its request order", async () => {
  let active = 0;
  let maxActive = 0;
  const order: string[] = [];
  const slow = async (label: string, ms: number) => {
    active++;
    maxActive = Math.max(maxActive, active);
    await sleep(ms);
    order.push(label);
    active--;
  };
  const server = await start({
    commands: {
      stop: () => slow('stop', 30),
      cont: () => slow('cont', 1),
      'query-name': () => ({ name: 'n' }),
    },
  });
  const a = await negotiated(server);
  const b = await negotiated(server);
  a.send(execLine('stop', { id: 1 }) + execLine('query-name', { id: 2 }));
  b.send(execLine('cont', { id: 3 }));
  assert.equal(await a.next(), { return: {}, id: 1 });
  assert.equal(await a.next(), { return: { name: 'n' }, id: 2 });
  assert.equal(await b.next(), { return: {}, id: 3 });
  assert.is(maxActive, 1);
  assert.equal(order, ['stop', 'cont']);
  a.close();
  b.close();
  await server.close();
});

test('qmp: a client that disconnects mid-command does not crash the server, and its command still completes', async () => {
  let release!: () => void;
  let ran = false;
  const server = await start({
    commands: {
      stop: async () => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        ran = true;
      },
      'query-name': () => ({ name: 'vm0' }),
    },
  });
  const leaving = await negotiated(server);
  leaving.send(execLine('stop', { id: 'gone' }));
  while (release === undefined) await sleep(2);
  leaving.close();
  await sleep(20);
  release();
  await sleep(20);
  assert.ok(ran);
  // Half a message and then a hard close.
  const partial = await negotiated(server);
  partial.send('{"execute": "query-na');
  await sleep(10);
  partial.close();
  const other = await negotiated(server);
  assert.equal(await other.execute('query-name'), { return: { name: 'vm0' } });
  other.close();
  await server.close();
});

test('qmp: a client that half-closes after its requests still gets every reply', async () => {
  const server = await start();
  const client = await connectRaw(server.path);
  await client.next();
  client.socket.end(
    execLine('qmp_capabilities', { id: 1 }) + execLine('cont', { id: 2 }) + execLine('query-status', { id: 3 }),
  );
  assert.equal(await client.next(), { return: {}, id: 1 });
  assert.equal(await client.next(), { return: {}, id: 2 });
  assert.equal(await client.next(), { return: { running: true, status: 'running' }, id: 3 });
  for (let i = 0; i < 100 && !client.closed; i++) await sleep(5);
  assert.ok(client.closed, 'the server closes its side once the replies are out');
  await server.close();
});

test('qmp: many requests at once from one client are all answered, in order', async () => {
  const server = await start({
    commands: {
      'query-name': async () => {
        await sleep(1);
        return { name: 'x' };
      },
    },
  });
  const client = await negotiated(server);
  let batch = '';
  for (let i = 0; i < 200; i++) batch += execLine('query-name', { id: i });
  client.send(batch);
  for (let i = 0; i < 200; i++) assert.equal(await client.next(), { return: { name: 'x' }, id: i });
  client.close();
  await server.close();
});

test('qmp: handler errors: QmpError keeps its class, other exceptions become GenericError, unsendable results are errors', async () => {
  const logged: string[] = [];
  const server = await start({
    log: (line) => logged.push(line),
    commands: {
      system_wakeup: () => {
        throw new QmpError('DeviceNotActive', 'the guest is not suspended');
      },
      'query-kvm': () => {
        throw new QmpError('KVMMissingCap', 'no');
      },
      system_reset: () => {
        throw new Error('boom');
      },
      'query-cpus-fast': async () => {
        throw new TypeError('async boom');
      },
      'query-name': () => ({ name: Number.NaN as unknown as string }),
      'query-status': () => ({ running: false, status: 'prelaunch' }),
    },
  });
  const client = await negotiated(server);
  assert.equal(await client.execute('system_wakeup', undefined, 1), {
    id: 1,
    error: { class: 'DeviceNotActive', desc: 'the guest is not suspended' },
  });
  assert.equal(await client.execute('query-kvm'), { error: { class: 'KVMMissingCap', desc: 'no' } });
  assert.equal(await client.execute('system_reset'), { error: { class: 'GenericError', desc: 'boom' } });
  assert.equal(await client.execute('query-cpus-fast'), { error: { class: 'GenericError', desc: 'async boom' } });
  const bad = await client.execute('query-name', undefined, 'nan');
  assert.is(bad.id, 'nan');
  assert.match((bad.error as { desc: string }).desc, /cannot be sent/);
  assert.equal(await client.execute('query-status'), { return: { running: false, status: 'prelaunch' } });
  assert.ok(
    logged.some((l) => l.includes('boom')),
    'an unexpected exception is logged with its stack',
  );
  client.close();
  await server.close();
});

test('qmp: quit answers first; afterReply then runs the shutdown', async () => {
  let server!: QmpServer;
  server = await start({
    commands: {
      quit: (_args, ctx) => {
        ctx.afterReply(() => {
          server.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
          void server.close();
        });
      },
    },
  });
  const client = await negotiated(server);
  client.send(execLine('quit', { id: 'q' }));
  assert.equal(await client.next(), { return: {}, id: 'q' }, 'the reply comes before anything the shutdown does');
  assert.is((await client.next()).event, 'SHUTDOWN');
  for (let i = 0; i < 100 && !client.closed; i++) await sleep(5);
  assert.ok(client.closed);
  assert.is(existsSync(server.path), false);
});

test('qmp: query-commands lists exactly the registered commands; a schema command without a handler does not exist', async () => {
  const server = await start({ commands: { 'query-status': () => ({ running: true, status: 'running' }) } });
  const client = await negotiated(server);
  assert.equal(await client.execute('query-commands'), {
    return: [
      { name: 'qmp_capabilities' },
      { name: 'query-commands' },
      { name: 'query-version' },
      { name: 'getfd' },
      { name: 'closefd' },
      { name: 'query-status' },
    ],
  });
  assert.equal(await client.execute('stop'), {
    error: { class: 'CommandNotFound', desc: 'The command stop has not been found' },
  });
  assert.equal(await client.execute('query-version'), {
    return: { qemu: { micro: 0, minor: 0, major: 10 }, package: 'tsvmm 9.9.9-test' },
  });
  client.close();
  await server.close();
});

test('qmp: extra commands are validated against their own schema', async () => {
  const server = await start({
    extraCommands: {
      'x-tsvmm-echo': defineCommand({ text: Q.str, '*times': Q.uint8 }, (args) => ({
        text: args.text.repeat(args.times ?? 1),
      })),
    },
  });
  const client = await negotiated(server);
  assert.equal(await client.execute('x-tsvmm-echo', { text: 'ab', times: 2 }), { return: { text: 'abab' } });
  assert.equal(await client.execute('x-tsvmm-echo', { times: 2 }), {
    error: { class: 'GenericError', desc: "Parameter 'text' is missing" },
  });
  assert.ok(
    ((await client.execute('query-commands')) as { return: Array<{ name: string }> }).return.some(
      (c) => c.name === 'x-tsvmm-echo',
    ),
  );
  client.close();
  await server.close();
});

test('qmp: registering an unknown or built-in command is a programming error caught at start', async () => {
  await start({ commands: { ['made-up' as 'stop']: () => {} } }).then(
    () => assert.unreachable(),
    (e) => assert.match(String(e), /not in schema.ts/),
  );
  await start({ extraCommands: { stop: defineCommand({}, () => {}) } }).then(
    () => assert.unreachable(),
    (e) => assert.match(String(e), /clashes/),
  );
});

test('qmp: wait=on: firstClient resolves only when a client connects', async () => {
  const logged: string[] = [];
  const path = socketPath();
  const server = await QmpServer.listen(`unix:${path},server`, {
    version: 't',
    commands: {},
    log: (l) => logged.push(l),
  });
  assert.is(server.wait, true);
  assert.ok(logged.some((l) => l.includes('waiting for a QMP connection')));
  let connected = false;
  void server.firstClient.then(() => {
    connected = true;
  });
  await sleep(30);
  assert.is(connected, false);
  const client = await connectRaw(path);
  await client.next();
  await sleep(5);
  assert.is(connected, true);
  client.close();
  await server.close();
});

test('qmp: a client that stops reading is disconnected once 16 MiB wait for it; the server carries on', async () => {
  const logged: string[] = [];
  const server = await start({
    log: (line) => logged.push(line),
    extraCommands: { 'x-big': defineCommand({}, () => ({ blob: 'z'.repeat(1024 * 1024) })) },
  });
  const hog = await negotiated(server);
  hog.socket.pause();
  let batch = '';
  for (let i = 0; i < 40; i++) batch += execLine('x-big');
  hog.send(batch);
  // ~0.5 s here (building 40 MiB of replies); 30 s is only a hang guard.
  for (const end = Date.now() + 30_000; server.clientCount > 0 && Date.now() < end; ) await sleep(10);
  assert.is(server.clientCount, 0);
  assert.ok(
    logged.some((l) => /not reading its replies/.test(l)),
    logged.join('\n'),
  );
  const other = await negotiated(server);
  assert.equal(await other.execute('query-name'), { return: { name: 'vm0' } });
  other.close();
  hog.close();
  await server.close();
});

test('qmp: close() ends connected clients and is idempotent', async () => {
  const server = await start();
  const client = await negotiated(server);
  await Promise.all([server.close(), server.close()]);
  for (let i = 0; i < 100 && !client.closed; i++) await sleep(5);
  assert.ok(client.closed);
  assert.is(server.clientCount, 0);
});

test.run();
