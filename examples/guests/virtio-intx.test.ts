// The virtio-intx guest (virtio-intx.c): a modern virtio-rng without MSI-X interrupts through INTx#, which the guest
// routes through the IOAPIC pin INTERRUPT_LINE names (level-triggered, active high, vector 0x50). The same image runs
// under QEMU's pc (the reference: SeaBIOS writes the PIIX PIRQ link's ISA IRQ, 10 or 11, into INTERRUPT_LINE) and
// under tsvmm (INTERRUPT_LINE preset to the swizzled GSI 16-23); both must pass and print the same result lines but
// for the GSI. Both VMMs use KVM's in-kernel IOAPIC, so even the one redelivery per interrupt (the guest's EOI comes
// before its ISR read, while the line is still high) is the same in both.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { intxGsi } from '../../devices/pci/bus.js';
import { buildGuest, repoRoot, toolchainUnavailable } from './build.js';
import { debugExitProcessStatus, qemuAccel, qemuUnavailable, QEMU_BINARY } from './qemu-runner.js';

const toolchain = await toolchainUnavailable();
const withQemu = toolchain ?? qemuUnavailable();
const withTsvmm = toolchain ?? kvmMissing();
const withBoth = withQemu ?? withTsvmm;

const TIMEOUT_S = 30;
const ROUNDS = 3;
/** isa-debug-exit value 0: the guest's "all ok". */
const PASSED = debugExitProcessStatus(0);

interface IntxRun {
  vmm: 'qemu' | 'tsvmm';
  argv: string[];
  status: number | null;
  serial: string;
  stderr: string;
  ms: number;
}

/** The options both VMMs take alike (tsvmm spells them as QEMU does). */
function commonArgs(kernel: string): string[] {
  return [
    '-m',
    '64M',
    '-no-reboot',
    '-serial',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel',
    kernel,
    '-device',
    'virtio-rng-pci,disable-legacy=on',
  ];
}

function spawnRun(vmm: IntxRun['vmm'], argv: string[]): Promise<IntxRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let stderr = '';
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d) => {
      serial += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', (e) => {
      stderr += `spawn ${argv[0]}: ${e.message}\n`;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 2 * TIMEOUT_S * 1000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ vmm, argv, status, serial, stderr, ms: Date.now() - started });
    });
  });
}

const runs = new Map<IntxRun['vmm'], Promise<IntxRun>>();

/** Boots the guest under `vmm` once per test process (the tests below share the runs). */
function boot(vmm: IntxRun['vmm']): Promise<IntxRun> {
  let run = runs.get(vmm);
  if (!run) {
    run = buildGuest('virtio-intx').then((guest) =>
      spawnRun(
        vmm,
        vmm === 'qemu'
          ? [
              QEMU_BINARY,
              '-accel',
              qemuAccel(),
              '-M',
              'pc',
              '-nodefaults',
              '-display',
              'none',
              ...commonArgs(guest.path),
            ]
          : [
              process.execPath,
              join(repoRoot(), 'dist', 'tsvmm.mjs'),
              'run',
              ...commonArgs(guest.path),
              '--timeout',
              String(TIMEOUT_S),
            ],
      ),
    );
    runs.set(vmm, run);
  }
  return run;
}

const context = (r: IntxRun) => `\n$ ${r.argv.join(' ')}\nCOM1:\n${r.serial}\nstderr:\n${r.stderr}`;

/** What the guest says about its device: slot, pin and INTERRUPT_LINE. */
function deviceLine(r: IntxRun): { slot: number; pin: string; line: number } {
  const m = /^virtio-intx: rng 00:([0-9a-f]{2})\.0 pin INT([A-D]) line (\d+), ioapic pins 0-(\d+), apic \d+$/m.exec(
    r.serial,
  );
  assert.ok(m, `no device line${context(r)}`);
  assert.ok(
    Number(m![3]) <= Number(m![4]),
    `INTERRUPT_LINE ${m![3]} is past the IOAPIC's last pin ${m![4]}${context(r)}`,
  );
  return { slot: parseInt(m![1], 16), pin: m![2], line: Number(m![3]) };
}

/** The guest's result lines with the GSI (the one thing that differs by design) blanked; the device line left out. */
function comparable(serial: string): string[] {
  return serial
    .split(/\r?\n/)
    .filter((l) => l.startsWith('virtio-intx: ') && !l.startsWith('virtio-intx: rng 00:'))
    .map((l) => l.replace(/ on gsi \d+ /, ' on gsi N '));
}

/** Every check one run must pass on its own: exit status, one interrupt per request on INTERRUPT_LINE's pin. */
function expectPassed(r: IntxRun): number {
  assert.is(r.status, PASSED, `exit status${context(r)}`);
  const { line } = deviceLine(r);
  const irq = (what: string) =>
    new RegExp(
      `^virtio-intx: rng ${what}: irq on gsi ${line} vector 0x50, isr 0x1 then 0x0, \\d+ bytes, redelivered [01]$`,
      'm',
    );
  for (let k = 1; k <= ROUNDS; k++) assert.match(r.serial, irq(`round ${k}`), `round ${k}${context(r)}`);
  assert.match(
    r.serial,
    /^virtio-intx: rng intx disabled: completed, status\.interrupt 1, 0 irqs in 200 ms$/m,
    context(r),
  );
  assert.match(r.serial, irq('intx enabled again'), context(r));
  assert.match(
    r.serial,
    new RegExp(
      `^virtio-intx: ${ROUNDS + 1} requests, ${ROUNDS + 1} interrupts, \\d+ redelivered after an early EOI$`,
      'm',
    ),
    context(r),
  );
  assert.match(r.serial, /^virtio-intx: all ok$/m, context(r));
  return line;
}

testIf(
  test,
  withQemu,
  `virtio-intx (qemu ${qemuAccel()} pc): rng INTx on the IOAPIC pin SeaBIOS wrote into INTERRUPT_LINE: one level interrupt per request, ISR 0x1 then 0x0, none through INTX_DISABLE`,
  async () => {
    const r = await boot('qemu');
    const line = expectPassed(r);
    // SeaBIOS routes the PIIX PIRQ links to ISA IRQs 10 and 11 (the IOAPIC's pins of the same numbers).
    assert.ok(
      line === 10 || line === 11,
      `INTERRUPT_LINE ${line}: expected the PIRQ link's ISA IRQ 10 or 11${context(r)}`,
    );
  },
);

testIf(
  test,
  withTsvmm,
  "virtio-intx (tsvmm): rng INTx on the swizzled GSI preset in INTERRUPT_LINE reaches KVM's IOAPIC: one level interrupt per request, ISR 0x1 then 0x0, none through INTX_DISABLE",
  async () => {
    const r = await boot('tsvmm');
    const line = expectPassed(r);
    const { slot, pin } = deviceLine(r);
    assert.is(line, intxGsi(slot, pin.charCodeAt(0) - 64), `INTERRUPT_LINE of slot ${slot} INT${pin}${context(r)}`);
  },
);

testIf(test, withBoth, 'virtio-intx: tsvmm prints the same result lines as QEMU but for the GSI', async () => {
  const [q, t] = await Promise.all([boot('qemu'), boot('tsvmm')]);
  assert.is(q.status, PASSED, `qemu${context(q)}`);
  assert.is(t.status, PASSED, `tsvmm${context(t)}`);
  assert.ok(comparable(q.serial).length >= ROUNDS + 5, `qemu result lines${context(q)}`);
  assert.equal(comparable(t.serial), comparable(q.serial));
});

test.run();
