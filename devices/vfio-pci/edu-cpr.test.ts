// CPR with VFIO, end to end in the rig: QEMU's edu device passed through to a small 32-bit guest that DMAs a
// pattern into the device and back in a loop, each DMA ending in an MSI, and prints a line per round:
//   round RRRRRRRR msi MMMMMMMM
// (it stops with "BAD" when a round reads back other bytes than it wrote, "LOST" when an MSI never comes, "STUCK"
// when a DMA never ends). The guest
// crosses a cpr-transfer into a new tsvmm (container, group and device fds over SCM_RIGHTS, DMA addresses
// invalidated and updated, interrupts re-wired — no reset, no re-open) and then a cpr-exec of that one; the rounds
// go on, in order, and so do the MSIs.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assembleFlat } from '../../test/support/asm.js';
import { EDU_GUEST_ROUTINES, EDU_IDT, EDU_MSI_TO_VECTOR_0X40, eduCfgAddress } from './testing/edu-asm.js';
import { testIf } from '../../test/support/skip.js';
import { cliPath } from '../../test/support/tsvmm.js';
import { QmpClient, QmpClientError } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS, waitFor } from '../../test/support/hang-guard.js';
import {
  cprTransfer,
  removeDir,
  startTransferTarget,
  scratchDir,
  startVm,
  type VmProcess,
} from '../../test/support/vm-process.js';
import { vfioMissing, withVfioDevice } from '../../test/support/vfio-devices.js';
import { ACPI_PM_DEFAULT_BASE, PM1_CNT_OFFSET, SLP_TYP_S3 } from '../acpi-pm.js';
import { Machine } from '../../src/api/index.js';

