// What a guest's requests do under each command-line choice (-no-reboot, -no-shutdown, -action panic=), seen
// through the actions the policy asks of the machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestPolicy, type PolicyActions } from './guest-policy.js';
import type { MachineConfig } from './config.js';
import { ExitStatus } from '../util/exit-status.js';

type Choices = Pick<MachineConfig, 'noReboot' | 'noShutdown' | 'panicAction'>;

/** A policy whose actions are recorded as lines; background work fails when `failing` is set. */
function recorded(choices: Partial<Choices>, failing = false): { policy: GuestPolicy; seen: string[] } {
  const seen: string[] = [];
  const work = (line: string) => {
    seen.push(line);
    return failing ? Promise.reject(new Error('no')) : Promise.resolve();
  };
  const actions: PolicyActions = {
    end: (status, reason) => seen.push(`end ${status} ${reason}`),
    reset: (reason) => work(`reset ${reason}`),
    suspend: () => work('suspend'),
    stop: (state) => work(`stop ${state}`),
    fail: (status, message) => seen.push(`fail ${status} ${message.split('\n')[0]}`),
    internalError: () => seen.push('internal-error'),
    goOn: () => seen.push('go on'),
    emit: (e) => seen.push('data' in e ? `${e.event} ${JSON.stringify(e.data)}` : e.event),
    log: (line) => seen.push(`log ${line}`),
  };
  const policy = new GuestPolicy({ noReboot: false, noShutdown: false, panicAction: undefined, ...choices }, actions);
  return { policy, seen };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('policy: isa-debug-exit ends tsvmm with its status (low byte), as guest-shutdown', () => {
  const { policy, seen } = recorded({});
  policy.handle({ type: 'exit', vcpu: 0, status: 0x143, reason: 'debug-exit' });
  assert.equal(seen, ['end 67 guest-shutdown']);
});

test('policy: a reset reboots, or with -no-reboot ends tsvmm with 0', () => {
  const reboot = recorded({});
  reboot.policy.handle({ type: 'reset', vcpu: 0, reason: 'i8042' });
  assert.equal(reboot.seen, ['reset i8042']);
  const noReboot = recorded({ noReboot: true });
  noReboot.policy.handle({ type: 'reset', vcpu: 0, reason: 'i8042' });
  assert.equal(noReboot.seen, [`end ${ExitStatus.ok} guest-reset`]);
});

test('policy: a power-off ends tsvmm, or with -no-shutdown sends SHUTDOWN and stops in shutdown', () => {
  const off = recorded({});
  off.policy.handle({ type: 'power-off', vcpu: 0, reason: 'S5' });
  assert.equal(off.seen, [`end ${ExitStatus.ok} guest-shutdown`]);
  const stay = recorded({ noShutdown: true });
  stay.policy.handle({ type: 'power-off', vcpu: 0, reason: 'S5' });
  assert.equal(stay.seen, ['SHUTDOWN {"guest":true,"reason":"guest-shutdown"}', 'stop shutdown']);
});

test('policy: a panic (status 126) follows -action panic=: exit-failure, shutdown, pause, none', () => {
  const panic = { type: 'exit', vcpu: 1, status: ExitStatus.guestPanic, reason: 'guest panicked' } as const;
  const expect: Record<NonNullable<Choices['panicAction']>, string[]> = {
    'exit-failure': ['GUEST_PANICKED {"action":"poweroff"}', `end ${ExitStatus.guestPanic} guest-panic`],
    shutdown: ['GUEST_PANICKED {"action":"poweroff"}', `end ${ExitStatus.ok} guest-panic`],
    pause: ['GUEST_PANICKED {"action":"pause"}', 'stop guest-panicked'],
    none: ['GUEST_PANICKED {"action":"run"}', 'go on'],
  };
  for (const [action, lines] of Object.entries(expect)) {
    const { policy, seen } = recorded({ panicAction: action as Choices['panicAction'] });
    policy.handle(panic);
    assert.equal(seen, ['log guest panicked', ...lines], action);
  }
  const defaults = recorded({});
  defaults.policy.handle(panic);
  assert.equal(defaults.seen, ['log guest panicked', ...expect['exit-failure']]);
});

test('policy: a triple fault resets, or with -no-reboot ends with 118 as an internal error', () => {
  const fault = { type: 'failure', vcpu: 0, kind: 'triple-fault', report: 'tsvmm: vCPU 0: triple fault' } as const;
  const reboot = recorded({});
  reboot.policy.handle(fault);
  assert.equal(reboot.seen, ['log vCPU 0: triple fault', 'reset triple fault']);
  const noReboot = recorded({ noReboot: true });
  noReboot.policy.handle(fault);
  assert.equal(noReboot.seen, ['internal-error', `fail ${ExitStatus.tripleFault} vCPU 0: triple fault`]);
});

test('policy: KVM failures end tsvmm with the status that names them', () => {
  const kinds = {
    'internal-error': ExitStatus.kvmInternalError,
    'fail-entry': ExitStatus.failEntry,
    'unexpected-exit': ExitStatus.kvmInternalError,
    'vmm-error': ExitStatus.internalError,
  } as const;
  for (const [kind, status] of Object.entries(kinds)) {
    const { policy, seen } = recorded({});
    policy.handle({ type: 'failure', vcpu: 0, kind: kind as keyof typeof kinds, report: 'what happened' });
    assert.equal(seen, ['internal-error', `fail ${status} what happened`], kind);
  }
});

test('policy: work that fails in the background ends tsvmm as an internal error that says what failed', async () => {
  const { policy, seen } = recorded({}, true);
  policy.handle({ type: 'suspend', vcpu: 0, reason: 'S3' });
  await settle();
  assert.equal(seen, ['suspend', `fail ${ExitStatus.internalError} suspend failed: Error: no`]);
});

test.run();
