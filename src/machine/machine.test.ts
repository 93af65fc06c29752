// The machine's life cycle under the real /dev/kvm: pausing stops the guest (even one blocked in `hlt`), resuming
// continues it, host input reaches the guest's UART, and ending the machine releases every vCPU thread.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { assembleFlat } from '../../test/support/asm.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { HANG_GUARD_MS, waitFor } from '../../test/support/hang-guard.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { Machine } from './machine.js';
import { parseRunArgs } from '../cli/args.js';
import { machineConfigFromArgs } from '../cli/config.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function counterMachine(): Promise<Machine> {
  const guest = await buildGuest('counter');
  const config = machineConfigFromArgs(
    parseRunArgs(['-m', '16M', '-kernel', guest.path, '-serial', 'null', '-smp', '2']),
  );
  return Machine.create(config, { log: () => {} });
}

testIf(test, skip, 'machine: pause parks every vCPU (the counter stops), resume lets the guest go on', async () => {
  const machine = await counterMachine();
  machine.start();
  const ram = machine.guestMemory;
  const count = () => ram.readU64(COUNTER_STATE_ADDR);
  try {
    // The guest's first tick comes after its set-up; on a busy host that can take a while.
    await waitFor(() => count() > 0n, 'the counter guest ticks');
    await machine.pause();
    assert.is(machine.runState, 'paused');
    const paused = count();
    await sleep(200);
    assert.is(count(), paused, 'no tick while paused');
    machine.resume();
    await waitFor(() => count() > paused, 'ticks again after resume');
  } finally {
    assert.is(await machine.finish(0), 0);
  }
  assert.is(machine.runState, 'shutdown');
});

testIf(test, skip, 'machine: a machine started with -S does not run until resumed', async () => {
  const machine = await counterMachine();
  machine.start({ paused: true });
  try {
    await sleep(200);
    assert.is(machine.guestMemory.readU64(COUNTER_STATE_ADDR), 0n);
    machine.resume();
    // How soon the first tick comes depends on the machine: wait for it.
    await waitFor(() => machine.guestMemory.readU64(COUNTER_STATE_ADDR) > 0n, 'the counter guest ticks once resumed');
  } finally {
    await machine.finish(0);
  }
});

testIf(
  test,
  skip,
  'machine: a build that fails after starting its threads (the I/O thread late) stops and joins them all',
  async () => {
    const guest = await buildGuest('counter');
    const script = fileURLToPath(new URL('./testing/failed-build.js', import.meta.url));
    // A thread left running would keep the child alive until the hang guard kills it (then execFile rejects).
    const child = await promisify(execFile)(process.execPath, [script, guest.path], { timeout: HANG_GUARD_MS });
    assert.match(child.stdout, /^failed: the I\/O thread did not start within 0 s$/m);
  },
);

// A guest that enables kvmclock (MSR_KVM_SYSTEM_TIME_NEW: its pvclock_vcpu_time_info at 0x5000) and spins.
const PVCLOCK = 0x5000;
/** pvclock_vcpu_time_info.flags: version, pad, tsc_timestamp, system_time, mul (4), shift (1), then flags. */
const PVCLOCK_FLAGS = PVCLOCK + 29;
const PVCLOCK_GUEST_STOPPED = 2;
const kvmclockGuest = assembleFlat(`.code16
  mov $0x4b564d01, %ecx
  mov $${PVCLOCK | 1}, %eax
  xor %edx, %edx
  wrmsr
spin:
  pause
  jmp spin
`);

testIf(
  test,
  kvmMissing(),
  "machine: after a host pause the guest's kvmclock says it was stopped (PVCLOCK_GUEST_STOPPED, as QEMU's resume sets with KVM_KVMCLOCK_CTRL): its watchdogs do not count the pause as a lockup",
  async () => {
    const config = machineConfigFromArgs(
      parseRunArgs(['-m', '16M', '-device', `loader,file=${kvmclockGuest},addr=0x1000`, '-serial', 'null']),
    );
    const machine = await Machine.create(config, { log: () => {} });
    machine.start();
    const ram = machine.guestMemory;
    try {
      await waitFor(() => ram.readU32(PVCLOCK) !== 0, 'KVM writes the guest its kvmclock');
      assert.is(ram.readU8(PVCLOCK_FLAGS) & PVCLOCK_GUEST_STOPPED, 0, 'not stopped yet');
      await machine.pause();
      machine.resume();
      await waitFor(
        () => (ram.readU8(PVCLOCK_FLAGS) & PVCLOCK_GUEST_STOPPED) !== 0,
        'PVCLOCK_GUEST_STOPPED in the kvmclock after the pause',
      );
    } finally {
      await machine.finish(0);
    }
  },
);

// A real-mode echo loop on COM1: wait for LSR.DR, read RBR, write it back, stop after a newline.
const echo = assembleFlat(`.code16
  mov $0x3f8, %dx
next:
  add $5, %dx
wait:
  in %dx, %al
  test $1, %al
  jz wait
  sub $5, %dx
  in %dx, %al
  out %al, %dx
  cmp $10, %al
  jne next
  mov $0xf4, %dx
  mov $0, %al
  out %al, %dx
`);

testIf(
  test,
  kvmMissing(),
  'machine: host input on stdin reaches the guest through COM1 (bounded FIFO, nothing lost)',
  async () => {
    const line = 'the quick brown fox jumps over the lazy dog, twice over to overflow a 16-byte FIFO\n';
    const r = await runTsvmm(
      [
        'run',
        '-m',
        '16M',
        '-device',
        `loader,file=${echo},addr=0x1000`,
        '-device',
        'isa-debug-exit',
        '--timeout',
        '20',
      ],
      { input: line },
    );
    assert.is(r.stdout, line);
    assert.is(r.status, 1);
  },
);

test.run();
