// The Node library against real KVM: a machine built from typed options boots a test guest, its serial port is a
// stream, pause/resume/quit/reset/powerdown/wakeup are QMP's stop/cont/quit/system_reset/system_powerdown/
// system_wakeup with QMP's events (a pvpanic write is 'panic'), `exited` says what the CLI's exit status says, and a
// checkpoint restores into a new machine from the file alone, with RAM in the file or left on /dev/shm.
// Bad options and a missing /dev/kvm reject with the command line's own message (these run without KVM).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { waitFor } from '../../test/support/hang-guard.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from '../../examples/guests/build.js';
import { Machine, type MachineOptions } from './index.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());

/** Everything the serial port has said so far, kept up to date. */
function capture(machine: Machine): { readonly text: string } {
  const seen = { text: '' };
  machine.serial.on('data', (chunk: Buffer) => {
    seen.text += chunk.toString('latin1');
  });
  return seen;
}

/** The counter guest's last "counter: N" line (it prints one every 100 ticks of 1 ms). */
const lastCount = (serial: string): number => Number([...serial.matchAll(/counter: (\d+)\n/g)].at(-1)?.[1] ?? -1);

/** The error `promise` rejects with (null when it resolves). */
const rejection = (promise: Promise<unknown>): Promise<Error | null> =>
  promise.then(
    () => null,
    (e: Error) => e,
  );

async function counter(options: MachineOptions = {}): Promise<Machine> {
  return Machine.create({ kernel: (await buildGuest('counter')).path, memory: 64, ...options });
}

test('bad options reject with the one line the command line prints for the same flags', async () => {
  for (const [options, argv] of [
    [{ smp: 'two' as unknown as number }, ['-smp', 'two']],
    [{ memory: '12Q' }, ['-m', '12Q']],
    [
      { memory: { size: 64, backend: 'file' as const } },
      ['-object', 'memory-backend-file,id=ram0,size=64M', '-machine', 'memory-backend=ram0'],
    ],
    [{ serial: 'tcp:localhost:4444' }, ['-serial', 'tcp:localhost:4444']],
    [{ append: 'quiet' }, ['-append', 'quiet']],
  ] as const) {
    const cli = await runTsvmm(['run', ...argv]);
    assert.is(cli.status, 2, cli.stderr);
    const error = await rejection(Machine.create(options));
    assert.ok(error, `${JSON.stringify(options)} was accepted`);
    assert.is(`tsvmm: ${error.message}\n`, cli.stderr);
  }
});

test('two stream ports are refused: machine.serial is one stream', async () => {
  const error = await rejection(Machine.create({ serial: ['stream', 'stream'] }));
  assert.match(error?.message ?? 'accepted', /only one port can be 'stream'/);
});

test('without a usable /dev/kvm, create rejects with the set-up error the command line prints', async () => {
  const env = { TSVMM_KVM_DEVICE: '/nonexistent/kvm' };
  // No guest image: the image is checked before /dev/kvm is opened, and this is about /dev/kvm.
  const cli = await runTsvmm(['run'], { env });
  assert.is(cli.status, 4, cli.stderr);
  process.env.TSVMM_KVM_DEVICE = env.TSVMM_KVM_DEVICE;
  try {
    const error = await rejection(Machine.create());
    assert.is(`tsvmm: ${error?.message}\n`, cli.stderr);
  } finally {
    delete process.env.TSVMM_KVM_DEVICE;
  }
});

testIf(
  test,
  skip,
  'hello: create, start, the serial stream holds its greeting, exited is the CLI status 1',
  async () => {
    const machine = await Machine.create({ kernel: (await buildGuest('hello')).path, memory: 64, debugExit: true });
    assert.is(machine.status, 'prelaunch');
    machine.start();
    const [exit, serial] = await Promise.all([machine.exited, text(machine.serial)]);
    assert.is(serial, 'Hello from tsvmm guest\n');
    assert.equal(exit, { status: 1, reason: 'guest-exit' });
  },
);

testIf(
  test,
  skip,
  'counter: pause stops the guest (stop event, no output), resume runs it on (resume event), quit ends it with 0',
  async () => {
    const machine = await counter();
    const events: string[] = [];
    for (const name of ['stop', 'resume', 'shutdown'] as const) machine.on(name, () => events.push(name));
    const serial = capture(machine);
    machine.start();
    await waitFor(
      () => lastCount(serial.text) >= 200,
      'counter: 200',
      () => serial.text,
    );
    await machine.pause();
    assert.is(machine.status, 'paused');
    const stopped = serial.text.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.is(serial.text.length, stopped, 'no output while paused');
    const before = lastCount(serial.text);
    await machine.resume();
    assert.is(machine.status, 'running');
    await waitFor(
      () => lastCount(serial.text) > before,
      'a counter line after resume',
      () => serial.text,
    );
    assert.equal(await machine.quit(), { status: 0, reason: 'quit' });
    assert.equal(events, ['resume', 'stop', 'resume', 'shutdown']);
  },
);

testIf(test, skip, 'counter: timeout ends the guest with status 124, reason timeout', async () => {
  const machine = await counter({ timeout: 1 });
  machine.start();
  assert.equal(await machine.exited, { status: 124, reason: 'timeout' });
});

