// The CPR flows of bench/linux-cpr, driven over QMP with the same commands for tsvmm and for QEMU 10 (QEMU's own
// spelling, which tsvmm takes as it is; docs/cpr.md). Each flow moves the running guest from the current process to
// a new one, which becomes the current process of the next flow: one boot per VMM, then a chain of pauses.
//
//   reboot             cpr-reboot as documented: migrate file:PATH (x-ignore-shared), quit, and on quit's reply
//                      start the new process with -incoming defer and send it migrate-incoming file:PATH.
//   reboot-prestarted  the same, with the new process started (and set up) before the save.
//   transfer           cpr-transfer: the new process started first with a cpr channel (QEMU: and its main
//                      channel, -incoming unix:PATH, since its monitor only comes up after the cpr state arrives;
//                      tsvmm: -incoming defer), migrate with main + cpr channels, quit the old one when done.
//
// tsvmm's cpr-save/cpr-load spelling is the same flow as `reboot` inside tsvmm, so it is not measured again.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { guardMs } from '../lib/where.js';
import { cprIncomingArg, cprTransferChannels } from '../../test/support/cpr-channels.js';
import { waitForPath } from '../cpr-pause/vmm.js';
import { TickVmm } from './tick-vmm.js';

export const LINUX_CPR_FLOWS = ['reboot', 'reboot-prestarted', 'transfer'] as const;
export type LinuxCprFlow = (typeof LINUX_CPR_FLOWS)[number];

export interface CprVmmKind {
  id: 'tsvmm' | 'qemu';
  /** The whole command of one process: the machine, then `extra` (-incoming …), -qmp and -serial on these paths. */
  argv(extra: readonly string[], qmpPath: string, serialPath: string): string[];
  /** The main -incoming channel of a cpr-transfer target. */
  transferMain(mainSocket: string): string;
}

export interface FlowRecord {
  flow: LinuxCprFlow;
  /** Last tick from the old process → first tick from the new one, as this process received them (ms). */
  gapMs: number;
  /** The new process's first byte follows the old one's last (no tick lost or replayed). */
  continuous: boolean;
  oldTicks: number;
  /** tsvmm: x-query-cpr-timings pause-us (old stop-vcpus → new resume), ms; QEMU: null. */
  vmmPauseMs: number | null;
  /** The old process's query-migrate downtime, ms (QEMU: the source side's; tsvmm: see docs/cpr.md). */
  downtimeMs: number | null;
}

export interface FlowSetup {
  kind: CprVmmKind;
  dir: string;
  statePath: string;
  /** How long a new process may take to start and a migration to finish. */
  timeoutMs: number;
  /** Ticks the new process must deliver before the flow counts as done (and the next may start). */
  afterTicks: number;
  /** A unique name for the next process. */
  nextName(): string;
}

const completed = (e: { data?: Record<string, unknown> }) =>
  e.data?.status === 'completed' || e.data?.status === 'failed';

async function rebootParams(vmm: TickVmm, timeoutMs: number): Promise<void> {
  const q = await vmm.connect(timeoutMs);
  await q.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
  await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
}

/** Sends `migrate` to the old process and waits for its MIGRATION completed event; returns query-migrate. */
async function migrateOld(old: TickVmm, args: Record<string, unknown>, timeoutMs: number) {
  const q = old.qmp!;
  // QEMU sends MIGRATION events only with this capability on (tsvmm always does; it takes the capability).
  await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
  // Only this migration's events count: a process that was itself loaded by migrate-incoming has already sent a
  // MIGRATION completed (tsvmm sends it without the capability, QEMU not), and taking that one for this
  // migration's is what once quit tsvmm's old process in the middle of a cpr-transfer.
  q.events.length = 0;
  await q.execute('migrate', args);
  const done = await q.waitEvent('MIGRATION', timeoutMs, completed);
  const info = (await q.execute('query-migrate')) as { status?: string; downtime?: number };
  if (done.data?.status !== 'completed' || info.status !== 'completed')
    throw new Error(`migrate failed: ${JSON.stringify(info)}`);
  return info;
}

