// Checkpoint/restart with virtio devices in use: the virtio-probe guest sets up virtio-blk and virtio-rng (queues,
// DRIVER_OK, MSI-X), then works on them in rounds (rounds=N). Mid-way tsvmm is checkpointed (cpr-save, reboot mode,
// RAM on a shared /dev/shm file), the process quits, and a new tsvmm with the same command line (+ -S) loads the
// checkpoint: the guest goes on with the SAME queues — its requests complete through the re-registered ioeventfds,
// each round's interrupts arrive through the restored MSI-X routes (the guest checks both) — and ends "all ok",
// with every write before and after the checkpoint in the image file. The guest holds after a given round until a
// byte arrives on COM1 (hold_after=K), which only the restored process sends: the old process is checkpointed before
// the guest can finish, however slow the host (on a loaded nested-KVM machine it once ran all 40 rounds between the
// line the test waited for and the save).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClient, QmpClientError } from '../../test/support/qmp-client.js';
import { cliPath } from '../../test/support/tsvmm.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { debugExitProcessStatus } from './qemu-runner.js';
import { parseJsonSection, readCheckpoint } from '../../cpr/file/checkpoint-file.js';
import {
  blkPatternMismatch,
  blkRoundsMismatch,
  BLK_ROUNDS_FIRST_SECTOR,
  virtioProbeCommonArgs,
  virtioProbeProblems,
  VIRTIO_PROBE_EXIT,
  type VirtioKind,
  type VirtioProbeOptions,
} from './virtio-probe-host.js';

const skip =
  kvmMissing() ?? (await toolchainUnavailable()) ?? (existsSync('/dev/shm') ? null : 'no /dev/shm on this host');

const DISK_SECTORS = 2048; // 1 MiB
const SERIAL = 'VCPR-0001';
const FILL = 0xee; // what the image holds before the guest writes
const RAM = '64M'; // as virtioProbeCommonArgs' -m
const DEVICES: readonly VirtioKind[] = ['blk', 'rng'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
// Only whole lines count: a checkpoint can cut the old process's output between "ok" and its newline, and the new
// process then finishes that line.
const roundsIn = (out: string) => [...out.matchAll(/^virtio-probe: round (\d+) ok\r?\n/gm)].map((m) => Number(m[1]));
const context = (vm: VmProcess) => `\nCOM1:\n${vm.stdout}\nstderr:\n${vm.stderr}`;

interface Setup {
  dir: string;
  disk: string;
  shm: string;
  checkpoint: string;
  /** The tsvmm command line (without -qmp, which startVm adds) for these devices. */
  args(devices?: readonly VirtioKind[]): string[];
}

/** A scratch directory, a disk image full of FILL, guest RAM on a shared /dev/shm file, and the command line. */
async function setup(tag: string, rounds: number, roundDelayMs: number, holdAfter: number): Promise<Setup> {
  const guest = await buildGuest('virtio-probe');
  const dir = scratchDir(`tsvmm-vcpr-${tag}-`);
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, Buffer.alloc(DISK_SECTORS * 512, FILL));
  const shm = join('/dev/shm', `${dir.split('/').pop()}-ram`);
  const args = (devices: readonly VirtioKind[] = DEVICES) => {
    const o: VirtioProbeOptions = {
      kernel: guest.path,
      devices,
      want: DEVICES,
      disk,
      serial: SERIAL,
      socketDir: dir,
      rounds,
      roundDelayMs,
      holdAfter,
    };
    return [
      ...virtioProbeCommonArgs(o),
      '-object',
      `memory-backend-file,id=ram0,size=${RAM},mem-path=${shm},share=on`,
      '-machine',
      'memory-backend=ram0',
    ];
  };
  return { dir, disk, shm, checkpoint: join(dir, 'vm.cpr'), args };
}

/** Waits until the guest printed `line` on COM1 (fails early if the VMM exits first). */
async function waitForLine(vm: VmProcess, line: string, timeoutMs = HANG_GUARD_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!vm.stdout.includes(`${line}\n`)) {
    if (vm.child.exitCode !== null)
      assert.unreachable(`tsvmm exited with ${vm.child.exitCode} before "${line}"${context(vm)}`);
    if (Date.now() > deadline) assert.unreachable(`no "${line}" within ${timeoutMs} ms${context(vm)}`);
    await sleep(10);
  }
}

