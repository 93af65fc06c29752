// The checkpoint flows a GuestChain's guest goes through (src/machine/linux-cpr.test.ts), each checked as it
// happens: the old process stops in postmigrate and exits 0 after quit, every block the guest had synced before the
// save is intact on the image, the new process runs the guest on, and hvc0's counter continues with the next number.
// Each flow returns what it measured.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { HANG_GUARD_MS, waitFor } from './hang-guard.js';
import { blocksMismatch, pingReplies, scenarioLines } from './linux-cpr-guest.js';
import { within, type GuestChain, type HvcLine } from './linux-cpr-session.js';
import { transferTargetArgs, type VmProcess } from './vm-process.js';
import { QmpClient } from './qmp-client.js';
import { cprTransferChannels } from './cpr-channels.js';

export type Spelling = 'seed' | 'qemu';

export interface CycleResult {
  flow: string;
  /** The guest's pause from x-query-cpr-timings (old stop-vcpus → new resume), µs. */
  pauseUs: number;
  /** The counter's last line from the old process and the first from the new one. */
  before: HvcLine;
  after: HvcLine;
  /** after.hostUs − before.hostUs: the gap the host saw in the counter. */
  gapUs: number;
  /** The same gap on the guest's clock (/proc/uptime), µs. */
  guestGapUs: number;
  /** Blocks the guest had synced at the save (all intact on the image). */
  blocks: number;
  /** From the old process's last counter line to its stop-vcpus mark, µs. */
  lastLineToStopUs: number;
  /** From the new process's resume mark to its first counter line, µs. */
  resumeToFirstLineUs: number;
  /** x-query-cpr-timings' phases of the cycle (both processes), and its table of them. */
  marks: Timings['marks'];
  phases: string;
}

/** Lines the counter must print in the new process before a flow counts as done (the guest runs on). */
const RUN_ON_LINES = 20;

interface Timings {
  'pause-us': number;
  marks: { phase: string; process: string; startUs: number; endUs: number }[];
  table: string;
}

/** Quits the old process; returns the last counter line it delivered. */
async function quitOld(chain: GuestChain, old: VmProcess): Promise<HvcLine> {
  const index = chain.processes.indexOf(old);
  await old.qmp.execute('quit');
  assert.is(await within(old.exited, 'the old tsvmm exits after quit', chain.detail), 0, `exit status\n${old.stderr}`);
  // Its hvc0 socket closed: every line it delivered is in.
  await chain.hvc.waitClosed(index + 1, chain.detail);
  const last = chain.hvc.lines.findLast((l) => l.process === index);
  assert.ok(last, `process ${index} printed counter lines`);
  return last!;
}

/** Checks what the guest synced before the save is intact, while no process has the disk. */
function checkBlocks(chain: GuestChain, last: HvcLine): void {
  assert.is(
    blocksMismatch(chain.diskContents(), last.blocks),
    null,
    `the ${last.blocks} blocks synced before the save`,
  );
}

/** The new process runs the guest on: RUN_ON_LINES more counter lines, numbered on from the old process's last. */
async function runsOn(chain: GuestChain, before: HvcLine, newIndex: number, flow: string): Promise<HvcLine> {
  await chain.waitCount(before.n + RUN_ON_LINES);
  const i = chain.hvc.lines.indexOf(before);
  const after = chain.hvc.lines[i + 1];
  assert.is(after.process, newIndex, `${flow}: the line after the old process's last came from the new one`);
  const numbers = chain.hvc.lines.slice(i).map((l) => l.n);
  assert.equal(
    numbers,
    numbers.map((_, k) => before.n + k),
    `${flow}: the counter goes on from ${before.n} without a gap or repeat${chain.detail()}`,
  );
  return after;
}

function result(flow: string, timings: Timings, before: HvcLine, after: HvcLine): CycleResult {
  const mark = (process: string, phase: string) => {
    const m = timings.marks.find((x) => x.process === process && x.phase === phase);
    assert.ok(m, `x-query-cpr-timings has the ${process} process's ${phase} mark`);
    return m!;
  };
  return {
    lastLineToStopUs: mark('old', 'stop-vcpus').startUs - before.hostUs,
    resumeToFirstLineUs: after.hostUs - mark('new', 'resume').endUs,
    flow,
    pauseUs: timings['pause-us'],
    before,
    after,
    gapUs: after.hostUs - before.hostUs,
    guestGapUs: Math.round((after.uptime - before.uptime) * 1e6),
    blocks: before.blocks,
    marks: timings.marks,
    phases: timings.table,
  };
}