/** Moves the guest from `old` (running, QMP connected) to a new process; returns it with the run's record. */
export async function runLinuxFlow(
  flow: LinuxCprFlow,
  old: TickVmm,
  s: FlowSetup,
): Promise<{ next: TickVmm; record: FlowRecord }> {
  const name = s.nextName();
  const spawnNext = (extra: string[]) => new TickVmm(name, s.dir, (qmp, serial) => s.kind.argv(extra, qmp, serial));
  let next: TickVmm | null = null;
  let info: { downtime?: number };
  try {
    rmSync(s.statePath, { force: true });
    if (flow === 'reboot') {
      await rebootParams(old, s.timeoutMs);
      info = await migrateOld(old, { uri: `file:${s.statePath}` }, s.timeoutMs);
      await old.qmp!.execute('quit');
      next = spawnNext(['-incoming', 'defer']);
      await rebootParams(next, s.timeoutMs);
      await next.qmp!.execute('migrate-incoming', { uri: `file:${s.statePath}` });
    } else if (flow === 'reboot-prestarted') {
      next = spawnNext(['-incoming', 'defer']);
      await rebootParams(next, s.timeoutMs);
      await next.qmp!.execute('query-status');
      await rebootParams(old, s.timeoutMs);
      info = await migrateOld(old, { uri: `file:${s.statePath}` }, s.timeoutMs);
      const load = next.qmp!.send('migrate-incoming', { uri: `file:${s.statePath}` });
      await old.qmp!.execute('quit');
      await load.reply;
    } else {
      const cpr = join(s.dir, `${name}-cpr.sock`);
      const main = join(s.dir, `${name}-main.sock`);
      next = spawnNext(['-incoming', s.kind.transferMain(main), '-incoming', cprIncomingArg(cpr)]);
      await waitForPath(cpr, s.timeoutMs, () => next!.failure());
      await old.qmp!.execute('migrate-set-parameters', { mode: 'cpr-transfer' });
      // A process that came from a reboot flow still has x-ignore-shared on; cpr-transfer never copies shared RAM,
      // and QEMU's target refuses a stream whose capabilities differ from its own (off).
      await old.qmp!.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'x-ignore-shared', state: false }],
      });
      info = await migrateOld(
        old,
        {
          channels: cprTransferChannels(main, cpr),
        },
        s.timeoutMs,
      );
      // QEMU's (and libvirt's) recipe: `completed` on the old side means the new process owns the guest, so the old
      // one is quit at once.
      await old.qmp!.execute('quit');
    }
    await next.waitTicks(s.afterTicks, s.timeoutMs);
    await Promise.race([
      old.exited,
      new Promise((_, reject) => setTimeout(() => reject(new Error('the old process did not exit')), guardMs(30_000))),
    ]);
    if (old.status !== 0) throw new Error(`the old process exited with ${old.status}:\n${old.stderr.trim()}`);
    const nq = await next.connect(s.timeoutMs);
    const vmmPauseMs =
      s.kind.id === 'tsvmm'
        ? ((await nq.execute('x-query-cpr-timings')) as { 'pause-us': number })['pause-us'] / 1000
        : null;
    if (old.lastUs === null || next.firstUs === null) throw new Error('no ticks on one side of the pause');
    return {
      next,
      record: {
        flow,
        gapMs: (next.firstUs - old.lastUs) / 1000,
        continuous: ((old.lastByte! + 1) & 0xff) === next.firstByte,
        oldTicks: old.ticks,
        vmmPauseMs,
        downtimeMs: typeof info.downtime === 'number' ? info.downtime : null,
      },
    };
  } catch (e) {
    await next?.kill();
    const why = next?.stderr.trim();
    throw why ? new Error(`${(e as Error).message}\nthe new process said: ${why}`) : e;
  } finally {
    rmSync(s.statePath, { force: true });
  }
}