/** The new process's run to its end: isa-debug-exit's status. */
async function exitStatus(vm: VmProcess, timeoutMs = HANG_GUARD_MS): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const status = await Promise.race([vm.exited, timedOut]);
  clearTimeout(timer);
  if (status === 'timeout')
    assert.unreachable(`the restored guest did not finish within ${timeoutMs} ms${context(vm)}`);
  return status as number | null;
}

/** Checkpoints the old process once COM1 shows `after`, quits it, and returns its COM1 up to the checkpoint. */
async function checkpointAfter(
  s: Setup,
  after: string,
  vms: VmProcess[],
): Promise<{ out: string; roundsBefore: number[] }> {
  const old = await startVm(s.args(), { dir: s.dir, name: 'old' });
  vms.push(old);
  await waitForLine(old, after);
  await old.qmp.execute('cpr-save', { filename: s.checkpoint, mode: 'reboot' });
  assert.equal(await old.qmp.execute('query-status'), { running: false, status: 'postmigrate' }, context(old));
  await old.qmp.execute('quit');
  assert.is(await old.exited, 0, `the checkpointed tsvmm exits 0 after quit${context(old)}`);
  assert.ok(existsSync(s.checkpoint), 'the checkpoint file exists');
  const timings = readCheckpoint(s.checkpoint).sections.find((x) => x.kind === 'timings');
  const phases = (parseJsonSection(timings!) as { phase: string }[]).map((m) => m.phase);
  assert.ok(
    phases.indexOf('sync-images') >= 0 && phases.indexOf('sync-images') < phases.indexOf('collect-config'),
    `the save synced the disk image (its writes durable across a host reboot) before it captured the state: ${phases}`,
  );
  const roundsBefore = roundsIn(old.stdout);
  assert.not.match(
    old.stdout,
    /all ok|FAILED/,
    `the guest had not finished (or failed) before the checkpoint${context(old)}`,
  );
  return { out: old.stdout, roundsBefore };
}

/** Starts a new tsvmm with the setup's command line and -S, loads the checkpoint, and releases the guest's hold. */
async function restore(s: Setup, vms: VmProcess[], name: string): Promise<VmProcess> {
  const next = await startVm([...s.args(), '-S'], { dir: s.dir, name, stdin: true });
  vms.push(next);
  assert.is((await next.qmp.execute('query-status')).status, 'prelaunch');
  await next.qmp.execute('cpr-load', { filename: s.checkpoint, mode: 'reboot' });
  assert.equal(await next.qmp.execute('query-status'), { running: true, status: 'running' }, context(next));
  // The 16550 keeps the byte until the guest, at its hold, reads it.
  next.child.stdin!.write('g');
  return next;
}