/** Waits until the guest has run a while in the current process: `lines` counter lines and one more block. */
export async function letRun(chain: GuestChain, lines: number): Promise<void> {
  const from = chain.hvc.last!;
  await chain.waitCount(from.n + lines);
  await chain.until(() => chain.hvc.last!.blocks > from.blocks, 'the writer adds a block');
}

/**
 * cpr-reboot: save with `spelling` (the seed's cpr-save, or QEMU's migrate-set-parameters cpr-reboot +
 * x-ignore-shared + migrate file:), quit, a new process with the same command line (-S, or -incoming defer), load.
 */
export async function rebootCycle(chain: GuestChain, spelling: Spelling, tag: string): Promise<CycleResult> {
  const old = chain.current;
  const file = join(chain.dir, `${tag}.cpr`);
  if (spelling === 'seed') {
    await old.qmp.execute('cpr-save', { filename: file, mode: 'reboot' });
  } else {
    old.qmp.events.length = 0; // a process that was loaded by migrate-incoming has had a MIGRATION completed
    await old.qmp.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
    await old.qmp.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'x-ignore-shared', state: true }],
    });
    await old.qmp.execute('migrate', { uri: `file:${file}` });
    await old.qmp.waitEvent('MIGRATION', HANG_GUARD_MS, (e) => e.data?.status === 'completed');
  }
  const flow = `cpr-reboot (${spelling === 'seed' ? "the seed's cpr-save/cpr-load" : "QEMU's migrate/migrate-incoming"})`;
  assert.is((await old.qmp.execute('query-status')).status, 'postmigrate', `${flow}: the old VM after the save`);
  const before = await quitOld(chain, old);
  checkBlocks(chain, before);

  const { vm: next, hvc } = await chain.start(spelling === 'seed' ? ['-S'] : ['-incoming', 'defer']);
  await within(hvc, 'the new tsvmm connects hvc0', chain.detail);
  if (spelling === 'seed') {
    assert.is((await next.qmp.execute('query-status')).status, 'prelaunch');
    await next.qmp.execute('cpr-load', { filename: file, mode: 'reboot' });
  } else {
    assert.is((await next.qmp.execute('query-status')).status, 'inmigrate');
    await next.qmp.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
    await next.qmp.execute('migrate-incoming', { uri: `file:${file}` });
  }
  assert.is((await next.qmp.execute('query-status')).status, 'running', `${flow}: the new VM runs`);
  const timings = (await next.qmp.execute('x-query-cpr-timings')) as Timings;
  const after = await runsOn(chain, before, chain.processes.length - 1, flow);
  return result(flow, timings, before, after);
}

/**
 * The seed's rule for what cannot be saved: the guest suspends to RAM (its own `echo mem > /sys/power/state`), the
 * suspended VM is saved (seed spelling), a new process loads it — still suspended — and system_wakeup resumes it.
 */
export async function suspendedCycle(chain: GuestChain, tag: string): Promise<{ before: HvcLine; after: HvcLine }> {
  const old = chain.current;
  chain.hvc.send('suspend');
  await old.qmp.waitEvent('SUSPEND');
  assert.is((await old.qmp.execute('query-status')).status, 'suspended', 'the guest suspended itself to RAM');
  const file = join(chain.dir, `${tag}.cpr`);
  await old.qmp.execute('cpr-save', { filename: file, mode: 'reboot' });
  const before = await quitOld(chain, old);
  checkBlocks(chain, before);

  const { vm: next, hvc } = await chain.start(['-S']);
  await within(hvc, 'the new tsvmm connects hvc0', chain.detail);
  await next.qmp.execute('cpr-load', { filename: file, mode: 'reboot' });
  assert.is((await next.qmp.execute('query-status')).status, 'suspended', 'the loaded guest is still suspended');
  await next.qmp.execute('system_wakeup');
  await next.qmp.waitEvent('WAKEUP');
  assert.is((await next.qmp.execute('query-status')).status, 'running');
  await chain.until(() => scenarioLines(chain.serial).includes('resumed'), 'the guest says it resumed');
  const after = await runsOn(chain, before, chain.processes.length - 1, 'cpr-reboot of a suspended guest');
  return { before, after };
}

