// From runs to numbers: per flow, RAM size and old-process RAM state, the min/median/max of the pause seen from
// outside, of the VMMs' own view, and of every phase in between; the QEMU reference and tsvmm's target beside it.
import { summarize, median, type Summary } from '../lib/stats.js';
import { formatTable, round, type Cell } from '../lib/table.js';
import { FLOWS, type FlowId, type RunRecord } from './flows.js';
import { timeline, LEAD_IN, LEAD_OUT, type Timeline } from './timeline.js';

export interface Stat {
  min: number;
  median: number;
  max: number;
  samples: number[];
}

export interface GroupResult {
  flow: FlowId;
  size: string;
  sizeBytes: number;
  /** The old process had touched (pre-faulted) all guest RAM. */
  touched: boolean;
  runs: number;
  tickIntervalMs: number;
  /** ms: last old tick → first new tick. */
  pause: Stat;
  /** ms: pause minus the median tick interval — the time the guest lost beyond its normal tick spacing. */
  pauseMinusTick: Stat;
  /** ms: the VMMs' own view (old stop-vcpus start → new resume end, x-query-cpr-timings pause-us). */
  vmmPause: Stat;
  /** ms: x-query-cpr-timings pause-us minus the same span recomputed here from the marks (should be 0). */
  vmmPauseCheck: Stat;
  /** ms: query-migrate 'downtime' from the old process. */
  oldDowntime: Stat | null;
  leadIn: Stat;
  leadOut: Stat;
  phases: Array<{ label: string; ms: Stat }>;
  /** ms: the old process's exit after its quit reply (its teardown), and relative to the new process's first tick. */
  oldExitAfterQuit: Stat | null;
  oldExitAfterFirstTick: Stat | null;
  qemuMs: number | null;
  targetMs: number | null;
  targetText: string;
  /** Median raw pause within the target; null where there is no numeric target. */
  meetsTarget: boolean | null;
  /** The same for the pause minus the tick interval (the guest's loss beyond its normal tick spacing). */
  meetsTargetLessTick: boolean | null;
  /**
   * The host while this size and RAM state ran: CPU busy share of all cores (this bench's own VMMs included, about
   * 15-25% on 2 cores) and the share the hypervisor stole. Much more means other work skewed the numbers.
   */
  host?: { busyPercent: number; stealPercent: number };
  /** Every run's timeline and raw record. */
  samples: Array<{ timeline: Timeline; run: RunRecord }>;
}

export const SIZE_BYTES: Record<string, number> = { '512M': 512 * 2 ** 20, '4G': 4 * 2 ** 30, '16G': 16 * 2 ** 30 };

function stat(values: readonly number[]): Stat {
  const s: Summary = summarize(values);
  return { min: round(s.min), median: round(s.median), max: round(s.max), samples: s.samples.map((v) => round(v, 4)) };
}
const ms = (us: number) => us / 1000;

export function group(runs: readonly RunRecord[]): GroupResult {
  const first = runs[0];
  const info = FLOWS.find((f) => f.id === first.flow)!;
  const tls = runs.map(timeline);
  const tick = median(runs.map((r) => r.oldTickIntervalUs)) / 1000;
  const labels: string[] = [];
  for (const t of tls) for (const p of t.phases) if (!labels.includes(p.label)) labels.push(p.label);
  const phases = labels.map((label) => ({
    label,
    ms: stat(
      tls
        .map((t) => t.phases.find((p) => p.label === label))
        .filter((p) => p !== undefined)
        .map((p) => ms(p.us)),
    ),
  }));
  const downtimes = runs.map((r) => r.oldQueryMigrate?.downtime).filter((d): d is number => typeof d === 'number');
  const exits = runs.filter((r) => r.events['old.exit'] !== undefined && r.events['ctl.quit-reply'] !== undefined);
  const qemu = info.qemuMs?.[first.size];
  const target = info.targetMs(qemu);
  const pauseMinusTick = stat(tls.map((t) => ms(t.rawGapUs) - tick));
  return {
    flow: first.flow,
    size: first.size,
    sizeBytes: SIZE_BYTES[first.size] ?? 0,
    touched: first.touched,
    runs: runs.length,
    tickIntervalMs: round(tick, 4),
    pause: stat(tls.map((t) => ms(t.rawGapUs))),
    pauseMinusTick,
    vmmPause: stat(runs.map((r) => ms(r.vmmPauseUs ?? NaN))),
    vmmPauseCheck: stat(runs.map((r, i) => ms((r.vmmPauseUs ?? NaN) - tls[i].vmmUs))),
    oldDowntime: downtimes.length ? stat(downtimes) : null,
    leadIn: stat(tls.map((t) => ms(t.leadInUs))),
    leadOut: stat(tls.map((t) => ms(t.leadOutUs))),
    phases,
    oldExitAfterQuit: exits.length
      ? stat(exits.map((r) => ms(r.events['old.exit'] - r.events['ctl.quit-reply'])))
      : null,
    oldExitAfterFirstTick: exits.length
      ? stat(exits.map((r) => ms(r.events['old.exit'] - r.events['guest.first-new-tick'])))
      : null,
    qemuMs: qemu ?? null,
    targetMs: target,
    targetText: info.target,
    meetsTarget: target === null ? null : median(tls.map((t) => ms(t.rawGapUs))) <= target,
    meetsTargetLessTick: target === null ? null : pauseMinusTick.median <= target,
    samples: runs.map((run, i) => ({ timeline: tls[i], run })),
  };
}

