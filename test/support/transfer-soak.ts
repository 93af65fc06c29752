// The cpr-transfer soak: a chain of hand-overs of one VM whose guest keeps doing virtio-blk + virtio-rng I/O
// (examples/guests/virtio-probe.c with rounds=), old → new, the new becoming the old. Each new process is started
// (listening on its cpr channel) before its hand-over, as a deployment would, and after each hand-over the driver
// records what would show a leak down the chain: the new process's fds (count and kinds), its RSS and the old one's,
// the guest's rounds so far, and how long the hand-over took. The judge (transfer-soak-judge.ts) says whether that
// is flat. Used by bench/soak.ts (`npm run soak`, 200 by default).
import { closeSync, openSync, readSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { buildGuest } from '../../examples/guests/build.js';
import {
  blkPatternMismatch,
  blkRoundsMismatch,
  BLK_ROUNDS_FIRST_SECTOR,
  SECTOR_BYTES,
  virtioProbeCommonArgs,
} from '../../examples/guests/virtio-probe-host.js';
import { HANG_GUARD_MS } from './hang-guard.js';
import { processSample, type ProcessSample } from './proc-sample.js';
import { cprTransfer, removeDir, scratchDir, startTransferTarget, startVm, type VmProcess } from './vm-process.js';
import type { SoakGeneration, SoakReport } from './transfer-soak-judge.js';
import { roundsIn } from './transfer-soak-rounds.js';

/** Rounds the guest is asked for: far more than any soak reaches, so it is always mid-rounds (each writes a sector). */
const GUEST_ROUNDS = 1_000_000;
const RAM = '64M'; // virtioProbeCommonArgs' -m

export interface SoakOptions {
  generations: number;
  /** The guest's pause between rounds (default 20 ms): I/O goes on during every hand-over. */
  roundDelayMs?: number;
  /** Called after each generation's record (progress for a long run). */
  onGeneration?: (g: SoakGeneration) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `vm`'s own COM1 output has a whole round line more than `seen` (the guest is moving in it). */
async function nextRound(vm: VmProcess, seen: number): Promise<number> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const last = roundsIn(vm.stdout).at(-1) ?? 0;
    if (last > seen) return last;
    if (vm.child.exitCode !== null)
      throw new Error(`tsvmm exited (${vm.child.exitCode}):\n${vm.stdout.slice(-2000)}\n${vm.stderr}`);
    if (Date.now() > deadline) throw new Error(`no round after ${seen} within ${HANG_GUARD_MS} ms\n${vm.stderr}`);
    await sleep(10);
  }
}

async function quit(vm: VmProcess): Promise<number | null> {
  await vm.qmp.execute('quit');
  return vm.exited;
}

