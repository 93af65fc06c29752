// tsvmm run, as a user sees it: exit statuses, serial output, failure reports and clear one-line errors. Each test
// boots a tiny flat guest under the real /dev/kvm.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { assembleFlat } from '../../test/support/asm.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { kvmBackend, kvmIsPvm } from '../../test/support/kvm-backend.js';
import { ExitStatus } from '../util/exit-status.js';

const noKvm = kvmMissing();
const pvm = kvmIsPvm();

/** Real-mode code at 0x1000 that prints `text` on COM1 (no LSR polling needed: our UART sends at once). */
const print = (text: string) => [...text].map((c) => `  mov $${c.charCodeAt(0)}, %al\n  out %al, %dx`).join('\n');
const realMode = (body: string) => assembleFlat(`.code16\n  mov $0x3f8, %dx\n${body}\n`);
const loader = (path: string, mode = 'real') => ['-device', `loader,file=${path},addr=0x1000,mode=${mode}`];
const base = ['-m', '16M', '-device', 'isa-debug-exit'];

testIf(
  test,
  noKvm,
  "cli: the guest's debug-exit value v becomes exit status (v << 1) | 1, and its serial output reaches stdout",
  async () => {
    const guest = realMode(`${print('ok\n')}\n  mov $0xf4, %dx\n  mov $0x21, %al\n  out %al, %dx\n  hlt`);
    const r = await runTsvmm([...base, ...loader(guest)]);
    assert.is(r.stdout, 'ok\n');
    assert.is(r.status, (0x21 << 1) | 1);
  },
);

testIf(
  test,
  noKvm,
  'cli: --timeout ends a guest that never finishes with status 124, says so, and says where each vCPU was (halted in KVM_RUN: no exits)',
  async () => {
    const guest = realMode('  cli\n  hlt');
    const r = await runTsvmm([...base, ...loader(guest), '--timeout', '0.5']);
    assert.is(r.status, ExitStatus.timeout);
    assert.match(r.stderr, /timeout: the guest did not finish within 0.5 s/);
    // On a loaded machine the vCPU thread may not have started within the 0.5 s: the report says that instead.
    assert.match(
      r.stderr,
      /timeout: vcpu 0: (running, in KVM_RUN, 0 exits in 200 ms \(\d+ in all\)|starting, its thread has not entered the guest yet)\n/,
      r.stderr,
    );
    assert.match(r.stderr, /timeout: the machine lock is free/, r.stderr);
  },
);

// A triple fault: with an empty IDT, #UD cannot be delivered (→ #GP → #DF → shutdown). Protected mode, because
// KVM's real-mode emulation on some hosts ignores the IDT limit.
const tripleFault = assembleFlat(
  `.code32\n  mov $0x3f8, %dx\n${print('boot\n')}\n  lidt empty\n  ud2\nempty: .word 0\n  .long 0\n`,
);

testIf(
  test,
  noKvm,
  'cli: a triple fault with -no-reboot ends tsvmm with status 118 and a report naming RIP and mode (on SVM: saying they are lost)',
  async () => {
    const r = await runTsvmm([...base, ...loader(tripleFault, 'protected'), '-no-reboot']);
    assert.is(r.stdout, 'boot\n');
    assert.is(r.status, ExitStatus.tripleFault);
    assert.match(r.stderr, /triple fault \(KVM_EXIT_SHUTDOWN\)/);
    if (kvmBackend() === 'svm') {
      // KVM on AMD SVM re-initialises the vCPU before it returns KVM_EXIT_SHUTDOWN: f000:fff0 in real mode is not
      // where the guest was, and the report must not say it was.
      assert.match(r.stderr, /RIP and CPU mode at the fault: unknown — KVM re-initialised the vCPU/);
      assert.not.match(r.stderr, /RIP 0x|instruction bytes at RIP/);
    } else {
      assert.match(r.stderr, /RIP 0x[0-9a-f]+ .*protected mode \(32-bit\)/);
      assert.match(r.stderr, /instruction bytes at RIP: 0f 0b/);
    }
  },
);

// The same triple fault, but the guest counts its boots in RAM that a reset leaves alone (the loader rewrites only
// the image at 0x1000) and ends with debug-exit 2 on its second boot: the run ends when the reset has been seen,
// however long each boot takes on this machine, rather than at a --timeout that fits some number of boots.
const BOOT_COUNT_ADDR = 0x3000;
const faultOnce = assembleFlat(`.code32\n  mov $0x3f8, %dx\n${print('boot\n')}
  incl ${BOOT_COUNT_ADDR}
  cmpl $2, ${BOOT_COUNT_ADDR}
  jb 1f
  mov $0xf4, %dx
  mov $2, %al
  out %al, %dx
  hlt
1:
  lidt empty\n  ud2\nempty: .word 0\n  .long 0\n`);

testIf(test, noKvm, 'cli: without -no-reboot a triple fault resets the machine and the guest boots again', async () => {
  const r = await runTsvmm([...base, ...loader(faultOnce, 'protected'), '--timeout', '30']); // 30 s: a hang guard
  assert.is(r.stdout, 'boot\nboot\n', 'booted, reset by the triple fault, booted again');
  assert.match(r.stderr, /guest reset \(triple fault\)/);
  assert.is(r.status, (2 << 1) | 1, `the second boot ended by debug-exit:\n${r.stderr}`);
});

