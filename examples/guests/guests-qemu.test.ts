// Runs every test guest under QEMU and checks what it prints and how it exits: proof that the guests are plain PC
// programs that QEMU's `-kernel` (multiboot) or BIOS (boot sector) starts unchanged. On this host QEMU uses KVM,
// whose instruction emulator is the one tsvmm's guests run in, so host-rule violations (iret, int n) fail here too.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { testIf } from '../../test/support/skip.js';
import { buildGuest, patchOutloop, readSmpCounters, toolchainUnavailable, writeGuestVariant } from './build.js';
import { debugExitProcessStatus, qemuAccel, qemuUnavailable, runQemu, type QemuRun } from './qemu-runner.js';

const reason = qemuUnavailable() ?? (await toolchainUnavailable());
const accel = qemuAccel();
const it = (name: string, fn: () => Promise<void>) => testIf(test, reason, `qemu (${accel}): ${name}`, fn);

function expectExit(r: QemuRun, value: number): void {
  const context = `serial:\n${r.serial}\nstderr:\n${r.stderr}`;
  assert.not.ok(r.timedOut, `timed out after ${r.ms} ms; ${context}`);
  assert.is(r.status, debugExitProcessStatus(value), `exit status; ${context}`);
}

it('hello prints its greeting on COM1 and exits with debug-exit 0 (status 1)', async () => {
  const g = await buildGuest('hello');
  const r = await runQemu({ kernel: g.path });
  expectExit(r, 0);
  assert.ok(r.serial.includes('Hello from tsvmm guest\n'), r.serial);
});

it('exit-code exits with 42 by default and with code=N from -append (a.out-kludge image)', async () => {
  const g = await buildGuest('exit-code');
  assert.is(g.multiboot, 'aout-kludge');
  const byDefault = await runQemu({ kernel: g.path });
  expectExit(byDefault, 42);
  assert.ok(byDefault.serial.includes('exit-code: exiting with 42\n'), byDefault.serial);
  const seven = await runQemu({ kernel: g.path, append: 'code=7' });
  expectExit(seven, 7);
  assert.ok(seven.serial.includes('exit-code: exiting with 7\n'), seven.serial);
});

it('smp starts the AP with INIT-SIPI-SIPI and every CPU reports in', async () => {
  const g = await buildGuest('smp');
  const r = await runQemu({ kernel: g.path, smp: 2 });
  expectExit(r, 0);
  assert.ok(r.serial.includes('smp: bsp apic id 0, 2 cpus\n'), r.serial);
  assert.ok(r.serial.includes('cpu 1 up\n'), r.serial);
  assert.ok(r.serial.trimEnd().endsWith('all 2 cpus up'), r.serial);
});

it('timer counts 100 PIT interrupts through its IDT without iret', async () => {
  const g = await buildGuest('timer');
  const r = await runQemu({ kernel: g.path, append: 'ticks=100' });
  expectExit(r, 0);
  assert.ok(r.serial.includes('timer: 100 ticks\n'), r.serial);
});

