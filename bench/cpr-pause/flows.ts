// The four ways a controller moves a running guest to a new tsvmm, each driven over QMP exactly as a user or a
// management layer would, with every controller step stamped on the CLOCK_REALTIME axis:
//
//   reboot-incoming   documented reboot flow: cpr-save, quit, and as soon as the quit REPLY arrives (not when the
//                     old process has exited) start the new tsvmm with the same arguments plus -incoming file:PATH,
//                     which loads at start-up.
//   reboot-cpr-load   the same, but the new tsvmm starts with -S and the controller sends cpr-load once its QMP
//                     socket answers (the seed's documented spelling).
//   reboot-prestarted the new tsvmm is already running with -incoming defer (QEMU's spelling: the old one gets
//                     migrate-set-parameters mode=cpr-reboot, x-ignore-shared and migrate file:PATH; the new one
//                     migrate-incoming file:PATH as soon as the MIGRATION 'completed' event arrives, while the old one
//                     is told to quit at the same moment).
//   transfer          cpr-transfer: the new tsvmm started first with -incoming defer plus a cpr channel; the old one
//                     gets mode=cpr-transfer and migrate with main + cpr channels.
//   exec              cpr-exec: the old tsvmm gets mode=cpr-exec, a cpr-exec-command (the same tsvmm with the new
//                     process's arguments, the same QMP socket and -incoming file:PATH) and migrate file:PATH; it
//                     saves and execs the new image in its own process, which loads the file at start-up.
//
// RAM is always a memory-backend-file on /dev/shm with share=on, so every flow and size uses the same backend.
// "Touched" runs give the OLD process -mem-prealloc: it populates every page of guest RAM and its page tables up
// front, as a guest that has used all its memory would have, so the old process's teardown (unmapping 16 GiB of
// populated mappings) is as expensive as it gets. The new process gets the same arguments without -mem-prealloc
// (it maps RAM lazily, as a restarted VMM must: pre-faulting 16 GiB would sit inside the pause).
import { closeSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import type { PhaseMark } from '../../cpr/flows/timings.js';
import type { Cleanup } from './cleanup.js';
import { readTicks, waitForTicks, medianInterval } from './ticks.js';
import { Vmm, waitForPath } from './vmm.js';
import { startupTrace } from './timeline.js';
import { guardMs } from '../lib/where.js';
import { cprIncomingArg, cprTransferChannels } from '../../test/support/cpr-channels.js';

export type FlowId = 'reboot-incoming' | 'reboot-cpr-load' | 'reboot-prestarted' | 'transfer' | 'exec';

export interface FlowInfo {
  id: FlowId;
  title: string;
  /** QEMU 10 on this host, RAM on /dev/shm, median ms at 512M / 4G / 16G (from issue 3). */
  qemuMs: Record<string, number> | null;
  /** tsvmm's target, in words, and as a number per size where there is one. */
  target: string;
  targetMs: (qemuMs: number | undefined) => number | null;
}

export const FLOWS: readonly FlowInfo[] = [
  {
    id: 'reboot-incoming',
    title: 'reboot, documented: cpr-save, quit, new tsvmm -incoming file:',
    qemuMs: { '512M': 83, '4G': 82, '16G': 108 },
    target: 'at least match QEMU (≤ QEMU)',
    targetMs: (q) => q ?? null,
  },
  {
    id: 'reboot-cpr-load',
    title: 'reboot, documented: cpr-save, quit, new tsvmm -S, cpr-load',
    qemuMs: { '512M': 83, '4G': 82, '16G': 108 },
    target: 'at least match QEMU (≤ QEMU)',
    targetMs: (q) => q ?? null,
  },
  {
    id: 'reboot-prestarted',
    title: 'reboot, new tsvmm started before the save (-incoming defer, migrate / migrate-incoming)',
    qemuMs: { '512M': 9, '4G': 24, '16G': 26 },
    target: '≤ half of QEMU',
    targetMs: (q) => (q === undefined ? null : q / 2),
  },
  {
    id: 'transfer',
    title: 'cpr-transfer (new tsvmm started first, cpr channel)',
    qemuMs: { '512M': 6, '4G': 3, '16G': 12 },
    target: '≤ 2 ms median',
    targetMs: () => 2,
  },
  {
    id: 'exec',
    title: 'cpr-exec (the old tsvmm execs the new one in its own process)',
    qemuMs: null,
    target: 'as reboot-incoming (no QEMU figure: QEMU 10.2 not measured here)',
    targetMs: () => null,
  },
];

export interface RunSetup {
  cli: string;
  /** Scratch directory for sockets and debugcon logs (on disk). */
  dir: string;
  /** The checkpoint file of the reboot flows. */
  statePath: string;
  ramPath: string;
  sizeLabel: string;
  touched: boolean;
  counterKernel: string;
  cleanup: Cleanup;
  /** Guest ticks to let the old VM run before the checkpoint, and the new one after its first tick. */
  warmTicks: number;
  afterTicks: number;
}

/** One run's raw observations. All times are CLOCK_REALTIME µs. */
export interface RunRecord {
  flow: FlowId;
  size: string;
  touched: boolean;
  /** Named instants: controller steps (ctl.*), process spawn/exit, the guest's last/first tick. */
  events: Record<string, number>;
  /** Both processes' phase marks as the new process reports them (x-query-cpr-timings), plus the old one's own. */
  marks: PhaseMark[];
  oldMarks: PhaseMark[] | null;
  /** The old process's query-migrate answer, where it is still there to ask (prestarted, transfer). */
  oldQueryMigrate: Record<string, unknown> | null;
  /** The VMMs' own view: old stop-vcpus start → new resume end (x-query-cpr-timings pause-us). */
  vmmPauseUs: number | null;
  oldTickIntervalUs: number;
  newTickIntervalUs: number;
  oldTicks: number;
  newTicks: number;
  /** The old log's last and the new log's first stamps (µs), for looking at the edges of the pause. */
  oldTail: number[];
  newHead: number[];
  /** The guest's tick counter in RAM after the new VM quit (every tick also logs one byte, so it should equal oldTicks + newTicks). */
  counter: number;
}

const STARTUP_MS = guardMs(30_000);
/** The new tsvmm prints its start-up marks (src/cli/startup-trace.ts); nothing else changes. */
const TRACE = { TSVMM_TRACE_STARTUP: '1' };
/** -mem-prealloc of 16 GiB on tmpfs takes a while the first time (the pages are allocated and zeroed). */
const PREALLOC_STARTUP_MS = 300_000;

function machineArgs(s: RunSetup, name: string): string[] {
  return [
    '-m',
    s.sizeLabel,
    '-kernel',
    s.counterKernel,
    '-serial',
    'null',
    '-object',
    `memory-backend-file,id=ram0,size=${s.sizeLabel},mem-path=${s.ramPath},share=on`,
    '-machine',
    'memory-backend=ram0',
    '-device',
    'isa-debugcon,chardev=dc,timestamps=on',
    '-chardev',
    `file,id=dc,path=${debugconPath(s, name)}`,
  ];
}

const debugconPath = (s: RunSetup, name: string) => join(s.dir, `${name}.dc`);

function readCounter(ramPath: string): number {
  const fd = openSync(ramPath, 'r');
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, COUNTER_STATE_ADDR);
    return Number(b.readBigUInt64LE(0));
  } finally {
    closeSync(fd);
  }
}