const noEdu = vfioMissing('edu');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The loop guest (32-bit, loaded at 0x1000). With `suspendAt`, after that round it suspends to RAM (ACPI S3) once:
 * it finds the FACS through RSDP → RSDT → FADT, sets its waking vector to a real-mode stub that re-enters protected
 * mode and starts over from the top (BAR, COMMAND, MSI, IDT, LAPIC set again, as a driver's resume does), prints
 * "suspending" and writes SLP_TYP | SLP_EN to PM1a_CNT. The round and MSI counters live on in RAM.
 */
export const eduLoopGuest = (suspendAt = 0) =>
  assembleFlat(`.code32
start:
  cli
  mov $0x9000, %esp
  # BAR 0, and COMMAND = MEMORY | MASTER
  mov $0x${eduCfgAddress(0x10).toString(16)}, %eax
  call cfgread
  and $0xfffffff0, %eax
  mov %eax, %esi
  mov $0x${eduCfgAddress(0x04).toString(16)}, %eax
  mov $0x6, %ecx
  call cfgwrite
  # MSI (the first capability): address 0xfee00000, data vector 0x40, enabled
  mov $0x${eduCfgAddress(0x34).toString(16)}, %eax
  call cfgread
  and $0xfc, %eax
  mov %eax, %ebx
  or $0x${eduCfgAddress(0).toString(16)}, %ebx
${EDU_MSI_TO_VECTOR_0X40}
round:
  # the pattern: the round number and its complement-ish
  mov rounds, %eax
  mov %eax, pattern
  xor $0x5a5a5a5a, %eax
  mov %eax, pattern + 4
  movl $0, back
  movl $0, back + 4
  # RAM -> device (0x40000), with an interrupt at the end
  lea pattern, %eax
  mov %eax, 0x80(%esi)
  movl $0x40000, 0x88(%esi)
  movl $8, 0x90(%esi)
  movl $5, 0x98(%esi)
  mov $400000000, %ecx
1:testl $1, 0x98(%esi)
  jz 1f
  pause
  loop 1b
  jmp stuck
1:
  # device -> RAM, with an interrupt
  movl $0x40000, 0x80(%esi)
  lea back, %eax
  mov %eax, 0x88(%esi)
  movl $8, 0x90(%esi)
  movl $7, 0x98(%esi)
  mov $400000000, %ecx
2:testl $1, 0x98(%esi)
  jz 2f
  pause
  loop 2b
  jmp stuck
2:
  mov back, %eax
  cmp pattern, %eax
  jne bad
  mov back + 4, %eax
  cmp pattern + 4, %eax
  jne bad
  # both MSIs (a spurious one after a hand-over only adds)
  incl rounds
  mov rounds, %eax
  shl $1, %eax
  mov $400000000, %ecx
3:cmp count, %eax
  jbe 4f
  pause
  loop 3b
  lea s_lost, %edi
  call puts
  jmp fail
4:lea s_round, %edi
  call puts
  mov rounds, %eax
  call puthex8
  lea s_msi, %edi
  call puts
  mov count, %eax
  call puthex
  cmpl $${suspendAt}, rounds
  jne round
  cmpl $0, suspended
  jne round
  movl $1, suspended
  jmp suspend

suspend:
  # the RSDP: "RSD PTR " on a 16-byte boundary in 0xe0000-0xfffff
  mov $0xe0000, %edi
6:cmpl $0x20445352, (%edi)
  jne 7f
  cmpl $0x20525450, 4(%edi)
  je 8f
7:add $16, %edi
  cmp $0x100000, %edi
  jb 6b
  jmp fail
8:mov 16(%edi), %ebx
  mov 4(%ebx), %ecx
  add %ebx, %ecx
  lea 36(%ebx), %edx
9:cmp %ecx, %edx
  jae fail
  mov (%edx), %eax
  cmpl $0x50434146, (%eax)
  je 10f
  add $4, %edx
  jmp 9b
10:mov 36(%eax), %ebx
  movl $wake16, 12(%ebx)
  lea s_susp, %edi
  call puts
  mov $0x${(ACPI_PM_DEFAULT_BASE + PM1_CNT_OFFSET).toString(16)}, %dx
  mov $0x${((SLP_TYP_S3 << 10) | 0x2000).toString(16)}, %ax
  out %ax, %dx
11:hlt
  jmp 11b

# the waking vector: real mode, CS = wake16 >> 4, IP = 0
.balign 16
wake16:
.code16
  cli
  xor %ax, %ax
  mov %ax, %ds
  lgdtl gdtr
  mov %cr0, %eax
  or $1, %eax
  mov %eax, %cr0
  ljmpl $0x08, $wake32
.code32
wake32:
  mov $0x10, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov %ax, %fs
  mov %ax, %gs
  mov $0x9000, %esp
  lea s_woke, %edi
  call puts
  jmp start

stuck:
  lea s_stuck, %edi
  call puts
  jmp fail
bad:
  lea s_bad, %edi
  call puts
fail:
  mov $0xf4, %dx
  mov $0x7f, %al
  out %al, %dx
  hlt

handler:
  push %eax
  mov 0x24(%esi), %eax
  mov %eax, 0x64(%esi)
  incl count
  movl $0, 0xfee000b0
  pop %eax
  iret

${EDU_GUEST_ROUTINES}s_round: .asciz "round "
s_msi: .asciz " msi "
s_bad: .asciz "BAD\\n"
s_lost: .asciz "LOST\\n"
s_susp: .asciz "suspending\\n"
s_stuck: .asciz "STUCK\\n"
s_woke: .asciz "woke\\n"
.balign 8
gdt: .quad 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
gdtr: .word 23
  .long gdt
suspended: .long 0
.balign 8
pattern: .quad 0
back: .quad 0
rounds: .long 0
count: .long 0
${EDU_IDT}`);

interface Round {
  round: number;
  msi: number;
}
const rounds = (out: string): Round[] =>
  [...out.matchAll(/round ([0-9a-f]{8}) msi ([0-9a-f]{8})\r?\n/g)].map((m) => ({
    round: Number.parseInt(m[1], 16),
    msi: Number.parseInt(m[2], 16),
  }));

/** Waits for round `n` on a guest's COM1 (`out()`), failing as soon as it reports a fault or its VMM ends. */
async function roundsReachIn(
  out: () => string,
  ended: () => boolean,
  n: number,
  what: string,
  log = '',
): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const r = rounds(out());
    if (r.length && r[r.length - 1].round >= n) return;
    if (/BAD|LOST|STUCK/.test(out()) || ended() || Date.now() > deadline)
      assert.unreachable(`${what}: the guest stopped at ${JSON.stringify(r.at(-1))}\n${out()}\n${log}`);
    await sleep(50);
  }
}

const roundsReach = (vm: VmProcess, n: number, what: string) =>
  roundsReachIn(
    () => vm.stdout,
    () => vm.child.exitCode !== null,
    n,
    what,
    vm.stderr,
  );

const lastRound = (vm: VmProcess) => rounds(vm.stdout).at(-1)?.round ?? 0;

/**
 * The pause and its phases (x-query-cpr-timings), on the test's output (the runner shows it when a file fails); the
 * phases as "old vfio-invalidate-vaddr", "new resume", ….
 */
