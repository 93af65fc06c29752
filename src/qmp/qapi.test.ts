import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Q, validateArguments, type Members } from './qapi.js';
import { QmpError } from './errors.js';
import { QMP_COMMANDS, type QmpCommandArgs } from './schema.js';

function refused(members: Members, args: Record<string, unknown>, desc: string): void {
  try {
    validateArguments(members, args);
  } catch (e) {
    assert.instance(e, QmpError);
    assert.is((e as QmpError).errorClass, 'GenericError');
    assert.is((e as QmpError).desc, desc);
    return;
  }
  assert.unreachable(`expected: ${desc}`);
}

const cprSave = QMP_COMMANDS['cpr-save'].args;
const setCaps = QMP_COMMANDS['migrate-set-capabilities'].args;
const setParams = QMP_COMMANDS['migrate-set-parameters'].args;
const migrate = QMP_COMMANDS.migrate.args;

test("qapi: a missing member, a wrong type and an unknown member are reported in QEMU's words", () => {
  refused(cprSave, { mode: 'reboot' }, "Parameter 'filename' is missing");
  refused(cprSave, { filename: 'f', mode: 1 }, "Invalid parameter type for 'mode', expected: string");
  refused(cprSave, { filename: 'f', mode: 'reboot', x: 1 }, "Parameter 'x' is unexpected");
  refused({}, { x: 1 }, "Parameter 'x' is unexpected");
});

test('qapi: checks run in schema order and unexpected members come last, as in QEMU', () => {
  refused(cprSave, { x: 1, mode: 2 }, "Parameter 'filename' is missing");
  refused(cprSave, { x: 1, filename: 'f', mode: 2 }, "Invalid parameter type for 'mode', expected: string");
});

test("qapi: nested members are named with QEMU's paths", () => {
  refused(
    setCaps,
    { capabilities: [{ capability: 'foo', state: true }] },
    "Parameter 'capabilities[0].capability' does not accept value 'foo'",
  );
  refused(
    setCaps,
    {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'x-ignore-shared', state: 1 },
      ],
    },
    "Invalid parameter type for 'capabilities[1].state', expected: boolean",
  );
  refused(
    setCaps,
    { capabilities: [{ capability: 'x-ignore-shared' }] },
    "Parameter 'capabilities[0].state' is missing",
  );
  refused(setCaps, { capabilities: {} }, "Invalid parameter type for 'capabilities', expected: array");
  refused(setCaps, { capabilities: ['x'] }, "Invalid parameter type for 'capabilities[0]', expected: object");
});

test("qapi: integer types: QEMU's messages for wrong types and ranges", () => {
  refused(setParams, { 'max-bandwidth': 'x' }, "Parameter 'max-bandwidth' expects uint64");
  refused(setParams, { 'max-bandwidth': 1.5 }, "Parameter 'max-bandwidth' expects uint64");
  refused(setParams, { 'max-bandwidth': -1 }, "Parameter 'max-bandwidth' expects uint64");
  refused(setParams, { 'cpu-throttle-initial': 300 }, "Parameter 'cpu-throttle-initial' expects uint8_t");
  refused({ n: Q.int }, { n: 'x' }, "Invalid parameter type for 'n', expected: integer");
  refused({ n: Q.int }, { n: 2 ** 70 }, "Invalid parameter type for 'n', expected: integer");
  refused({ n: Q.int8 }, { n: 200 }, "Parameter 'n' expects int8_t");
  assert.equal(validateArguments(setParams, { 'max-bandwidth': 18446744073709551615n, 'cpu-throttle-initial': 255 }), {
    'max-bandwidth': Number(18446744073709551615n), // the nearest double, 2 ** 64
    'cpu-throttle-initial': 255,
  });
});

test('qapi: number, bool, null, any and alternates', () => {
  refused({ f: Q.number }, { f: '1' }, "Invalid parameter type for 'f', expected: number");
  assert.equal(validateArguments({ f: Q.number }, { f: 3 }), { f: 3 });
  refused({ b: Q.bool }, { b: 'true' }, "Invalid parameter type for 'b', expected: boolean");
  refused(setParams, { 'tls-creds': 5 }, "Invalid parameter type for 'tls-creds', expected: StrOrNull");
  assert.equal(validateArguments(setParams, { 'tls-creds': null, 'tls-authz': 'x' }), {
    'tls-creds': null,
    'tls-authz': 'x',
  });
  assert.equal(validateArguments({ v: Q.any }, { v: { deep: [1] } }), { v: { deep: [1] } });
});

test('qapi: optional members may be absent but not null', () => {
  assert.equal(validateArguments(migrate, {}), {});
  refused(migrate, { uri: null }, "Invalid parameter type for 'uri', expected: string");
});

test('qapi: flat unions pick their variant members by the discriminator, nested as in MigrationAddress', () => {
  const channel = (addr: Record<string, unknown>) => ({ channels: [{ 'channel-type': 'cpr', addr }] });
  const ok = validateArguments(migrate, channel({ transport: 'socket', type: 'unix', path: '/run/cpr.sock' }));
  assert.equal(ok, channel({ transport: 'socket', type: 'unix', path: '/run/cpr.sock' }));
  assert.equal(
    validateArguments(migrate, channel({ transport: 'file', filename: '/f', offset: 0 })),
    channel({ transport: 'file', filename: '/f', offset: 0 }),
  );
  refused(migrate, channel({ transport: 'socket' }), "Parameter 'channels[0].addr.type' is missing");
  refused(
    migrate,
    channel({ transport: 'pigeon' }),
    "Parameter 'channels[0].addr.transport' does not accept value 'pigeon'",
  );
  refused(migrate, channel({ transport: 'file', filename: 'x' }), "Parameter 'channels[0].addr.offset' is missing");
  refused(
    migrate,
    channel({ transport: 'socket', type: 'unix', path: 'x', host: 'h' }),
    "Parameter 'channels[0].addr.host' is unexpected",
  );
  refused(
    migrate,
    { channels: [{ 'channel-type': 'side', addr: {} }] },
    "Parameter 'channels[0].channel-type' does not accept value 'side'",
  );
});

test('qapi: validated arguments hold only schema members and no inherited ones', () => {
  const input = JSON.parse('{"filename": "f", "mode": "reboot"}') as Record<string, unknown>;
  const out = validateArguments(cprSave, input);
  assert.equal(out, { filename: 'f', mode: 'reboot' });
  assert.is.not(out, input);
  refused(cprSave, JSON.parse('{"filename": "f", "mode": "m", "__proto__": 1}'), "Parameter '__proto__' is unexpected");
  refused(cprSave, { mode: 'm', toString: 'x' }, "Parameter 'filename' is missing");
});

test('qapi: argument types follow from the schema (compile-time checks)', () => {
  const save: QmpCommandArgs<'cpr-save'> = { filename: '/f', mode: 'reboot' };
  // @ts-expect-error filename is required
  const noFile: QmpCommandArgs<'cpr-save'> = { mode: 'reboot' };
  const params: QmpCommandArgs<'migrate-set-parameters'> = { mode: 'cpr-transfer', 'tls-creds': null };
  // @ts-expect-error not a MigMode
  const badMode: QmpCommandArgs<'migrate-set-parameters'> = { mode: 'cpr-luo' };
  const mig: QmpCommandArgs<'migrate'> = {
    channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/s' } }],
  };
  const badAddr: QmpCommandArgs<'migrate'> = {
    // @ts-expect-error a unix socket address has no host
    channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', host: 'h' } }],
  };
  assert.ok([save, noFile, params, badMode, mig, badAddr].length === 6);
});

test.run();