const ramState = (touched: boolean) => (touched ? 'old RAM touched' : 'old RAM untouched');

function row(label: string, s: Stat | null, extra: Cell = null): Cell[] {
  return s ? [label, s.min, s.median, s.max, extra] : [label, null, null, null, extra];
}

/** The detailed table of one group: the pause, both views of it, every phase. */
export function groupTable(g: GroupResult): string {
  const info = FLOWS.find((f) => f.id === g.flow)!;
  const title =
    `${info.title}\n${g.size}, ${ramState(g.touched)}, ${g.runs} runs; QEMU ${g.qemuMs ?? '-'} ms, target ${info.target}` +
    `${g.targetMs !== null ? ` (${round(g.targetMs)} ms)` : ''}${g.host ? `; host CPU ${g.host.busyPercent}% busy, ${g.host.stealPercent}% stolen` : ''}`;
  const rows: Cell[][] = [
    row('pause: last old tick → first new tick (raw)', g.pause, g.qemuMs),
    row(
      `pause − median tick interval (${g.tickIntervalMs} ms)`,
      g.pauseMinusTick,
      g.targetMs === null ? null : round(g.targetMs),
    ),
    row("VMMs' view: old stop-vcpus → new resume (x-query-cpr-timings)", g.vmmPause),
    row("old VMM's query-migrate downtime", g.oldDowntime),
    row(`  ${LEAD_IN}`, g.leadIn),
    ...g.phases.map((p) => row(`  ${p.label}`, p.ms)),
    row(`  ${LEAD_OUT}`, g.leadOut),
    row('old process exits, after its quit reply', g.oldExitAfterQuit),
    row('old process exits, after the first new tick', g.oldExitAfterFirstTick),
  ];
  return formatTable(title, ['ms', 'min', 'median', 'max', 'QEMU/target'], rows);
}

const yesNo = (b: boolean | null) => (b === null ? '-' : b ? 'yes' : 'NO');

/** One line per flow, size and RAM state: the medians against QEMU and the target. */
export function summaryTable(groups: readonly GroupResult[]): string {
  const rows: Cell[][] = groups.map((g) => [
    g.flow,
    g.size,
    g.touched ? 'touched' : 'untouched',
    g.pause.median,
    `${round(g.pause.min)}-${round(g.pause.max)}`,
    g.pauseMinusTick.median,
    g.vmmPause.median,
    g.qemuMs,
    g.targetMs === null ? null : round(g.targetMs),
    yesNo(g.meetsTarget),
    yesNo(g.meetsTargetLessTick),
  ]);
  return formatTable(
    'Pause, median of each group (ms)',
    ['flow', 'RAM', 'old RAM', 'pause', 'min-max', 'pause−tick', 'VMM view', 'QEMU', 'target', 'met', 'met−tick'],
    rows,
  );
}

/** Does the pause grow with RAM? Per flow and RAM state: the largest size's median minus the smallest's. */
export function growthTable(groups: readonly GroupResult[]): string {
  const rows: Cell[][] = [];
  for (const flow of FLOWS) {
    for (const touched of [false, true]) {
      const gs = groups
        .filter((g) => g.flow === flow.id && g.touched === touched)
        .sort((a, b) => a.sizeBytes - b.sizeBytes);
      if (gs.length < 2) continue;
      const lo = gs[0];
      const hi = gs[gs.length - 1];
      rows.push([
        flow.id,
        ramState(touched),
        `${lo.size} → ${hi.size}`,
        lo.pauseMinusTick.median,
        hi.pauseMinusTick.median,
        round(hi.pauseMinusTick.median - lo.pauseMinusTick.median),
      ]);
    }
  }
  return formatTable(
    'Growth with RAM size (pause − tick, median ms)',
    ['flow', 'old RAM', 'sizes', 'small', 'large', 'difference'],
    rows,
  );
}

/** The same flow and size, old RAM untouched vs touched: what the old process's teardown costs the pause. */
export function touchedTable(groups: readonly GroupResult[]): string {
  const rows: Cell[][] = [];
  for (const g of groups.filter((x) => x.touched)) {
    const u = groups.find((x) => !x.touched && x.flow === g.flow && x.size === g.size);
    if (!u) continue;
    rows.push([
      g.flow,
      g.size,
      u.pauseMinusTick.median,
      g.pauseMinusTick.median,
      round(g.pauseMinusTick.median - u.pauseMinusTick.median),
      g.oldExitAfterQuit?.median ?? null,
    ]);
  }
  return formatTable(
    'Old process touched all guest RAM vs not (pause − tick, median ms)',
    ['flow', 'RAM', 'untouched', 'touched', 'difference', 'old teardown'],
    rows,
  );
}
