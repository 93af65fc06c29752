// QMP as programs other than our own test client see it: socat (a person at a terminal), a raw-socket Python
// client (what qemu.qmp and libvirt do underneath), and QEMU itself as the reference: when qemu-system-x86_64 is
// installed, the same bytes are sent to QEMU and to tsvmm and the reply lines must be identical.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { testIf } from '../../test/support/skip.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { QmpServer } from './server.js';
import { connectRaw, type RawClient } from './test-client.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-qmp-ext-'));
let n = 0;
const socketPath = () => join(dir, `e${n++}.sock`);
test.after(() => rmSync(dir, { recursive: true, force: true }));

const has = (program: string) => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
const noSocat = has('socat') ? null : 'socat is not installed (apt-get install socat)';
const noPython = has('python3') ? null : 'python3 is not installed';
const noQemu = has('qemu-system-x86_64')
  ? null
  : 'qemu-system-x86_64 is not installed: no reference QEMU to compare with';

/** A server whose handlers behave like QEMU's for the commands the comparison uses. */
async function serve(path = socketPath()): Promise<QmpServer> {
  let running = false;
  let server!: QmpServer;
  server = await QmpServer.listen(`unix:${path},server=on,wait=off`, {
    version: 'test',
    log: () => {},
    commands: {
      'query-status': () => ({ running, status: running ? 'running' : 'prelaunch' }),
      cont: () => {
        running = true;
        server.emit('RESUME');
      },
      stop: () => {
        if (running) {
          running = false;
          server.emit('STOP');
        }
      },
      'query-name': () => ({ name: 'vm0' }),
      'migrate-set-parameters': () => {},
      'migrate-set-capabilities': () => {},
      migrate: () => {},
    },
  });
  return server;
}