it('rtc prints the date and time within a few seconds of host UTC', async () => {
  const g = await buildGuest('rtc');
  const before = Date.now();
  const r = await runQemu({ kernel: g.path });
  const after = Date.now();
  expectExit(r, 0);
  const m = /rtc: (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\n/.exec(r.serial);
  assert.ok(m, r.serial);
  const guest = Date.UTC(+m![1], +m![2] - 1, +m![3], +m![4], +m![5], +m![6]);
  assert.ok(
    guest >= before - 5000 && guest <= after + 5000,
    `guest time ${new Date(guest).toISOString()} vs host ${new Date(before).toISOString()}`,
  );
});

it('counter ticks every 1 ms, writes one byte per tick to port 0xe9 and stops after ticks=N', async () => {
  const g = await buildGuest('counter');
  const r = await runQemu({ kernel: g.path, append: 'ticks=250', debugcon: true });
  expectExit(r, 0);
  assert.ok(r.serial.includes('counter: state at 0x00101000, limit 250\n'), r.serial);
  assert.ok(r.serial.includes('counter: 100\ncounter: 200\ncounter: done 250\n'), r.serial);
  assert.is(r.debugcon.toString('latin1'), '.'.repeat(250));
});

it('fwcfg reads the "QEMU" signature and the CPU count', async () => {
  const g = await buildGuest('fwcfg');
  const r = await runQemu({ kernel: g.path, smp: 2 });
  expectExit(r, 0);
  assert.ok(r.serial.includes('fw_cfg: QEMU cpus=2\n'), r.serial);
});

it('realmode-hello runs in real mode from 0x7c00 (booted by the BIOS as a boot sector)', async () => {
  const g = await buildGuest('realmode-hello');
  assert.equal([g.format, g.mode, g.loadAddress], ['flat', 'real', 0x7c00]);
  const r = await runQemu({ bootDisk: g.path });
  expectExit(r, 0);
  assert.ok(r.serial.includes('Hello from real mode\n'), r.serial);
});

it('longmode-hello runs in 64-bit mode (started by lm-shim from a multiboot module)', async () => {
  const g = await buildGuest('longmode-hello');
  assert.equal([g.format, g.mode], ['flat', 'long']);
  const shim = await buildGuest('lm-shim');
  const r = await runQemu({ kernel: shim.path, initrd: g.path });
  expectExit(r, 0);
  assert.ok(r.serial.includes('Hello from long mode (EFER.LMA=1)\n'), r.serial);
});

it('outloop runs its loop and exits; patched parameters change the port, value and count', async () => {
  const g = await buildGuest('outloop');
  const plain = await runQemu({ bootDisk: g.path });
  expectExit(plain, 0);
  assert.ok(plain.serial.includes('outloop: done\n'), plain.serial);
  const patched = patchOutloop(await readFile(g.path), { iterations: 37, port: 0xe9, value: 0x78 });
  const r = await runQemu({ bootDisk: await writeGuestVariant('outloop-37-e9', patched), debugcon: true });
  expectExit(r, 0);
  assert.is(r.debugcon.toString('latin1'), 'x'.repeat(37));
});

it('smp-counter: every one of 4 CPUs counts its own LAPIC timer ticks in RAM; ticks=200 exits once all reach 200', async () => {
  const g = await buildGuest('smp-counter');
  const ramFile = `/dev/shm/tsvmm-test-qemu-smp-counter-${process.pid}`;
  try {
    const r = await runQemu({
      kernel: g.path,
      smp: 4,
      append: 'ticks=200',
      extraArgs: [
        '-object',
        `memory-backend-file,id=ram0,size=64M,mem-path=${ramFile},share=on`,
        '-machine',
        'memory-backend=ram0',
      ],
    });
    expectExit(r, 0);
    assert.match(r.serial, /^smp-counter: state at 0x00101000, 4 cpus, limit 200, lapic count \d+\n/m);
    assert.match(r.serial, /^smp-counter: 4 cpus counting\n/m);
    assert.match(r.serial, /^smp-counter: 100 \d+ \d+ \d+\n/m);
    const done = /^smp-counter: done (\d+) (\d+) (\d+) (\d+)\n/m.exec(r.serial);
    assert.ok(done, r.serial);
    const printed = done!.slice(1).map(BigInt);
    const counters = readSmpCounters(readFileSync(ramFile), 4);
    for (let cpu = 0; cpu < 4; cpu++) {
      assert.ok(printed[cpu] >= 200n, `cpu ${cpu} printed ${printed[cpu]}`);
      assert.ok(counters[cpu] >= printed[cpu], `cpu ${cpu}: RAM ${counters[cpu]} < printed ${printed[cpu]}`);
    }
  } finally {
    rmSync(ramFile, { force: true });
  }
});

test.run();