async function pauseTable(vm: VmProcess, mode: string): Promise<{ pause: number | null; phases: string[] }> {
  const t = await vm.qmp.execute('x-query-cpr-timings');
  console.log(`edu ${mode}: pause ${t['pause-us']} us\n${t.table}\n`);
  const marks = t.marks as { process: string; phase: string }[];
  return { pause: t['pause-us'], phases: marks.map((m) => `${m.process} ${m.phase}`) };
}

/** A hand-over with the device kept: a pause, and the DMA addresses forgotten by one image and given by the next. */
function checkHandOverPhases(t: { pause: number | null; phases: string[] }, mode: string): void {
  assert.type(t.pause, 'number', mode);
  for (const phase of ['old vfio-invalidate-vaddr', 'new vfio-update-vaddr'])
    assert.ok(t.phases.includes(phase), `${mode}: ${phase} in ${JSON.stringify(t.phases)}`);
}

/**
 * The rounds seen by one process, then the next: each process's rounds continue the previous one's, in order. The
 * outputs are joined first: a line the guest was writing when it was handed over starts in one process's COM1 and
 * ends in the next one's.
 */
function checkRounds(outs: string[]): void {
  const all = rounds(outs.join(''));
  assert.ok(all.length >= 6, outs.join('\n---\n'));
  for (const [i, r] of all.entries()) {
    assert.is(r.round, all[0].round + i, `round ${r.round} in order (${JSON.stringify(all)})`);
    assert.ok(r.msi >= 2 * r.round, `round ${r.round}: both MSIs of every round came (${r.msi})`);
  }
}

