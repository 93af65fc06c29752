// Checkpoint/restart end to end, as a user drives it: real tsvmm processes under the real /dev/kvm, QMP over unix
// sockets, the counter guests keeping their state in RAM. Each test checkpoints a running guest, ends the old VMM,
// starts a new one, restores, and checks that the guest goes on where it was.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, rmSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import {
  cprTransfer,
  startTransferTarget,
  startVm,
  scratchDir,
  removeDir,
  type VmProcess,
} from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { vcpuReport } from '../../test/support/vcpu-report.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { COUNTER_RAM, counterVmArgs, shmRamFile } from '../../test/support/counter-vm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { toolchainUnavailable, COUNTER_STATE_ADDR, readSmpCounters } from '../../examples/guests/build.js';
import { createTapNamespace, tapUnavailable } from '../../examples/guests/virtio-probe-host.js';

const skip =
  kvmMissing() ?? (await toolchainUnavailable()) ?? (existsSync('/dev/shm') ? null : 'no /dev/shm on this host');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const minBig = (a: bigint, b: bigint) => (a < b ? a : b);

/**
 * Waits until `read()` reaches at least `value`. A guest that must make progress is given until it does, not a
 * fixed sleep: how far it gets in a given time depends on the machine. `timeoutMs` only guards against a hang.
 */
async function until(
  read: () => bigint | Promise<bigint>,
  value: bigint,
  what = 'value',
  timeoutMs = HANG_GUARD_MS,
): Promise<bigint> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (v >= value) return v;
    if (Date.now() > deadline) throw new Error(`${what} stayed at ${v}, wanted ${value}`);
    await sleep(20);
  }
}

/** Guest RAM up to the end of the counter guests' state page (counter and smp-counter both keep it at 0x101000). */
const STATE_PAGE_END = COUNTER_STATE_ADDR + 0x1000;

/** Guest RAM of a VM as bytes, through QMP pmemsave (works for any backend). */
async function guestRam(vm: VmProcess, dir: string, size = 64 << 20): Promise<Buffer> {
  const file = join(dir, `ram-${Date.now()}-${Math.random()}.bin`);
  await vm.qmp.execute('pmemsave', { val: 0, size, filename: file });
  const bytes = readFileSync(file);
  rmSync(file);
  return bytes;
}

async function quit(vm: VmProcess): Promise<void> {
  await vm.qmp.execute('quit');
  assert.is(await vm.exited, 0, `tsvmm should exit 0 after quit:\n${vm.stderr}`);
}

/**
 * How many of a process's fds are /dev/net/tun: the device number, not the link's text, which names the path as the
 * opener's mount namespace saw it (inside the rig `/newroot/dev/net/tun`).
 */
const tunFds = (pid: number) => {
  const tun = statSync('/dev/net/tun').rdev;
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return statSync(`/proc/${pid}/fd/${fd}`).rdev === tun;
    } catch {
      return false;
    }
  }).length;
};
const counterIn = (ram: Uint8Array) =>
  Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength).readBigUInt64LE(COUNTER_STATE_ADDR);

