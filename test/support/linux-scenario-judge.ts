// Judging a Linux scenario run (test/support/linux-scenario-run.ts): everything wrong with it, as lines an assertion
// prints. The same judges take tsvmm's runs and QEMU's (the reference); linux-scenarios.ts has the guest's side.
import { readFileSync } from 'node:fs';
import { kernelWarnings, SCENARIO_PREFIX } from './linux-guest.js';
import {
  BLK_DISCARD_BYTES,
  BLK_PATTERN_BYTES,
  comparableLine,
  expectedAcpiLines,
  expectedDevicesLines,
  md5Hex,
  NET_BYTES,
  scenarioLines,
  type ScenarioEnd,
} from './linux-scenarios.js';
import type { ScenarioRun } from './linux-scenario-run.js';
import type { QmpEvent } from './qmp-client.js';

/**
 * The one kernel warning tolerated, and only inside the rig: there the guest's TSC is the rig's, and the rig's TSC is
 * QEMU TCG's, which drifts against the rig kernel's own clock that kvm-clock is re-anchored to, so the guest's
 * clocksource watchdog may find its TSC (not kvm-clock, which must stay current) skewed. Seen once in 5 boots under
 * tsvmm with another Linux guest booting beside it. On a VMX/SVM host it is a failure like any other.
 */
const TOLERATED =
  process.env.TSVMM_IN_RIG === '1' ? /Marking clocksource 'tsc' as unstable because the skew is too large/ : null;

/**
 * The scenario lines without a tolerated kernel warning (the guest's count of warning lines adjusted), and the
 * console's warnings without it: what the checks and the comparison with QEMU see.
 */
export function withoutTolerated(lines: readonly string[]): string[] {
  if (!TOLERATED) return [...lines];
  const out: string[] = [];
  for (const l of lines) {
    if (l.startsWith(`${SCENARIO_PREFIX} kernel log: `) && TOLERATED.test(l)) {
      const at = out.findLastIndex((x) => /kernel log: \d+ warning lines$/.test(x));
      if (at >= 0) out[at] = out[at].replace(/(\d+) warning lines$/, (_, n) => `${Number(n) - 1} warning lines`);
      console.log(`tolerated in the rig: ${l}`);
      continue;
    }
    out.push(l);
  }
  return out;
}

const consoleWarnings = (serial: string): string[] =>
  kernelWarnings(serial).filter((l) => !TOLERATED?.test(l) && !l.startsWith(SCENARIO_PREFIX));

/** Differences between `got` (after comparableLine) and `want`, line by line. */
export function linesProblems(got: readonly string[], want: readonly string[]): string[] {
  const g = got.map(comparableLine);
  const out: string[] = [];
  for (let i = 0; i < Math.max(g.length, want.length); i++) {
    if (g[i] !== want[i]) out.push(`line ${i + 1}: got '${g[i] ?? '(no line)'}', expected '${want[i] ?? '(no line)'}'`);
  }
  return out;
}

/** The md5 in the scenario line starting with `start` (`scenario: ` left out). */
function md5Of(lines: readonly string[], start: string): string | null {
  const l = lines.find((x) => x.startsWith(`${SCENARIO_PREFIX} ${start}`));
  return l ? (/md5 ([0-9a-f]{32})/.exec(l)?.[1] ?? null) : null;
}

/**
 * QMP event names in order, each run of the same name once (QEMU's firmware resets the machine several times on a
 * reboot where tsvmm resets it once), without NIC_RX_FILTER_CHANGED (QEMU's virtio-net reports the guest's first
 * receive-filter change; tsvmm has no such event).
 */
export function eventNames(events: readonly QmpEvent[]): string[] {
  const names: string[] = [];
  for (const e of events) {
    if (e.event === 'NIC_RX_FILTER_CHANGED') continue;
    const tagged = e.event === 'SHUTDOWN' ? `SHUTDOWN(${(e.data as { reason?: string })?.reason})` : e.event;
    if (names.at(-1) !== tagged) names.push(tagged);
  }
  return names;
}

export interface DevicesExpect {
  cpus: number;
  end: ScenarioEnd;
  status: number;
  /** The disk image and the file the host sent, to check against the guest's checksums. */
  disk: string;
  download: string;
}