testIf(test, noKvm, 'cli: an i8042 reset (0xFE to port 0x64) with -no-reboot ends tsvmm with status 0', async () => {
  const guest = realMode(`${print('bye\n')}\n  mov $0xfe, %al\n  out %al, $0x64\n  cli\n  hlt`);
  const r = await runTsvmm([...base, ...loader(guest), '-no-reboot']);
  assert.is(r.stdout, 'bye\n');
  assert.is(r.status, 0);
});

// An MMIO access by an instruction KVM's emulator does not know: x87 `fild` from an address with no RAM behind it.
// The access exits to KVM (EPT/NPT violation on VMX/SVM; everything is emulated on PVM), KVM must emulate it to
// forward the MMIO, and its emulator has no x87 loads: KVM_EXIT_INTERNAL_ERROR with an emulation-failure suberror.
const MMIO_HOLE = 0x8000000; // 128 MiB: past the 16 MiB of RAM, below the PCI hole, claimed by no device
const fildFromMmio = assembleFlat(`.code64\n  fildl ${MMIO_HOLE}\n  hlt\n`);

testIf(
  test,
  noKvm,
  'cli: an emulation failure (x87 load from MMIO) ends tsvmm with status 120 and shows RIP, mode and the instruction bytes',
  async () => {
    const r = await runTsvmm([...base, ...loader(fildFromMmio, 'long')]);
    assert.is(r.status, ExitStatus.kvmInternalError, r.stderr);
    assert.match(r.stderr, /KVM internal error .*emulation failure/);
    assert.match(r.stderr, /RIP 0x0000000000001000 \(CS:IP 0008:1000\), long mode \(64-bit\)/);
    assert.match(r.stderr, /instruction bytes at RIP: db 04 25 00 00 00 08 f4/);
  },
);

testIf(
  test,
  noKvm === null && pvm ? null : "needs a PVM host, where KVM's emulator rejects int3 in long mode",
  'cli: on PVM an instruction the emulator rejects (int3 in long mode) ends tsvmm with status 120 and shows the bytes at RIP',
  async () => {
    const guest = assembleFlat('.code64\n  int3\n');
    const r = await runTsvmm([...base, ...loader(guest, 'long')]);
    assert.is(r.status, ExitStatus.kvmInternalError);
    assert.match(r.stderr, /KVM internal error .*emulation failure/);
    assert.match(r.stderr, /long mode \(64-bit\)/);
    assert.match(r.stderr, /instruction bytes at RIP: cc/);
  },
);

test('cli: an unknown option is refused with status 2 and one line naming it', async () => {
  const r = await runTsvmm(['run', '-frobnicate']);
  assert.is(r.status, ExitStatus.usage);
  assert.is(r.stderr, "tsvmm: unknown option '-frobnicate' (see tsvmm run --help)\n");
});

test('cli: an unknown device is refused with status 2 and the list of devices', async () => {
  const r = await runTsvmm(['run', '-device', 'e1000']);
  assert.is(r.status, ExitStatus.usage);
  assert.match(
    r.stderr,
    /-device e1000: unknown device \(tsvmm has isa-debug-exit, isa-debugcon, pvpanic, loader, virtio-blk-pci, virtio-net-pci, virtio-rng-pci, virtconsole, vfio-pci\)/,
  );
});

test('cli: -incoming takes defer, file:PATH, fd:N or exec:COMMAND; another URI, or two, is status 2 naming them', async () => {
  for (const [incoming, message] of [
    [['tcp:0:4444'], '-incoming tcp:0:4444: use defer, file:PATH, fd:N, exec:COMMAND or a cpr channel (JSON)'],
    [['fd:mig'], '-incoming fd:mig: use defer'], // on the command line fd: is an inherited fd's number
    [['exec:'], '-incoming exec:: use defer'],
    [['fd:3', 'exec:cat f'], '-incoming: only one main channel (defer, file:PATH, fd:N or exec:COMMAND)'],
  ] as const) {
    const r = await runTsvmm(['run', ...incoming.flatMap((v) => ['-incoming', v])]);
    assert.is(r.status, ExitStatus.usage, incoming.join(' '));
    assert.match(r.stderr, message);
  }
});

test('cli: a missing kernel file is one clear line and status 4', async () => {
  const r = await runTsvmm(['run', '-kernel', '/nonexistent/kernel']);
  assert.is(r.status, ExitStatus.setupFailed);
  assert.is(r.stderr, "tsvmm: kernel '/nonexistent/kernel': no such file\n");
});

test('cli: a missing /dev/kvm is one clear line and status 4', async () => {
  const guest = assembleFlat('.code16\n  hlt\n');
  const r = await runTsvmm([...base, ...loader(guest)], { env: { TSVMM_KVM_DEVICE: '/nonexistent/kvm' } });
  assert.is(r.status, ExitStatus.setupFailed);
  assert.is(r.stderr.trim(), 'tsvmm: /nonexistent/kvm: no such device — is the kvm module loaded?');
});

test.run();
