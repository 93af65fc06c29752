// `exited`'s reason: the exit status (README, "Exit status") and the SHUTDOWN event's reason, in one word.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exitReason } from './exit.js';

test('exit reason: an odd status is the guest writing isa-debug-exit, whatever the event said', () => {
  assert.is(exitReason(1, 'guest-shutdown'), 'guest-exit');
  assert.is(exitReason(15, undefined), 'guest-exit');
});

test('exit reason: the statuses tsvmm picks name themselves', () => {
  assert.is(exitReason(124, undefined), 'timeout');
  assert.is(exitReason(126, 'guest-panic'), 'panic');
  assert.is(exitReason(118, undefined), 'triple-fault');
  assert.is(exitReason(120, undefined), 'kvm-internal-error');
  assert.is(exitReason(122, undefined), 'fail-entry');
  assert.is(exitReason(70, undefined), 'internal-error');
});

test('exit reason: status 0 is told apart by the SHUTDOWN reason — power-off, reset (-no-reboot), panic, quit', () => {
  assert.is(exitReason(0, 'guest-shutdown'), 'poweroff');
  assert.is(exitReason(0, 'guest-reset'), 'reset');
  assert.is(exitReason(0, 'guest-panic'), 'panic');
  assert.is(exitReason(0, 'host-qmp-quit'), 'quit');
});

test.run();