for (const ram of ['in-file', 'shared'] as const) {
  testIf(
    test,
    skip,
    `counter: checkpoint (RAM ${ram === 'in-file' ? 'in the file' : 'left on /dev/shm'}) then Machine.restore(file) goes on counting`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tsvmm-api-'));
      const shm = join('/dev/shm', `${dir.split('/').pop()}-ram`);
      try {
        const memory = ram === 'shared' ? { size: 64, backend: 'file' as const, path: shm, share: true } : 64;
        const old = await counter({ memory });
        const oldSerial = capture(old);
        old.start();
        await waitFor(
          () => lastCount(oldSerial.text) >= 200,
          'counter: 200',
          () => oldSerial.text,
        );
        const file = join(dir, 'vm.cpr');
        await old.checkpoint(file, ram === 'in-file' ? { ram: 'in-file' } : {});
        assert.is(old.status, 'postmigrate');
        assert.match((await rejection(old.resume()))?.message ?? 'resumed', /saved for a restart elsewhere/);
        assert.equal(await old.quit(), { status: 0, reason: 'quit' });
        const saved = lastCount(oldSerial.text);
        // RAM in the file makes it hold 64 MiB; left on /dev/shm, the file is the devices' and vCPUs' state.
        assert.ok(statSync(file).size > 64 << 20 === (ram === 'in-file'), `checkpoint of ${statSync(file).size} bytes`);

        const next = await Machine.restore(file);
        const serial = capture(next);
        next.start();
        await waitFor(
          () => lastCount(serial.text) >= saved + 200,
          `counter: ${saved + 200}`,
          () => serial.text,
        );
        assert.not.match(serial.text, /counter: state at/, 'the guest did not boot again');
        assert.equal(await next.quit(), { status: 0, reason: 'quit' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
        if (existsSync(shm)) rmSync(shm);
      }
    },
  );
}

/** Resolves with the machine's first `name` event, or rejects if the machine ends first. */
function next(machine: Machine, name: 'suspend' | 'panic'): Promise<unknown> {
  return Promise.race([
    new Promise((resolve) => machine.once(name, resolve)),
    machine.exited.then((exit) => Promise.reject(new Error(`ended before '${name}': ${JSON.stringify(exit)}`))),
  ]);
}

testIf(
  test,
  skip,
  "panic guest: a pvpanic PANICKED write emits 'panic' { action: 'poweroff' } and ends with 126, reason panic",
  async () => {
    const machine = await Machine.create({
      kernel: (await buildGuest('panic')).path,
      memory: 64,
      debugExit: true,
      args: ['-device', 'pvpanic'],
    });
    const serial = capture(machine);
    const panicked = next(machine, 'panic');
    machine.start();
    assert.equal(await panicked, { action: 'poweroff' });
    assert.equal(await machine.exited, { status: 126, reason: 'panic' });
    assert.match(serial.text, /panic: reporting a panic\n/);
  },
);

testIf(
  test,
  skip,
  "counter: reset() emits 'reset' (host-qmp-system-reset) and the guest boots again, printing its start line twice",
  async () => {
    const machine = await counter();
    const resets: unknown[] = [];
    machine.on('reset', (data) => resets.push(data));
    const serial = capture(machine);
    machine.start();
    await waitFor(
      () => lastCount(serial.text) >= 200,
      'counter: 200',
      () => serial.text,
    );
    await machine.reset();
    await waitFor(
      () => serial.text.match(/counter: state at/g)?.length === 2,
      'the start line again',
      () => serial.text,
    );
    assert.equal(resets, [{ guest: false, reason: 'host-qmp-system-reset' }]);
    assert.equal(await machine.quit(), { status: 0, reason: 'quit' });
  },
);

/**
 * The s3 guest (examples/guests/s3.S) from its real-mode loader, running until it has suspended itself to RAM:
 * `wake` (wakeup() or powerdown()) then resumes it at its waking vector, and it exits through isa-debug-exit.
 */
async function suspendedS3Guest(): Promise<{ machine: Machine; events: string[]; serial: { readonly text: string } }> {
  const image = (await buildGuest('s3')).path;
  const machine = await Machine.create({
    memory: 64,
    debugExit: true,
    timeout: 60,
    args: ['-device', `loader,file=${image},addr=0x7c00,mode=real`],
  });
  const events: string[] = [];
  for (const name of ['suspend', 'powerdown', 'wakeup'] as const) machine.on(name, () => events.push(name));
  const serial = capture(machine);
  const suspended = next(machine, 'suspend');
  machine.start();
  await suspended;
  assert.is(machine.status, 'suspended');
  return { machine, events, serial };
}

testIf(
  test,
  skip,
  "s3 guest: suspended to RAM ('suspend'), wakeup() resumes it at its waking vector ('wakeup'); it exits 33",
  async () => {
    const { machine, events, serial } = await suspendedS3Guest();
    await machine.wakeup();
    assert.equal(await machine.exited, { status: (0x10 << 1) | 1, reason: 'guest-exit' });
    assert.equal(events, ['suspend', 'wakeup']);
    assert.match(serial.text, /^S3: woke, marker intact$/m);
  },
);

testIf(
  test,
  skip,
  "s3 guest: powerdown() presses the ACPI power button ('powerdown'), which wakes it with PWRBTN_STS; it exits 35",
  async () => {
    const { machine, events, serial } = await suspendedS3Guest();
    await machine.powerdown();
    assert.equal(await machine.exited, { status: (0x11 << 1) | 1, reason: 'guest-exit' });
    assert.equal(events, ['suspend', 'powerdown', 'wakeup']);
    assert.match(serial.text, /^S3: PWRBTN_STS set: woken by the power button$/m);
  },
);

test.run();