/** Loads the checkpoint into a new tsvmm (same command line, -S) and checks the guest finishes its rounds there. */
async function restoreAndFinish(
  s: Setup,
  rounds: number,
  before: { out: string; roundsBefore: number[] },
  vms: VmProcess[],
): Promise<void> {
  const next = await restore(s, vms, 'new');
  const status = await exitStatus(next);
  assert.is(status, debugExitProcessStatus(VIRTIO_PROBE_EXIT.ok), `exit status of the restored guest${context(next)}`);

  // The new process did not boot the guest again: it printed only what came after the checkpoint, and the rounds
  // go on from the last one the old process saw (the one in flight at the save, if any, completes here).
  assert.not.match(next.stdout, /virtio-probe: start/, `the restored guest started over${context(next)}`);
  // A line the checkpoint cut in two ("virtio-probe: ro" | "und 11 ok") is finished by the new process.
  const last = before.roundsBefore.at(-1) ?? 0;
  const after = roundsIn(before.out.slice(before.out.lastIndexOf('\n') + 1) + next.stdout);
  assert.equal(
    after,
    Array.from({ length: rounds - last }, (_, i) => last + 1 + i),
    `rounds after the restore (last before: ${last})${context(next)}`,
  );
  // Old and new output together read as one uninterrupted run.
  assert.equal(
    virtioProbeProblems(before.out + next.stdout, {
      devices: DEVICES,
      capacitySectors: DISK_SECTORS,
      serial: SERIAL,
      rounds,
    }),
    [],
    `COM1 before the checkpoint:\n${before.out}\nafter:${context(next)}`,
  );
  assert.not.match(
    next.stderr,
    /NEEDS_RESET|needs reset|activation failed|error/i,
    `the VMM reported a problem${context(next)}`,
  );

  // Every write reached the image: the test's pattern and each round's sector, before and after the checkpoint.
  const image = readFileSync(s.disk);
  assert.is(blkPatternMismatch(image), null, 'the pattern in sectors 1-8');
  assert.is(blkRoundsMismatch(image, rounds), null, `the sectors of rounds 1-${rounds}`);
  assert.ok(
    image.subarray(0, 512).every((b) => b === FILL),
    'sector 0 untouched',
  );
  assert.ok(
    image.subarray(9 * 512, BLK_ROUNDS_FIRST_SECTOR * 512).every((b) => b === FILL),
    'sectors 9-15 untouched',
  );
  assert.ok(
    image.subarray((BLK_ROUNDS_FIRST_SECTOR + rounds) * 512).every((b) => b === FILL),
    'sectors after the last round untouched',
  );
}

function cleanup(s: Setup | undefined, vms: VmProcess[]): Promise<void> {
  return Promise.all(vms.map((vm) => vm.dispose())).then(() => {
    if (!s) return;
    rmSync(s.shm, { force: true });
    removeDir(s.dir);
  });
}

testIf(
  test,
  skip,
  'virtio cpr: a guest between rounds on virtio-blk and virtio-rng is checkpointed, a new tsvmm loads it, and the same queues finish the rounds with MSI-X; the image has every write',
  async () => {
    const rounds = 4;
    let s: Setup | undefined;
    const vms: VmProcess[] = [];
    try {
      // Held after round 2: the checkpoint finds the devices idle and the guest halted, waiting for COM1.
      s = await setup('idle', rounds, 100, 2);
      const before = await checkpointAfter(s, 'virtio-probe: holding after round 2', vms);
      assert.equal(before.roundsBefore, [1, 2], before.out);
      await restoreAndFinish(s, rounds, before, vms);
    } finally {
      await cleanup(s, vms);
    }
  },
);

testIf(
  test,
  skip,
  'virtio cpr: a checkpoint while requests are flowing (no delay between rounds) loses no request, no completion and no interrupt',
  async () => {
    // No delay between rounds, and the hold far away (after the last but one): the save lands while requests flow,
    // with hundreds of rounds of margin (a loaded nested-KVM machine ran 38 rounds during one cpr-save's latency).
    const rounds = 600;
    const holdAfter = rounds - 1;
    let s: Setup | undefined;
    const vms: VmProcess[] = [];
    try {
      s = await setup('busy', rounds, 0, holdAfter);
      const before = await checkpointAfter(s, 'virtio-probe: round 2 ok', vms);
      const last = before.roundsBefore.at(-1) ?? 0;
      assert.ok(
        last >= 2 && last < holdAfter,
        `the save came while rounds were running, not at the hold: rounds before the checkpoint ended at ${last}`,
      );
      assert.not.match(before.out, /holding/, 'the guest had not reached its hold');
      await restoreAndFinish(s, rounds, before, vms);
    } finally {
      await cleanup(s, vms);
    }
  },
);