/** Reads the image's first `bytes` bytes (the image itself is sparse and far larger). */
function readPrefix(path: string, bytes: number): Uint8Array {
  const buf = new Uint8Array(bytes);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < bytes) {
      const n = readSync(fd, buf, done, bytes - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** Runs the chain and returns what was recorded; throws only when a step cannot go on (a hang, a failed hand-over). */
export async function runTransferSoak(o: SoakOptions): Promise<SoakReport> {
  const guest = await buildGuest('virtio-probe');
  const dir = scratchDir('tsvmm-soak-');
  const disk = join(dir, 'disk.img');
  // Sparse: sectors 0..15 for the probe's own tests, then one sector per round.
  const fd = openSync(disk, 'wx', 0o600);
  writeSync(fd, new Uint8Array(SECTOR_BYTES), 0, SECTOR_BYTES, 0);
  closeSync(fd);
  truncateSync(disk, (BLK_ROUNDS_FIRST_SECTOR + GUEST_ROUNDS) * SECTOR_BYTES);
  const args = [
    ...virtioProbeCommonArgs({
      kernel: guest.path,
      devices: ['blk', 'rng'],
      want: ['blk', 'rng'],
      disk,
      serial: 'SOAK-0001',
      socketDir: dir,
      rounds: GUEST_ROUNDS,
      roundDelayMs: o.roundDelayMs ?? 20,
    }),
    '-object',
    `memory-backend-memfd,id=ram0,size=${RAM},share=on`,
    '-machine',
    'memory-backend=ram0',
  ];
  const outputs: string[] = [];
  const stderrs: string[] = [];
  const generations: SoakGeneration[] = [];
  const live: VmProcess[] = [];
  const exitStatuses: (number | null)[] = [];
  let boot: ProcessSample | null = null;
  // A new process waiting on its cpr channel for generation k, and how long it took to get there.
  const startTarget = async (k: number): Promise<{ next: VmProcess; channel: string; startMs: number }> => {
    const t0 = performance.now();
    const { next, channel } = await startTransferTarget(args, {
      dir,
      name: `gen${k}`,
      channel: `cpr-${k}.sock`,
      onSpawn: (vm) => live.push(vm),
    });
    return { next, channel, startMs: performance.now() - t0 };
  };
  // Handled at once (a failed start is thrown where it is awaited, not as an unhandled rejection meanwhile).
  const startNext = (k: number) => {
    const p = startTarget(k);
    p.catch(() => undefined);
    return p;
  };
  let pending: ReturnType<typeof startTarget> | null = null;
  try {
    let old = await startVm(args, { dir, name: 'gen0' });
    live.push(old);
    let seen = await nextRound(old, 0);
    boot = await processSample(old.child.pid!);
    pending = startNext(1);
    for (let k = 1; k <= o.generations; k++) {
      const { next, channel, startMs } = await pending!;
      const oldSample = await processSample(old.child.pid!);
      const t1 = performance.now();
      await cprTransfer(old, next, channel, dir);
      const handOverMs = performance.now() - t1;
      const timings = await next.qmp.execute('x-query-cpr-timings');
      // Node takes seconds to start in the rig: the next generation's process starts while this one settles.
      if (k < o.generations) pending = startNext(k + 1);
      exitStatuses.push(await quit(old));
      outputs.push(old.stdout);
      stderrs.push(old.stderr);
      live.splice(live.indexOf(old), 1);
      // The guest goes on in the new process: a whole round there, then the new process is sampled, settled.
      seen = await nextRound(next, Math.max(seen, roundsIn(old.stdout).at(-1) ?? 0));
      const sample = await processSample(next.child.pid!);
      const g: SoakGeneration = {
        generation: k,
        pid: next.child.pid!,
        startMs,
        handOverMs,
        pauseUs: typeof timings['pause-us'] === 'number' ? timings['pause-us'] : null,
        fds: sample.fds,
        fdKinds: sample.fdKinds,
        rssKiB: sample.rssKiB,
        rssAnonKiB: sample.rssAnonKiB,
        oldRssKiB: oldSample.rssKiB,
        oldRssAnonKiB: oldSample.rssAnonKiB,
        rounds: seen,
      };
      generations.push(g);
      o.onGeneration?.(g);
      old = next;
    }
    // The last process: one more round, then quit; all the output together is one run of the guest.
    await nextRound(old, seen);
    exitStatuses.push(await quit(old));
    outputs.push(old.stdout);
    stderrs.push(old.stderr);
    live.length = 0;
    const output = outputs.join('');
    const lastRound = roundsIn(output).at(-1) ?? 0;
    const image = readPrefix(disk, (BLK_ROUNDS_FIRST_SECTOR + lastRound) * SECTOR_BYTES);
    return {
      boot,
      generations,
      output,
      stderr: stderrs,
      exitStatuses,
      lastRound,
      imageProblem: blkPatternMismatch(image) ?? blkRoundsMismatch(image, lastRound),
    };
  } catch (e) {
    // Say what became of every process still in the chain: a soak failure is most often one of them ending early.
    const report = await Promise.all(
      live.map(async (vm) => {
        const status = await Promise.race([
          vm.exited,
          new Promise((resolve) => setTimeout(() => resolve('running'), 100)),
        ]);
        const signal = vm.child.signalCode ? ` (signal ${vm.child.signalCode})` : '';
        // COM1 too: a guest that failed a round says so there and ends tsvmm through isa-debug-exit.
        return `pid ${vm.child.pid}: ${status === 'running' ? 'running' : `exited ${status}${signal}`}, stderr: ${vm.stderr.slice(-1500) || '(none)'}\nCOM1 (tail): ${vm.stdout.slice(-1500) || '(none)'}`;
      }),
    );
    (e as Error).message += `\nprocesses in the chain:\n${report.join('\n')}`;
    throw e;
  } finally {
    await pending?.catch(() => undefined);
    for (const vm of live) await vm.dispose();
    removeDir(dir);
  }
}
