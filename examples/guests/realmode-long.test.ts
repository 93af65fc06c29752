// A long real-mode instruction test, the way PC test suites write one (multiboot image below 1 MiB that drops to real
// mode, instruction sequences run through big real mode from a self-modified buffer, COM1 polled per byte, timing
// loops): the same output and exit under QEMU (the reference) and tsvmm. No timing is asserted: the guest's cycle
// counts are printed for reading, and what a VMM adds is start-up and exits, not guest instructions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { debugExitProcessStatus, qemuAccel, qemuUnavailable, runQemu } from './qemu-runner.js';

const toolchain = await toolchainUnavailable();
const SEQUENCES = ['xchg', 'shld', 'imul', 'div', 'push/pop', 'lahf', 'big real mode load', 'das'];
/** A hang guard only (a loaded machine is slow); the guest always ends by itself. */
const HANG_GUARD_S = 240;

function expectPassed(serial: string, status: number | null, context: string): void {
  for (const name of SEQUENCES) assert.ok(serial.includes(`realmode-long: PASS ${name}\n`), `${name}; ${context}`);
  for (let i = 0; i < 6; i++)
    assert.match(serial, new RegExp(`^realmode-long: loop ${i}: \\d+ cycles/iteration$`, 'm'), context);
  assert.match(serial, /^realmode-long: done 128 rounds, 0 failures$/m, context);
  assert.is(status, debugExitProcessStatus(0), context);
}

testIf(
  test,
  qemuUnavailable() ?? toolchain,
  `realmode-long: under QEMU (${qemuAccel()}) every sequence passes in real mode and the timing loops run`,
  async () => {
    const guest = await buildGuest('realmode-long');
    const r = await runQemu({ kernel: guest.path, timeoutMs: HANG_GUARD_S * 1000 });
    expectPassed(r.serial, r.status, `timed out: ${r.timedOut}\nserial:\n${r.serial}\nstderr:\n${r.stderr}`);
  },
);

testIf(
  test,
  kvmMissing() ?? toolchain,
  'realmode-long: under tsvmm (multiboot below 1 MiB, then real mode) every sequence passes and the timing loops run',
  async () => {
    const guest = await buildGuest('realmode-long');
    const r = await runTsvmm(
      ['run', '-m', '64M', '-device', 'isa-debug-exit', '-kernel', guest.path, '--timeout', String(HANG_GUARD_S)],
      { timeoutMs: (HANG_GUARD_S + 60) * 1000 },
    );
    expectPassed(r.stdout, r.status, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  },
);

test.run();