/**
 * cpr-transfer: a new process waits on a cpr channel, the old one hands it the guest (RAM fd, tap, state) with
 * QEMU's migrate in cpr-transfer mode, then quits. The ping the guest runs must go on in the new process.
 */
export async function transferCycle(chain: GuestChain): Promise<CycleResult & { pingsBefore: number[] }> {
  const old = chain.current;
  const channel = join(chain.dir, 'cpr.sock');
  const { vm: next, hvc } = await chain.start(transferTargetArgs(channel), { connect: false });
  await waitFor(
    () => existsSync(channel),
    'the cpr channel of the new tsvmm',
    () => next.stderr,
  );
  const pingsBefore = pingReplies(chain.serial);
  old.qmp.events.length = 0;
  await old.qmp.execute('migrate-set-parameters', { mode: 'cpr-transfer' });
  await old.qmp.execute('migrate', {
    channels: cprTransferChannels(join(chain.dir, 'main.sock'), channel),
  });
  const done = await old.qmp.waitEvent(
    'MIGRATION',
    HANG_GUARD_MS,
    (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
  );
  assert.is(done.data?.status, 'completed', `cpr-transfer: the old tsvmm's MIGRATION event\nnew:\n${next.stderr}`);
  // QEMU's and libvirt's recipe: `completed` means the new process owns the guest, so the old one is quit at once.
  const before = await quitOld(chain, old);
  await chain.connectQmp(next);
  await within(hvc, 'the new tsvmm connects hvc0', chain.detail);
  assert.is((await next.qmp.execute('query-status')).status, 'running', 'cpr-transfer: the new VM runs');
  const timings = (await next.qmp.execute('x-query-cpr-timings')) as Timings;
  const after = await runsOn(chain, before, chain.processes.length - 1, 'cpr-transfer');
  return { ...result('cpr-transfer', timings, before, after), pingsBefore };
}

/**
 * cpr-exec: the current process is told (QEMU 10.2's migrate-set-parameters mode=cpr-exec + cpr-exec-command +
 * migrate file:) to save the guest and exec a new tsvmm image with the same options and -incoming file:. The pid
 * stays; RAM, the tap and the QMP socket cross the exec; hvc0 reconnects from the new image.
 */
export async function execCycle(chain: GuestChain, tag: string): Promise<CycleResult> {
  const old = chain.current;
  const pid = old.child.pid;
  const file = join(chain.dir, `${tag}.state`);
  const { command, hvc, adopt } = chain.execImage(['-incoming', `file:${file}`]);
  old.qmp.events.length = 0;
  await old.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
  await old.qmp.execute('migrate', { uri: `file:${file}` });
  const done = await old.qmp.waitEvent(
    'MIGRATION',
    HANG_GUARD_MS,
    (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
  );
  assert.is(done.data?.status, 'completed', `cpr-exec: the save${chain.detail()}`);
  const oldIndex = chain.processes.length - 1;
  const next = adopt();
  // The exec closes the old image's hvc0 and QMP connections: every line it delivered is in.
  await chain.hvc.waitClosed(oldIndex + 1, chain.detail);
  await waitFor(() => old.qmp.closed, 'the old image closes its QMP connection (the exec)', chain.detail);
  const before = chain.hvc.lines.findLast((l) => l.process === oldIndex);
  assert.ok(before, `process ${oldIndex} printed counter lines`);
  checkBlocks(chain, before!);
  next.qmp = await QmpClient.connect(next.qmpPath);
  await within(hvc, 'the new image connects hvc0', chain.detail);
  assert.is(next.child.pid, pid, 'cpr-exec: the same process');
  assert.is((await next.qmp.execute('query-status')).status, 'running', 'cpr-exec: the new image runs the guest');
  const timings = (await next.qmp.execute('x-query-cpr-timings')) as Timings;
  const after = await runsOn(chain, before!, chain.processes.length - 1, 'cpr-exec');
  return result('cpr-exec', timings, before!, after);
}

const ms = (us: number) => (us / 1000).toFixed(1);
/** One line per cycle: the pause, the gaps the host and the guest saw, the warm-up either side. */
export const describeCycle = (r: CycleResult) =>
  `${r.flow.padEnd(52)} pause ${ms(r.pauseUs).padStart(8)} ms, counter gap ${ms(r.gapUs).padStart(8)} ms, ` +
  `guest clock ${ms(r.guestGapUs).padStart(8)} ms, last line → stop ${ms(r.lastLineToStopUs)} ms, ` +
  `resume → first line ${ms(r.resumeToFirstLineUs)} ms, blocks ${r.blocks}`;

/**
 * A restored guest's first steps are slow: the new process maps RAM afresh, so KVM faults the guest's working set
 * back into its page tables on first touch, and the new process's vCPU and I/O threads run their exit and virtio
 * code cold. Measured in the rig (nested KVM under TCG) over 20 cycles: 0.18-0.56 s from the resume mark to the
 * first counter line in both modes, where the last line before the stop came one ordinary interval (≤ 0.17 s)
 * before it; once, with the 2-core host loaded by other work, 3.2 s after the resume and 0.73 s before the stop.
 * So the bound allows 5 s: it is a hang guard on the restored guest (a lost interrupt or kick stalls it for good),
 * and the test prints each cycle's numbers.
 */
const WARM_UP_US = 5_000_000;

/**
 * The most the counter may stop for across a checkpoint, as the host sees it: the pause (old stop-vcpus → new
 * resume) plus at most one counter interval on each side — the last line before the stop may have been printed up
 * to one interval earlier, the first after the resume comes up to one interval later — plus the warm-up above. An
 * interval is what the guest's loop takes while it runs normally (10 ms asleep plus a fork, the shell and hvc0; far
 * more on a loaded nested-KVM machine), so the bound takes twice the longest gap seen between two lines of one
 * process, plus 50 ms for the test's own event loop reading two sockets.
 */
function gapBoundUs(c: GuestChain, pauseUs: number): { boundUs: number; longest: string } {
  let longest = 0;
  let at = 0;
  const lines = c.hvc.lines;
  for (let i = 1; i < lines.length; i++)
    if (lines[i].process === lines[i - 1].process && lines[i].hostUs - lines[i - 1].hostUs > longest) {
      longest = lines[i].hostUs - lines[i - 1].hostUs;
      at = i;
    }
  const where = at
    ? `${ms(longest)} ms between counts ${lines[at - 1].n} and ${lines[at].n} in process ${lines[at].process} (guest clock ${ms(Math.round((lines[at].uptime - lines[at - 1].uptime) * 1e6))} ms)`
    : 'none';
  return { boundUs: pauseUs + 2 * longest + 50_000 + WARM_UP_US, longest: where };
}

/** The counter's gap across the cycle within gapBoundUs, and the guest's clock neither back nor jumping. */
export function checkGap(c: GuestChain, r: CycleResult): void {
  const { boundUs: bound, longest } = gapBoundUs(c, r.pauseUs);
  // On failure: the longest stall inside one process, the phases of the pause, and the guest's own log (a guest
  // that stalls says so there: RCU stalls, soft lockups).
  assert.ok(
    r.gapUs <= bound,
    `${r.flow}: the counter stopped for ${ms(r.gapUs)} ms, the pause was ${ms(r.pauseUs)} ms (bound ${ms(bound)} ms; longest stall within one process: ${longest})\n${r.phases}${c.detail()}`,
  );
  // kvmclock goes on by the time the VM was stopped: the guest's clock moves across the checkpoint by about what
  // the host's did — no jump beyond it (/proc/uptime has 10 ms steps), never back.
  assert.ok(r.guestGapUs >= 0, `${r.flow}: the guest's clock went back by ${ms(-r.guestGapUs)} ms`);
  assert.ok(
    r.guestGapUs <= bound + 10_000,
    `${r.flow}: the guest's clock jumped ${ms(r.guestGapUs)} ms where the host saw ${ms(r.gapUs)} ms`,
  );
}