testIf(
  test,
  noEdu,
  'vfio cpr: the edu loop guest (DMA both ways + an MSI each) crosses a cpr-transfer and then a cpr-exec: the device is not reset, rounds go on in order, data intact, every MSI delivered',
  () =>
    withVfioDevice('edu', async (edu) => {
      const dir = scratchDir('tsvmm-vfio-cpr-');
      const args = [
        '-m',
        '64M',
        '-object',
        'memory-backend-memfd,id=ram0,size=64M,share=on',
        '-machine',
        'memory-backend=ram0',
        '-serial',
        'stdio',
        '-device',
        'isa-debug-exit',
        '-device',
        `vfio-pci,host=${edu.bdf},id=edu0`,
        '-device',
        `loader,file=${eduLoopGuest()},addr=0x1000,mode=protected`,
      ];
      let old: VmProcess | undefined;
      let next: VmProcess | undefined;
      try {
        old = await startVm(args, { dir, name: 'old' });
        await roundsReach(old, 3, 'before the transfer');

        // cpr-transfer
        // Assigned at the spawn: the finally below disposes of it even if it never listens.
        const target = await startTransferTarget(args, { dir, name: 'new', onSpawn: (vm) => (next = vm) });
        next = target.next;
        const channel = target.channel;
        await cprTransfer(old, next, channel, dir);
        checkHandOverPhases(await pauseTable(old, 'cpr-transfer'), 'cpr-transfer');
        const handedAt = lastRound(old);
        await old.qmp.execute('quit').catch(() => {});
        await old.exited;
        // The old process is gone: its teardown must not have unmapped the DMA or reset the device.
        await roundsReach(next, handedAt + 4, 'after the transfer');

        // cpr-exec of the new process
        const state = join(dir, 'exec.state');
        const command = [
          process.execPath,
          cliPath,
          'run',
          ...args,
          '-qmp',
          `unix:${next.qmpPath},server=on,wait=off`,
          '-incoming',
          `file:${state}`,
        ];
        await next.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
        await next.qmp.execute('migrate', { uri: `file:${state}` });
        const done = await next.qmp.waitEvent(
          'MIGRATION',
          HANG_GUARD_MS,
          (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
        );
        assert.is(done.data?.status, 'completed', next.stderr);
        const oldQmp = next.qmp;
        const deadline = Date.now() + HANG_GUARD_MS;
        while (!oldQmp.closed) {
          if (Date.now() > deadline) assert.unreachable(`the old image did not exec:\n${next.stderr}`);
          await sleep(5);
        }
        next.qmp = await QmpClient.connect(next.qmpPath);
        assert.is((await next.qmp.execute('query-status')).status, 'running', next.stderr);
        checkHandOverPhases(await pauseTable(next, 'cpr-exec'), 'cpr-exec');
        const execAt = lastRound(next);
        await roundsReach(next, execAt + 4, 'after the exec');

        assert.not.match(old.stdout + next.stdout, /BAD|LOST|STUCK/);
        checkRounds([old.stdout, next.stdout]);
        assert.not.match(next.stderr, /VFIO_DEVICE_SET_IRQS|DMA|failed/, next.stderr);
        await next.qmp.execute('quit');
        assert.is(await next.exited, 0);
      } finally {
        await next?.dispose();
        await old?.dispose();
        removeDir(dir);
      }
    }),
);

testIf(
  test,
  noEdu,
  "vfio cpr-reboot: refused with QEMU's text while the edu guest runs; in S3 cpr-save is accepted; a new tsvmm (same -device) opens the device afresh, cpr-load + system_wakeup, and the guest's DMA and MSIs work again; so does Machine.restore(file) from the file alone (the function taken from its CONFIG record)",
  () =>
    withVfioDevice('edu', async (edu) => {
      const dir = scratchDir('tsvmm-vfio-s3-');
      const file = join(dir, 'vm.cpr');
      const args = [
        '-m',
        '64M',
        '-serial',
        'stdio',
        '-device',
        'isa-debug-exit',
        '-device',
        `vfio-pci,host=${edu.bdf},id=edu0`,
        '-device',
        `loader,file=${eduLoopGuest(3)},addr=0x1000,mode=protected`,
      ];
      let old: VmProcess | undefined;
      let next: VmProcess | undefined;
      let restored: Machine | undefined;
      let restoredEnded = false;
      try {
        old = await startVm(args, { dir, name: 'old' });
        await roundsReach(old, 1, 'before the refusal');
        const refused = await old.qmp.execute('cpr-save', { filename: file, mode: 'reboot' }).catch((e: unknown) => e);
        assert.instance(refused, QmpClientError);
        assert.is((refused as QmpClientError).desc, 'VFIO device only supports cpr-reboot for runstate suspended');
        assert.is((await old.qmp.execute('query-status')).status, 'running');
        await waitFor(
          () => old!.stdout.includes('suspending'),
          'the guest suspends',
          () => old!.stdout + old!.stderr,
        );
        const deadline = Date.now() + HANG_GUARD_MS;
        while ((await old.qmp.execute('query-status')).status !== 'suspended') {
          if (Date.now() > deadline) assert.unreachable(`not suspended:\n${old.stderr}`);
          await sleep(20);
        }
        await old.qmp.execute('cpr-save', { filename: file, mode: 'reboot' });
        await pauseTable(old, 'cpr-reboot-save');
        await old.qmp.execute('quit').catch(() => {});
        await old.exited;

        next = await startVm([...args, '-S'], { dir, name: 'new' });
        await next.qmp.execute('cpr-load', { filename: file, mode: 'reboot' });
        assert.is((await next.qmp.execute('query-status')).status, 'suspended', next.stderr);
        await next.qmp.execute('system_wakeup');
        await roundsReach(next, 3 + 4, 'after the wake-up');
        assert.match(next.stdout, /^woke\r?\n/, next.stdout);
        assert.not.match(old.stdout + next.stdout, /BAD|LOST|STUCK/);
        checkRounds([old.stdout, next.stdout]);
        // A fresh open of the function (reset) and its interrupts set from the record: nothing to complain about.
        assert.not.match(next.stderr, /INTx|VFIO_DEVICE_SET_IRQS|EBUSY/, next.stderr);
        await pauseTable(next, 'cpr-reboot'); // no pause figure: the guest sleeps in S3 between save and wake-up
        await next.qmp.execute('quit');
        assert.is(await next.exited, 0);

        // The same checkpoint (RAM in it: -m 64M is anonymous) from the file alone, in this process: the Node
        // library rebuilds the machine from the CONFIG record, edu included, and the guest wakes up on it again.
        restored = await Machine.restore(file);
        let out = '';
        restored.serial.setEncoding('utf8');
        restored.serial.on('data', (d: string) => {
          out += d;
        });
        void restored.exited.then(() => {
          restoredEnded = true;
        });
        assert.is(restored.status, 'suspended');
        restored.start();
        await restored.wakeup();
        await roundsReachIn(
          () => out,
          () => restoredEnded,
          3 + 4,
          'Machine.restore: after the wake-up',
        );
        assert.match(out, /^woke\r?\n/, out);
        assert.not.match(out, /BAD|LOST|STUCK/);
        checkRounds([old.stdout, out]);
        assert.equal(await restored.quit(), { status: 0, reason: 'quit' });
      } finally {
        if (restored && !restoredEnded) await restored.quit().catch(() => {});
        await next?.dispose();
        await old?.dispose();
        removeDir(dir);
      }
    }),
);

test.run();