/** Starts the old VM and lets its guest tick for a while (its RAM touched first when `touched`). */
async function startOld(s: RunSetup, env?: Record<string, string>): Promise<Vmm> {
  const args = [...machineArgs(s, 'old'), ...(s.touched ? ['-mem-prealloc'] : [])];
  const old = s.cleanup.track(new Vmm({ name: 'old', dir: s.dir, cli: s.cli, args, env }));
  await old.connect(s.touched ? PREALLOC_STARTUP_MS : STARTUP_MS);
  await waitForTicks(debugconPath(s, 'old'), s.warmTicks, STARTUP_MS, () => old.failure());
  return old;
}

export async function runFlow(flow: FlowId, s: RunSetup): Promise<RunRecord> {
  const ev: Record<string, number> = {};
  const state = s.statePath;
  const base = machineArgs(s, 'new');
  let old: Vmm | null = null;
  let next: Vmm | null = null;
  let oldQueryMigrate: Record<string, unknown> | null = null;
  let oldMarks: PhaseMark[] | null = null;
  try {
    if (flow === 'reboot-incoming' || flow === 'reboot-cpr-load') {
      old = await startOld(s);
      const save = old.qmp!.send('cpr-save', { filename: state, mode: 'reboot' });
      ev['ctl.save-sent'] = save.sentUs;
      ev['ctl.save-done'] = (await save.reply).atUs;
      // As QEMU's cpr-reboot recipe does, the controller asks the old VMM how the save went before it quits it:
      // the queries go out with the quit in one write, so they cost the quit's round trip a fraction of a ms.
      const migrateInfo = old.qmp!.send('query-migrate');
      const oldTimings = old.qmp!.send('x-query-cpr-timings');
      const quit = old.qmp!.send('quit');
      ev['ctl.quit-sent'] = quit.sentUs;
      ev['ctl.quit-reply'] = (await quit.reply).atUs;
      // No waiting for the old process to exit: its teardown overlaps the new one's start.
      if (flow === 'reboot-incoming') {
        next = s.cleanup.track(
          new Vmm({ name: 'new', dir: s.dir, cli: s.cli, env: TRACE, args: [...base, '-incoming', `file:${state}`] }),
        );
      } else {
        next = s.cleanup.track(new Vmm({ name: 'new', dir: s.dir, cli: s.cli, env: TRACE, args: [...base, '-S'] }));
        await next.connect(STARTUP_MS);
        const load = next.qmp!.send('cpr-load', { filename: state, mode: 'reboot' });
        ev['ctl.load-sent'] = load.sentUs;
        ev['ctl.load-reply'] = (await load.reply).atUs;
      }
      ev['ctl.spawn'] = next.spawnUs;
      oldQueryMigrate = (await migrateInfo.reply).value;
      oldMarks = (await oldTimings.reply).value.marks;
    } else if (flow === 'reboot-prestarted') {
      next = s.cleanup.track(
        new Vmm({ name: 'new', dir: s.dir, cli: s.cli, env: TRACE, args: [...base, '-incoming', 'defer'] }),
      );
      old = await startOld(s);
      const nq = await next.connect(STARTUP_MS);
      await nq.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
      await nq.execute('query-status'); // answered once its start-up (and restore-path warm-up) is over
      const oq = old.qmp!;
      await oq.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
      await oq.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
      const migrate = oq.send('migrate', { uri: `file:${state}` });
      ev['ctl.save-sent'] = migrate.sentUs;
      await migrate.reply;
      const saved = await oq.waitEvent(
        'MIGRATION',
        guardMs(60_000),
        (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
      );
      ev['ctl.save-done'] = saved.atUs;
      if (saved.data?.status !== 'completed')
        throw new Error(`migrate (cpr-reboot) failed: ${JSON.stringify(await oq.execute('query-migrate'))}`);
      const load = nq.send('migrate-incoming', { uri: `file:${state}` });
      ev['ctl.load-sent'] = load.sentUs;
      const migrateInfo = oq.send('query-migrate');
      const oldTimings = oq.send('x-query-cpr-timings');
      const quit = oq.send('quit');
      ev['ctl.quit-sent'] = quit.sentUs;
      ev['ctl.load-reply'] = (await load.reply).atUs;
      ev['ctl.quit-reply'] = (await quit.reply).atUs;
      ev['ctl.spawn'] = next.spawnUs;
      oldQueryMigrate = (await migrateInfo.reply).value;
      oldMarks = (await oldTimings.reply).value.marks;
    } else if (flow === 'exec') {
      // The new image inherits the old one's environment: the trace is asked for from the start (the new image's
      // start-up line is the last one on the shared stderr).
      old = await startOld(s, TRACE);
      const oq = old.qmp!;
      const command = [
        process.execPath,
        s.cli,
        'run',
        ...base,
        '-qmp',
        `unix:${old.qmpPath},server=on,wait=off`,
        '-incoming',
        `file:${state}`,
      ];
      await oq.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
      const migrate = oq.send('migrate', { uri: `file:${state}` });
      ev['ctl.save-sent'] = migrate.sentUs;
      await migrate.reply;
      const done = await oq.waitEvent(
        'MIGRATION',
        guardMs(60_000),
        (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
      );
      ev['ctl.save-done'] = done.atUs;
      if (done.data?.status !== 'completed')
        throw new Error(`cpr-exec failed: ${JSON.stringify(await oq.execute('query-migrate'))}`);
      // The same process goes on as the new image; its QMP connection closes at the exec.
      oq.close();
      old.qmp = null;
      next = old;
    } else {
      const channel = join(s.dir, 'cpr.sock');
      next = s.cleanup.track(
        new Vmm({
          name: 'new',
          dir: s.dir,
          cli: s.cli,
          env: TRACE,
          args: [...base, '-incoming', 'defer', '-incoming', cprIncomingArg(channel)],
        }),
      );
      old = await startOld(s);
      await waitForPath(channel, STARTUP_MS, () => next!.failure());
      const oq = old.qmp!;
      await oq.execute('migrate-set-parameters', { mode: 'cpr-transfer' });
      const migrate = oq.send('migrate', {
        channels: cprTransferChannels(join(s.dir, 'main.sock'), channel),
      });
      ev['ctl.save-sent'] = migrate.sentUs;
      await migrate.reply;
      const done = await oq.waitEvent(
        'MIGRATION',
        guardMs(60_000),
        (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
      );
      ev['ctl.save-done'] = done.atUs;
      if (done.data?.status !== 'completed')
        throw new Error(`cpr-transfer failed: ${JSON.stringify(await oq.execute('query-migrate'))}`);
      ev['ctl.spawn'] = next.spawnUs;
    }

    // The new VM runs: let it tick, then ask both VMMs what they saw.
    const newLog = debugconPath(s, 'new');
    await waitForTicks(newLog, 1, STARTUP_MS, () => next!.failure());
    await waitForTicks(newLog, s.afterTicks, STARTUP_MS, () => next!.failure());
    const nq = next.qmp ?? (await next.connect(STARTUP_MS));
    const timings = await nq.execute('x-query-cpr-timings');
    if (oldMarks === null && old !== next && old.running && old.qmp) {
      try {
        oldQueryMigrate = await old.qmp.execute('query-migrate');
        oldMarks = (await old.qmp.execute('x-query-cpr-timings')).marks;
        await old.qmp.execute('quit');
      } catch {
        /* it was already on its way out */
      }
    }
    await nq.execute('quit');
    const [oldStatus, newStatus] = await Promise.all([old.exited, next.exited]);
    if (newStatus !== 0) throw new Error(`the new tsvmm exited with ${newStatus}:\n${next.stderr}`);
    if (oldStatus !== 0) throw new Error(`the old tsvmm exited with ${oldStatus}:\n${old.stderr}`);
    if (old.exitUs !== null) ev['old.exit'] = old.exitUs;
    const origin = (timings.marks as PhaseMark[]).find((m) => m.process === 'new' && m.phase === 'process-start');
    if (origin) Object.assign(ev, startupTrace(next.stderr, origin.startUs));

    const oldStamps = readTicks(debugconPath(s, 'old'));
    const newStamps = readTicks(newLog);
    if (oldStamps.length === 0 || newStamps.length === 0) throw new Error('a debugcon log is empty');
    ev['guest.last-old-tick'] = oldStamps[oldStamps.length - 1];
    ev['guest.first-new-tick'] = newStamps[0];
    return {
      flow,
      size: s.sizeLabel,
      touched: s.touched,
      events: ev,
      marks: timings.marks,
      oldMarks,
      oldQueryMigrate,
      vmmPauseUs: timings['pause-us'],
      oldTickIntervalUs: medianInterval(oldStamps.slice(-500)),
      newTickIntervalUs: medianInterval(newStamps),
      oldTicks: oldStamps.length,
      newTicks: newStamps.length,
      oldTail: oldStamps.slice(-8),
      newHead: newStamps.slice(0, 8),
      counter: readCounter(s.ramPath),
    };
  } finally {
    await s.cleanup.killAll();
    for (const name of ['old', 'new']) rmSync(debugconPath(s, name), { force: true });
    rmSync(state, { force: true });
  }
}