/** Everything wrong with a devices scenario run; empty means every device did its part. */
export function devicesProblems(run: ScenarioRun, o: DevicesExpect): string[] {
  const lines = scenarioLines(run.serial);
  const problems = linesProblems(withoutTolerated(lines), expectedDevicesLines({ cpus: o.cpus, end: o.end }));
  if (run.status !== o.status) problems.push(`exit status ${run.status ?? run.signal}, expected ${o.status}`);
  for (const w of consoleWarnings(run.serial)) problems.push(`kernel warning on the console: ${w}`);

  // hvc0 carried every line from its opening on.
  const fromHvc = lines.slice(lines.findIndex((l) => l.endsWith('hvc0: open')));
  const hvc = scenarioLines(run.hvc);
  if (hvc.join('\n') !== fromHvc.join('\n'))
    problems.push(`hvc0 carried ${hvc.length} scenario lines, ttyS0 ${fromHvc.length} from 'hvc0: open' on`);

  // virtio-blk: the guest's checksum is the image file's, and the discarded range reads zeroes there too.
  const image = readFileSync(o.disk);
  const wrote = md5Of(lines, 'blk: wrote');
  const onHost = md5Hex(image.subarray(0, BLK_PATTERN_BYTES));
  if (wrote !== md5Of(lines, 'blk: read back')) problems.push('blk: the guest read back another md5');
  if (wrote !== onHost) problems.push(`blk: the guest wrote md5 ${wrote}, the image file holds ${onHost}`);
  const discarded = image.subarray(BLK_PATTERN_BYTES, BLK_PATTERN_BYTES + BLK_DISCARD_BYTES);
  if (discarded.length !== BLK_DISCARD_BYTES || discarded.some((b) => b !== 0))
    problems.push('blk: the discarded range of the image file is not all zeroes');

  // virtio-net: both directions arrived whole.
  const sent = md5Of(lines, 'net: sending');
  const upload = run.peer.find((p) => 'upload' in p)?.upload as { bytes: number; md5: string } | undefined;
  if (!upload || upload.bytes !== NET_BYTES || upload.md5 !== sent)
    problems.push(`net: the guest sent md5 ${sent}, the host got ${JSON.stringify(upload)}`);
  if (md5Of(lines, 'net: the host got') !== sent) problems.push("net: the guest did not see the host's checksum");
  const want = md5Hex(readFileSync(o.download));
  if (md5Of(lines, 'net: received') !== want)
    problems.push(`net: the guest received md5 ${md5Of(lines, 'net: received')}, the host sent ${want}`);

  // QMP: the power button, and how the machine ended.
  const events = eventNames(run.events);
  const wantEvents =
    o.end === 'powerbutton'
      ? ['POWERDOWN', 'SHUTDOWN(guest-shutdown)']
      : o.end === 'reboot'
        ? ['SHUTDOWN(guest-reset)']
        : ['SHUTDOWN(guest-shutdown)'];
  if (events.join(' ') !== wantEvents.join(' '))
    problems.push(`QMP events ${events.join(' ')}, expected ${wantEvents.join(' ')}`);
  return problems;
}

export interface AcpiExpect {
  cpus: number;
  status: number;
  /** The seconds the host left the guest in S3. */
  s3Seconds: number;
}

/** Everything wrong with an acpi scenario run: S3 and wake-up, the reboot, the panic. */
export function acpiProblems(run: ScenarioRun, o: AcpiExpect): string[] {
  const lines = withoutTolerated(scenarioLines(run.serial));
  const problems = linesProblems(lines, expectedAcpiLines({ cpus: o.cpus }));
  if (run.status !== o.status) problems.push(`exit status ${run.status ?? run.signal}, expected ${o.status}`);
  for (const w of consoleWarnings(run.serial).filter(
    (l) => !/Kernel panic - not syncing: sysrq triggered crash/.test(l),
  ))
    problems.push(`kernel warning on the console: ${w}`);
  // The clock is sane after resume: the wall clock moved by the time the host kept the guest asleep (the guest's
  // own steps before and after add a little; whole seconds on both sides).
  const moved = /the wall clock moved (-?\d+) s/.exec(lines.find((l) => l.includes('s3: resumed')) ?? '');
  if (!moved) problems.push('s3: no resume line');
  else if (Number(moved[1]) < o.s3Seconds - 1 || Number(moved[1]) > o.s3Seconds + 30)
    problems.push(`s3: the wall clock moved ${moved[1]} s across a suspend of ${o.s3Seconds} s`);
  const events = eventNames(run.events);
  const want = ['SUSPEND', 'WAKEUP', 'RESET', 'GUEST_PANICKED', 'SHUTDOWN(guest-panic)'];
  if (events.join(' ') !== want.join(' ')) problems.push(`QMP events ${events.join(' ')}, expected ${want.join(' ')}`);
  const panicked = run.events.find((e) => e.event === 'GUEST_PANICKED');
  if (panicked && (panicked.data as { action?: string })?.action !== 'poweroff')
    problems.push(`GUEST_PANICKED ${JSON.stringify(panicked.data)}, expected action poweroff`);
  return problems;
}