testIf(
  test,
  skip,
  'virtio cpr: loading into a VM with a different virtio device list is refused in one line, and the checkpoint file is left untouched',
  async () => {
    let s: Setup | undefined;
    const vms: VmProcess[] = [];
    try {
      s = await setup('refuse', 3, 100, 1);
      await checkpointAfter(s, 'virtio-probe: holding after round 1', vms);
      const saved = sha(readFileSync(s.checkpoint));
      const imageBefore = sha(readFileSync(s.disk));
      const ramBefore = sha(readFileSync(s.shm));

      const noRng = await startVm([...s.args(['blk']), '-S'], { dir: s.dir, name: 'no-rng' });
      vms.push(noRng);
      const refused = await noRng.qmp
        .execute('cpr-load', { filename: s.checkpoint, mode: 'reboot' })
        .catch((e: unknown) => e);
      assert.instance(refused, QmpClientError, `cpr-load should fail${context(noRng)}`);
      const desc = (refused as QmpClientError).desc;
      assert.not.match(desc, /\n/, 'one line');
      assert.match(
        desc,
        /virtio devices differ: checkpoint has blk in slot 0, rng in slot 1, this VM has blk in slot 0/,
      );
      assert.is((await noRng.qmp.execute('query-status')).status, 'prelaunch', 'the refusing VM did not start');
      assert.is(sha(readFileSync(s.checkpoint)), saved, 'the checkpoint file is untouched');
      assert.is(sha(readFileSync(s.disk)), imageBefore, 'the disk image is untouched');
      assert.is(sha(readFileSync(s.shm)), ramBefore, 'guest RAM is untouched');
      await noRng.qmp.execute('quit');
      assert.is(await noRng.exited, 0, context(noRng));

      // The refused file still loads into the right VM, and the guest finishes there.
      const next = await restore(s, vms, 'right');
      assert.is(await exitStatus(next), debugExitProcessStatus(VIRTIO_PROBE_EXIT.ok), context(next));
      assert.match(next.stdout, /^virtio-probe: all ok$/m, context(next));
    } finally {
      await cleanup(s, vms);
    }
  },
);

testIf(
  test,
  skip,
  "virtio cpr-exec: a guest between rounds on virtio-blk and virtio-rng is exec'd into a new tsvmm image in the same process; the same queues finish the rounds and the image has every write",
  async () => {
    const rounds = 4;
    let s: Setup | undefined;
    const vms: VmProcess[] = [];
    try {
      s = await setup('exec', rounds, 100, 2);
      const vm = await startVm(s.args(), { dir: s.dir, name: 'vm', stdin: true });
      vms.push(vm);
      const pid = vm.child.pid;
      await waitForLine(vm, 'virtio-probe: holding after round 2');
      const command = [
        process.execPath,
        cliPath,
        'run',
        ...s.args(),
        '-qmp',
        `unix:${vm.qmpPath},server=on,wait=off`,
        '-incoming',
        `file:${s.checkpoint}`,
      ];
      await vm.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
      await vm.qmp.execute('migrate', { uri: `file:${s.checkpoint}` });
      const done = await vm.qmp.waitEvent(
        'MIGRATION',
        HANG_GUARD_MS,
        (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
      );
      assert.is(done.data?.status, 'completed', context(vm));
      const deadline = Date.now() + HANG_GUARD_MS;
      while (!vm.qmp.closed) {
        if (Date.now() > deadline) assert.unreachable(`no exec${context(vm)}`);
        await sleep(5);
      }
      // The same socket, the same process, now the new image.
      vm.qmp = await QmpClient.connect(vm.qmpPath);
      assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' }, context(vm));
      assert.is(vm.child.pid, pid);
      // stdin is kept across the exec too: the byte reaches the guest's UART through the new image.
      vm.child.stdin!.write('g');
      assert.is(await exitStatus(vm), debugExitProcessStatus(VIRTIO_PROBE_EXIT.ok), `exit status${context(vm)}`);
      assert.equal(roundsIn(vm.stdout), [1, 2, 3, 4], `every round once, in order${context(vm)}`);
      assert.equal(
        virtioProbeProblems(vm.stdout, { devices: DEVICES, capacitySectors: DISK_SECTORS, serial: SERIAL, rounds }),
        [],
        context(vm),
      );
      const image = readFileSync(s.disk);
      assert.is(blkPatternMismatch(image), null, 'the pattern in sectors 1-8');
      assert.is(blkRoundsMismatch(image, rounds), null, `the sectors of rounds 1-${rounds}`);
    } finally {
      await cleanup(s, vms);
    }
  },
);

test.run();
