// QMP migrate / migrate-incoming with fd: and exec: URIs, natively: the refusals that come before any guest state
// is touched, and who owns a descriptor passed with getfd once migrate has taken it. The machine is a stand-in
// whose state cannot be saved (no KVM here); saving and loading a real guest over these URIs is
// cpr/flows/stream-uris.test.ts, in the rig.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpServer } from './server.js';
import { machineCommands } from './machine-commands.js';
import { connectRaw, type RawClient } from './test-client.js';
import { MigrationController } from '../../cpr/flows/migration.js';
import { CprError } from '../../cpr/flows/cpr-error.js';
import { PhaseClock } from '../../cpr/flows/timings.js';
import type { Machine } from '../machine/machine.js';
import { close } from '../sys/libc.js';
import { MSG_DONTWAIT, receiveWithFds, sendWithFds, socketPair } from '../sys/socket.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-migrate-uris-'));
let n = 0;
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A machine that runs and whose RAM cannot be looked at: any save of it fails, with this message. */
const UNSAVABLE = 'stand-in machine: nothing to save';
function standIn(runState: 'running' | 'inmigrate'): Machine {
  return {
    runState,
    running: runState === 'running',
    parts: () => ({
      config: { vfio: [], memory: { size: 64 << 20 } },
      get ram(): never {
        throw new CprError(UNSAVABLE);
      },
    }),
  } as unknown as Machine;
}

async function start(runState: 'running' | 'inmigrate'): Promise<{ server: QmpServer; client: RawClient }> {
  const machine = standIn(runState);
  const migration = new MigrationController(machine, (status) => server.emit('MIGRATION', { status }));
  const { commands, extraCommands } = machineCommands({
    machine,
    migration,
    startClock: () => new PhaseClock('new'),
    startPaused: false,
  });
  const server = await QmpServer.listen(`unix:${join(dir, `q${n++}.sock`)},server,wait=off`, {
    version: '9.9.9-test',
    commands,
    extraCommands,
    log: () => {},
  });
  const client = await connectRaw(server.path);
  await client.next();
  await client.execute('qmp_capabilities');
  return { server, client };
}

async function migrationEnd(client: RawClient): Promise<Record<string, unknown>> {
  for (let i = 0; i < 250; i++) {
    const reply = (await client.execute('query-migrate')) as { return: Record<string, unknown> };
    if (reply.return.status !== 'active' && reply.return.status !== 'setup') return reply.return;
    await sleep(20);
  }
  throw new Error('the migration did not end within 5 s');
}

const error = (desc: string) => ({ error: { class: 'GenericError', desc } });

test('migrate: a bad URI, an unknown or numeric fd name are refused at once, naming what is wrong', async () => {
  const { server, client } = await start('running');
  assert.equal(
    await client.execute('migrate', { uri: 'tcp:0:4444' }),
    error(
      "migration URI 'tcp:0:4444' is not supported: use file:PATH, fd:NAME or exec:COMMAND (or the cpr channel for cpr-transfer)",
    ),
  );
  assert.equal(
    await client.execute('migrate', { uri: 'fd:nope' }),
    error("File descriptor named 'nope' has not been found"),
  );
  assert.equal(
    await client.execute('migrate', { uri: 'fd:3' }),
    error('fd:3: over QMP, fd: takes the name of a descriptor passed with getfd'),
  );
  assert.equal(await client.execute('migrate', { uri: 'exec:' }), error("migration URI 'exec:' has no command"));
  assert.equal(await client.execute('query-migrate'), { return: {} }, 'no migration started');
  client.close();
  await server.close();
});

test('migrate fd:NAME takes the getfd descriptor: a save that fails closes it, and the name is gone', async () => {
  const { server, client } = await start('running');
  const [mine, theirs] = socketPair();
  const sock = (client.socket as unknown as { _handle: { fd: number } })._handle.fd;
  sendWithFds(sock, [Buffer.from(' ')], [theirs]);
  close(theirs);
  assert.equal(await client.execute('getfd', { fdname: 'mig' }), { return: {} });
  assert.equal(await client.execute('migrate', { uri: 'fd:mig' }), { return: {} });
  const info = await migrationEnd(client);
  assert.is(info.status, 'failed');
  assert.is(info['error-desc'], UNSAVABLE);
  assert.is(receiveWithFds(mine, new Uint8Array(8), 0, MSG_DONTWAIT).bytes, 0, 'the fd was closed (EOF here)');
  assert.equal(await client.execute('closefd', { fdname: 'mig' }), error("File descriptor named 'mig' not found"));
  close(mine);
  client.close();
  await server.close();
});

test('migrate-incoming: fd:/exec: need -incoming; a stream that brings nothing fails the migration, QMP answering meanwhile', async () => {
  const running = await start('running');
  assert.equal(
    await running.client.execute('migrate-incoming', { uri: 'exec:true' }),
    error("'-incoming' was not specified on the command line"),
  );
  running.client.close();
  await running.server.close();

  const { server, client } = await start('inmigrate');
  assert.equal(await client.execute('migrate-incoming', { uri: 'exec:sleep 0.3; exit 5' }), { return: {} });
  assert.equal(
    await client.execute('query-status'),
    { return: { running: false, status: 'inmigrate' } },
    'QMP answers while the command runs',
  );
  const info = await migrationEnd(client);
  assert.is(info.status, 'failed');
  assert.is(info['error-desc'], 'exec:sleep 0.3; exit 5: the command exited with status 5');
  assert.equal(await client.execute('migrate-incoming', { uri: 'exec:true' }), { return: {} });
  assert.is((await migrationEnd(client))['error-desc'], 'exec:true: the stream was empty (no checkpoint came)');
  // migrate_cancel ends one that would wait for ever.
  assert.equal(await client.execute('migrate-incoming', { uri: 'exec:sleep 100' }), { return: {} });
  assert.equal(await client.execute('migrate_cancel'), { return: {} });
  const cancelled = await migrationEnd(client);
  assert.is(cancelled.status, 'cancelled');
  assert.is(cancelled['error-desc'], 'exec:sleep 100: cancelled (migrate_cancel)');
  client.close();
  await server.close();
});

test.run();