function run(program: string, args: string[], input: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(program, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${program} failed: ${error.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

testIf(
  test,
  noSocat,
  'qmp external: socat as a client by hand: greeting, negotiation, a query, replies on their own lines',
  async () => {
    const server = await serve();
    // socat ends its input with a half-close; the server answers everything before closing its side.
    const { stdout } = await run(
      'socat',
      ['-t', '5', '-', `UNIX-CONNECT:${server.path}`],
      '{ "execute": "qmp_capabilities" }\n{ "execute": "query-status", "id": "s1" }\n{ "execute": "cont" }\n',
    );
    const lines = stdout.split('\r\n');
    assert.is(lines.pop(), '');
    assert.match(lines[0], /^\{"QMP": \{"version": \{"qemu": \{"micro": 0, "minor": 0, "major": 10\}/);
    assert.is(lines[1], '{"return": {}}');
    assert.is(lines[2], '{"return": {"running": false, "status": "prelaunch"}, "id": "s1"}');
    assert.match(lines[3], /^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "RESUME"\}$/);
    assert.is(lines[4], '{"return": {}}');
    await server.close();
  },
);

const PYTHON_CLIENT = String.raw`
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile('rwb', buffering=0)
def read():
    line = f.readline()
    assert line.endswith(b'\r\n'), line
    return json.loads(line)
def send(obj, **kw):
    f.write(json.dumps(obj, **kw).encode() + b'\n')
out = {'greeting': read()}
send({'execute': 'qmp_capabilities', 'id': 'py-1'})
out['negotiated'] = read()
send({'execute': 'query-status', 'id': {'seq': 2}}, indent=2)   # a multi-line request
out['status'] = read()
send({'execute': 'cont'})
out['resume'] = read(); out['cont'] = read()
send({'execute': 'migrate-set-capabilities', 'arguments': {'capabilities': [{'capability': 'x-ignore-shared', 'state': 'yes'}]}})
out['bad'] = read()
print(json.dumps(out))
`;

testIf(
  test,
  noPython,
  'qmp external: a raw-socket Python client parses every line with json and gets what QEMU would send',
  async () => {
    const server = await serve();
    const { stdout } = await run('python3', ['-c', PYTHON_CLIENT, server.path], '');
    const out = JSON.parse(stdout) as Record<string, Record<string, unknown>>;
    assert.equal(out.greeting, {
      QMP: { version: { qemu: { micro: 0, minor: 0, major: 10 }, package: 'tsvmm test' }, capabilities: [] },
    });
    assert.equal(out.negotiated, { return: {}, id: 'py-1' });
    assert.equal(out.status, { return: { running: false, status: 'prelaunch' }, id: { seq: 2 } });
    assert.is(out.resume.event, 'RESUME');
    assert.equal(out.cont, { return: {} });
    assert.equal(out.bad, {
      error: { class: 'GenericError', desc: "Invalid parameter type for 'capabilities[0].state', expected: boolean" },
    });
    await server.close();
  },
);

/**
 * Inputs for which tsvmm must answer exactly as QEMU does, byte for byte (QEMU 7.2 or later: the messages used
 * here have not changed since). Each is followed by a sentinel request, and everything before its reply is compared.
 */
const SAME_AS_QEMU: Array<string | Buffer> = [
  '{"execute": "query-status"}',
  '{"execute": "nope", "id": 1}',
  '{"execute": "qmp_capabilities", "id": "neg"}',
  '{"execute": "qmp_capabilities"}',
  '{"execute": "nope", "id": {"a": [1, "b"]}}',
  '[1, 2]',
  '42',
  '"str"',
  'null',
  '{"foo": 1}',
  '{"id": 5}',
  '{"execute": 1}',
  '{"execute": "stop", "arguments": []}',
  '{"execute": "stop", "bogus": 1, "id": "x"}',
  '{"execute": "stop", "arguments": {"x": 1}}',
  '{"exec-oob": "query-name"}',
  '{"execute": "query-name", "exec-oob": "stop"}',
  '{"execute" "x"}',
  '{"execute": foo}',
  '}',
  '@@@ {"execute": "query-name", "id": "z"}',
  '{"execute": "query-name", "id": "x"} garbage',
  '{"execute": "query-name", "id": 1, "id": 2}',
  Buffer.from([...Buffer.from('{"execute": "query-name", "id": "'), 0xc3, 0x28, ...Buffer.from('"}')]),
  Buffer.from('{"execute": "query-name", "id": "\u00e9 \\u00e9 \\ud83d\\ude00 a\\u0000b"}', 'utf8'),
  '{"execute": "query-name", "id": "\\ud800"}',
  '{"execute": "query-name", "id": 18446744073709551615}',
  "{'execute': 'query-name', 'id': 'single'}",
  '{"execute":\n"query-name",\n"id": "lines"\n}',
  '{"execute": "query-name", "id": "b1"}{"execute": "query-name", "id": "b2"}',
  '{"execute": "query-name"}',
  '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "x-ignore-shared", "state": 1}]}}',
  '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "x-ignore-shared"}]}}',
  '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": {}}}',
  '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": "x"}}',
  '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1.5}}',
  '{"execute": "migrate-set-parameters", "arguments": {"cpu-throttle-initial": 300}}',
  '{"execute": "migrate-set-parameters", "arguments": {"tls-creds": 5}}',
  '{"execute": "migrate", "arguments": {"uri": 1}}',
  '{"execute": "stop", "arguments": {}}',
];

/**
 * Connects once the socket listens. QEMU creates its socket file (bind) a moment before it listens, and a connect in
 * between is refused: on a loaded machine startQemu's wait for the file ends inside that window.
 */
async function connectWhenListening(path: string): Promise<RawClient> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    try {
      return await connectRaw(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > deadline) throw e;
      await sleep(10);
    }
  }
}

async function transcript(path: string): Promise<string[]> {
  const client: RawClient = await connectWhenListening(path);
  const lines: string[] = [];
  await client.nextLine(10_000); // greetings differ by design
  for (const input of SAME_AS_QEMU) {
    client.send(input);
    // The sentinel is answered with its id both before negotiation (an error) and after (a return).
    client.send('\n{"execute": "query-name", "id": "sentinel"}\n');
    for (;;) {
      const line = await client.nextLine();
      if (line.includes('"id": "sentinel"')) break;
      lines.push(`${Buffer.from(input).toString('latin1')}  =>  ${line}`);
    }
  }
  client.close();
  return lines;
}

async function startQemu(path: string): Promise<ChildProcess> {
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'none',
      '-display',
      'none',
      '-nodefaults',
      '-S',
      '-name',
      'vm0',
      '-qmp',
      `unix:${path},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  qemu.stderr?.on('data', (d) => {
    stderr += d;
  });
  for (let i = 0; i < 500 && !existsSync(path); i++) {
    if (qemu.exitCode !== null) throw new Error(`qemu exited: ${stderr}`);
    await sleep(10);
  }
  if (!existsSync(path)) throw new Error(`qemu did not create its QMP socket: ${stderr}`);
  return qemu;
}

testIf(
  test,
  noQemu,
  `qmp conformance: for ${SAME_AS_QEMU.length} requests, valid and malformed, tsvmm's reply lines are byte-identical to QEMU's`,
  async () => {
    const qemuPath = socketPath();
    const qemu = await startQemu(qemuPath);
    let reference: string[];
    try {
      reference = await transcript(qemuPath);
    } finally {
      qemu.kill('SIGKILL');
    }
    const server = await serve();
    const ours = await transcript(server.path);
    await server.close();
    assert.ok(reference.length >= SAME_AS_QEMU.length, `QEMU answered ${reference.length} lines`);
    for (let i = 0; i < Math.max(ours.length, reference.length); i++) assert.is(ours[i], reference[i]);
  },
);

test.run();