testIf(
  test,
  skip,
  'cpr reboot: cpr-save, quit, a new tsvmm -S, cpr-load — the counter goes on from where it was, RAM untouched in between, serial and timers go on',
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    try {
      const args = await counterVmArgs(dir, 'shm');
      const old = await startVm([...args, '-serial', `file:${join(dir, 'old.serial')}`], { dir, name: 'old' });
      vms.push(old);
      const ramFile = shmRamFile(dir);
      await until(() => counterIn(readFileSync(ramFile)), 250n);
      await old.qmp.execute('cpr-save', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      assert.equal(await old.qmp.execute('query-status'), { running: false, status: 'postmigrate' });
      const savedRam = readFileSync(ramFile);
      const saved = counterIn(savedRam);
      await quit(old);

      const next = await startVm([...args, '-serial', `file:${join(dir, 'new.serial')}`, '-S'], { dir, name: 'new' });
      vms.push(next);
      assert.is(sha(readFileSync(ramFile)), sha(savedRam), 'a VM waiting for cpr-load does not touch guest RAM');
      await next.qmp.execute('cpr-load', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      assert.equal(await next.qmp.execute('query-status'), { running: true, status: 'running' });
      const after = await until(() => counterIn(readFileSync(ramFile)), saved + 150n);
      assert.ok(after > saved);
      // Serial output goes on where it stopped: old.serial and new.serial read as one stream hold every hundred
      // once, in order, up past the saved count. (A save can fall between the guest storing a hundredth tick and
      // printing it, or in the middle of the line: the old VM's file then ends early and the new VM's goes on.)
      const serialCounts = () =>
        [
          ...(
            readFileSync(join(dir, 'old.serial'), 'latin1') + readFileSync(join(dir, 'new.serial'), 'latin1')
          ).matchAll(/counter: (\d+)\r?\n/g),
        ].map((m) => BigInt(m[1]));
      await until(() => serialCounts().at(-1) ?? 0n, (saved / 100n + 1n) * 100n, 'the last counter line');
      const counts = serialCounts();
      assert.equal(
        counts,
        counts.map((_, i) => BigInt(i + 1) * 100n),
        `every hundred once, in order (saved at ${saved})`,
      );
      const timings = await next.qmp.execute('x-query-cpr-timings');
      assert.ok(
        timings.marks.some((m: { phase: string; process: string }) => m.phase === 'stop-vcpus' && m.process === 'old'),
      );
      assert.ok(
        timings.marks.some((m: { phase: string; process: string }) => m.phase === 'resume' && m.process === 'new'),
      );
      assert.type(timings['pause-us'], 'number');
      // The same table from the command line, and the checkpoint as JSON.
      const table = await runTsvmm(['cpr-timings', next.qmpPath], { timeoutMs: HANG_GUARD_MS });
      assert.is(table.status, 0, table.stderr);
      assert.match(table.stdout, /old +stop-vcpus/);
      assert.match(table.stdout, /guest pause \(old stop-vcpus → new resume\): [0-9.]+ ms/);
      const dump = await runTsvmm(['vmstate', 'dump', join(dir, 'vm.cpr')], { timeoutMs: HANG_GUARD_MS });
      assert.is(dump.status, 0, dump.stderr);
      const json = JSON.stringify(JSON.parse(dump.stdout));
      for (const name of [
        'machine-config',
        'serial-16550a',
        'mc146818rtc',
        'kvm-vcpu',
        'kvm-ioapic',
        'kvm-pit2',
        'kvmclock',
      ]) {
        assert.ok(json.includes(`"${name}"`), `dump names section ${name}`);
      }
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      rmSync(shmRamFile(dir), { force: true });
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'cpr reboot: RAM that is not shared goes into the checkpoint; a guest paused before the save is restored paused with identical RAM',
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    try {
      const args = await counterVmArgs(dir, 'private', ['-serial', 'null']);
      const old = await startVm(args, { dir, name: 'old' });
      vms.push(old);
      await until(async () => counterIn(await guestRam(old, dir, STATE_PAGE_END)), 1n, 'the counter before the stop');
      await old.qmp.execute('stop');
      await old.qmp.waitEvent('STOP');
      const before = await guestRam(old, dir);
      assert.ok(counterIn(before) > 0n, 'the guest has run');
      await old.qmp.execute('cpr-save', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      await quit(old);

      const next = await startVm([...args, '-S'], { dir, name: 'new' });
      vms.push(next);
      await next.qmp.execute('cpr-load', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      assert.equal(await next.qmp.execute('query-status'), { running: false, status: 'paused' });
      const restored = await guestRam(next, dir);
      assert.is(sha(restored), sha(before), 'guest RAM is identical after the restore');
      await next.qmp.execute('cont');
      await next.qmp.waitEvent('RESUME');
      await until(
        async () => counterIn(await guestRam(next, dir, STATE_PAGE_END)),
        counterIn(before) + 1n,
        'the counter after cont',
      );
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  "cpr reboot in QEMU's spelling: mode cpr-reboot + x-ignore-shared + migrate file:, then -incoming defer + migrate-incoming — every vCPU of an SMP guest runs on",
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    const ramFile = shmRamFile(dir);
    try {
      const args = await counterVmArgs(dir, 'shm', ['-smp', '2', '-serial', 'null'], 'smp-counter');
      const old = await startVm(args, { dir, name: 'old' });
      vms.push(old);
      // Zeros until the guest has written its state page.
      const ticks = () => {
        try {
          return readSmpCounters(readFileSync(ramFile), 2);
        } catch {
          return [0n, 0n];
        }
      };
      await until(() => ticks().reduce(minBig), 100n);
      await old.qmp.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
      await old.qmp.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'x-ignore-shared', state: true }],
      });
      await old.qmp.execute('migrate', { uri: `file:${join(dir, 'vm.state')}` });
      await old.qmp.waitEvent('MIGRATION', HANG_GUARD_MS, (e) => e.data?.status === 'completed');
      const info = await old.qmp.execute('query-migrate');
      assert.is(info.status, 'completed');
      const savedTicks = ticks();
      assert.ok(readFileSync(join(dir, 'vm.state')).length < 1 << 20, 'shared RAM stays out of the file');
      await quit(old);

      const next = await startVm([...args, '-incoming', 'defer'], { dir, name: 'new' });
      vms.push(next);
      assert.is((await next.qmp.execute('query-status')).status, 'inmigrate');
      await next.qmp.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
      await next.qmp.execute('migrate-incoming', { uri: `file:${join(dir, 'vm.state')}` });
      assert.is((await next.qmp.execute('query-status')).status, 'running');
      await next.qmp.waitEvent('MIGRATION', HANG_GUARD_MS, (e) => e.data?.status === 'completed');
      await until(() => {
        const t = ticks();
        return minBig(t[0] - savedTicks[0], t[1] - savedTicks[1]);
      }, 100n);
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      rmSync(ramFile, { force: true });
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'cpr-transfer: the new tsvmm waits on a cpr channel, takes the memfd RAM while the guest runs, and resumes it after a short pause',
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    try {
      const args = await counterVmArgs(dir, 'memfd', ['-smp', '2', '-serial', 'null'], 'smp-counter');
      const old = await startVm(args, { dir, name: 'old' });
      vms.push(old);
      const { next, channel } = await startTransferTarget(args, { dir, name: 'new' });
      vms.push(next);
      await sleep(300);
      const ramBefore = await guestRam(old, dir);
      await cprTransfer(old, next, channel, dir);
      const startTicks = readSmpCounters(await guestRam(next, dir), 2);
      assert.ok(
        startTicks.every((t, i) => t >= readSmpCounters(ramBefore, 2)[i]),
        'the counts carried over',
      );
      // Every vCPU counts on: the smaller of the two counts' progress reaches 1. A failure says each vCPU's progress
      // and what its thread was doing (halted in KVM, spinning in the guest, or outside KVM_RUN): seen once in CI.
      let progress: bigint[] = [];
      await until(
        async () => {
          const later = readSmpCounters(await guestRam(next, dir, STATE_PAGE_END), 2);
          progress = later.map((t, i) => t - startTicks[i]);
          return progress.reduce(minBig);
        },
        1n,
        `the least progress of the vCPUs' counts after ${startTicks}`,
      ).catch(async (e: Error) => {
        e.message += ` (progress per vCPU: ${progress})\n${await vcpuReport(next)}`;
        throw e;
      });
      const timings = await next.qmp.execute('x-query-cpr-timings');
      assert.type(timings['pause-us'], 'number');
      await quit(old);
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip ?? tapUnavailable(),
  "cpr-transfer with virtio-net: the old tsvmm hands its tap over (a tap takes one owner), the new one runs the guest with it; the old one, quit the moment MIGRATION completed arrives (QEMU's recipe), exits 0 and the new one runs on",
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    const tap = createTapNamespace();
    try {
      const args = await counterVmArgs(dir, 'memfd', [
        '-serial',
        'null',
        '-netdev',
        `tap,id=n0,ifname=${tap.tap},script=no,downscript=no`,
        '-device',
        'virtio-net-pci,netdev=n0',
      ]);
      const old = await startVm(args, { dir, name: 'old', netns: tap.ns });
      vms.push(old);
      const { next, channel } = await startTransferTarget(args, { dir, name: 'new', netns: tap.ns });
      vms.push(next);
      await cprTransfer(old, next, channel, dir, { quitOldAtCompleted: true });
      const counted = counterIn(await guestRam(next, dir));
      await until(
        async () => counterIn(await guestRam(next, dir, STATE_PAGE_END)),
        counted + 1n,
        'the counter in the new tsvmm',
      );
      // The new tsvmm holds the tap (the same queue the old one had attached): /dev/net/tun among its fds.
      assert.ok(tunFds(next.child.pid!) >= 1, 'the new tsvmm has the tap open');
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      tap.close();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'cpr refusals: memfd RAM in reboot mode, a checkpoint of a different VM, a corrupt file — each a clear error, the VM and the file untouched',
  async () => {
    const dir = scratchDir();
    const vms: VmProcess[] = [];
    try {
      const memfdVm = await startVm(await counterVmArgs(dir, 'memfd', ['-serial', 'null']), { dir, name: 'memfd' });
      vms.push(memfdVm);
      const refused = await memfdVm.qmp
        .execute('cpr-save', { filename: join(dir, 'x.cpr'), mode: 'reboot' })
        .catch((e) => e);
      assert.instance(refused, QmpClientError);
      assert.match(refused.desc, /memfd, which does not survive the process in reboot mode/);
      assert.is((await memfdVm.qmp.execute('query-status')).status, 'running');
      assert.not.ok(existsSync(join(dir, 'x.cpr')));
      await quit(memfdVm);

      const args = await counterVmArgs(dir, 'private', ['-serial', 'null']);
      const old = await startVm(args, { dir, name: 'old' });
      vms.push(old);
      await old.qmp.execute('cpr-save', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      await quit(old);
      const good = readFileSync(join(dir, 'vm.cpr'));

      const bigger = await startVm(
        [
          ...args
            .map((a) => a.replace(`size=${COUNTER_RAM}`, 'size=128M'))
            .map((a) => (a === COUNTER_RAM ? '128M' : a)),
          '-S',
        ],
        { dir, name: 'bigger' },
      );
      vms.push(bigger);
      const mismatch = await bigger.qmp
        .execute('cpr-load', { filename: join(dir, 'vm.cpr'), mode: 'reboot' })
        .catch((e) => e);
      assert.match(mismatch.desc, /RAM size differs: checkpoint 64 MiB, this VM 128 MiB/);
      assert.is((await bigger.qmp.execute('query-status')).status, 'prelaunch');
      await quit(bigger);

      const corrupt = Buffer.from(good);
      corrupt[corrupt.length >> 1] ^= 0x40;
      writeFileSync(join(dir, 'bad.cpr'), corrupt);
      const next = await startVm([...args, '-S'], { dir, name: 'next' });
      vms.push(next);
      const bad = await next.qmp
        .execute('cpr-load', { filename: join(dir, 'bad.cpr'), mode: 'reboot' })
        .catch((e) => e);
      assert.match(bad.desc, /checksum/);
      assert.is(sha(readFileSync(join(dir, 'bad.cpr'))), sha(corrupt), 'the refused file is left as it was');
      const truncated = await next.qmp
        .execute('cpr-load', { filename: join(dir, 'vm.cpr'), mode: 'bogus' })
        .catch((e) => e);
      assert.match(truncated.desc, /cpr mode 'bogus' is not supported/);
      assert.is((await next.qmp.execute('query-status')).status, 'prelaunch');
      // After all the refusals the good file still loads.
      await next.qmp.execute('cpr-load', { filename: join(dir, 'vm.cpr'), mode: 'reboot' });
      assert.is((await next.qmp.execute('query-status')).status, 'running');
      await quit(next);
    } finally {
      for (const vm of vms) await vm.dispose();
      removeDir(dir);
    }
  },
);

test.run();
