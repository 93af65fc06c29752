// One run's pause, split into consecutive phases. Every instant — the guest's last tick in the old process, the
// VMMs' phase marks, the controller's steps, the new process's start-up trace — is a CLOCK_REALTIME µs on one axis,
// so the phases are differences of consecutive boundaries and add up exactly:
//
//   raw gap (last old tick → first new tick) = [last tick → stop starts] + the VMMs' pause + [resume → first tick]
//   the VMMs' pause (old stop-vcpus start → new resume end) = the sum of the chain's phases
//
// A boundary a run does not have (a mark the VMM did not record) merges its phase into the next one.
import type { PhaseMark } from '../../cpr/flows/timings.js';
import type { FlowId, RunRecord } from './flows.js';

/** [label of the phase that ENDS at this boundary, boundary instant name]. */
type Step = readonly [label: string, boundary: string];

const OLD_STOP: Step[] = [
  ['stop vCPUs (old)', 'old.stop-vcpus.end'],
  ['collect state (old)', 'old.collect-kvm.end'],
];
const OLD_WRITE: Step[] = [...OLD_STOP, ['write + fsync checkpoint (old)', 'old.write.end']];
const NEW_STARTUP: Step[] = [
  ['fork + exec → Node starts (new)', 'new.process-start.start'],
  ['Node bootstrap → tsvmm main (new)', 'new.trace.main'],
  ['start vCPU threads, parse config (new)', 'new.trace.configured'],
  ['load modules (new)', 'new.trace.modules-loaded'],
  ['create machine: KVM, RAM, devices (new)', 'new.process-start.end'],
];
const NEW_RESTORE: Step[] = [
  ['read + verify file (new)', 'new.read-verify.end'],
  ['check state (new)', 'new.check-state.end'],
  ['restore KVM, vCPUs, devices (new)', 'new.restore-devices.end'],
  ['resume vCPUs (new)', 'new.resume.end'],
];

/** Each flow's chain of phases from the old VMM's stop-vcpus start to the new VMM's resume end. */
export const CHAINS: Record<FlowId, readonly Step[]> = {
  'reboot-incoming': [
    ...OLD_WRITE,
    ['save reply, query-migrate, quit reply (controller)', 'ctl.quit-reply'],
    ...NEW_STARTUP,
    ['QMP up → load starts (new)', 'new.read-verify.start'],
    ...NEW_RESTORE,
  ],
  'reboot-cpr-load': [
    ...OLD_WRITE,
    ['save reply, query-migrate, quit reply (controller)', 'ctl.quit-reply'],
    ...NEW_STARTUP,
    ['QMP up, restore warm-up, controller connects', 'ctl.load-sent'],
    ['cpr-load reaches the VMM', 'new.read-verify.start'],
    ...NEW_RESTORE,
  ],
  'reboot-prestarted': [
    ...OLD_WRITE,
    ['MIGRATION completed event reaches controller', 'ctl.save-done'],
    ['controller sends migrate-incoming', 'ctl.load-sent'],
    ['migrate-incoming reaches the new VMM', 'new.read-verify.start'],
    ...NEW_RESTORE,
  ],
  transfer: [
    ...OLD_STOP,
    // One phase: the old process's send can return after the new one already has the state (it is descheduled
    // once the bytes are out), so a split at its end would be noise.
    ['encode + send state (old) until received (new)', 'new.state-received.start'],
    ['decode + check state (new)', 'new.check-state.end'],
    ...NEW_RESTORE.slice(2),
  ],
  exec: [
    ...OLD_WRITE,
    ['MIGRATION completed to clients, fds set, execve (old)', 'old.exec.start'],
    ['execve → Node starts (new image)', 'new.process-start.start'],
    ...NEW_STARTUP.slice(1),
    ['QMP socket adopted → load starts (new)', 'new.read-verify.start'],
    ...NEW_RESTORE,
  ],
};

export const PAUSE_START = 'old.stop-vcpus.start';
export const PAUSE_END = 'new.resume.end';
export const LEAD_IN = 'last old tick → old stop-vcpus starts';
export const LEAD_OUT = 'new resume ends → first new tick';

export interface Phase {
  label: string;
  us: number;
}

export interface Timeline {
  /** The chain, old stop → new resume (sums to vmmUs). */
  phases: Phase[];
  leadInUs: number;
  leadOutUs: number;
  rawGapUs: number;
  vmmUs: number;
}

/** Every named instant of a run: its events, and each mark's start and end as `process.phase.start|end`. */
export function instants(run: RunRecord): Map<string, number> {
  const at = new Map<string, number>(Object.entries(run.events));
  const add = (marks: readonly PhaseMark[]) => {
    for (const m of marks) {
      const key = `${m.process}.${m.phase}`;
      if (!at.has(`${key}.start`)) {
        at.set(`${key}.start`, m.startUs);
        at.set(`${key}.end`, m.endUs);
      }
    }
  };
  // The old process's own marks first: they include its write, which the checkpoint file cannot carry.
  add(run.oldMarks ?? []);
  add(run.marks);
  return at;
}

export function timeline(run: RunRecord): Timeline {
  const at = instants(run);
  const need = (name: string) => {
    const v = at.get(name);
    if (v === undefined) throw new Error(`${run.flow} ${run.size}: no '${name}' in this run's marks`);
    return v;
  };
  const start = need(PAUSE_START);
  const end = need(PAUSE_END);
  const phases: Phase[] = [];
  let from = start;
  let pending: string[] = [];
  for (const [label, boundary] of CHAINS[run.flow]) {
    pending.push(label);
    const to = at.get(boundary);
    if (to === undefined) continue;
    phases.push({ label: pending.join(' + '), us: to - from });
    from = to;
    pending = [];
  }
  if (pending.length) phases.push({ label: pending.join(' + '), us: end - from });
  const last = need('guest.last-old-tick');
  const first = need('guest.first-new-tick');
  return { phases, leadInUs: start - last, leadOutUs: first - end, rawGapUs: first - last, vmmUs: end - start };
}

/**
 * The new process's start-up trace (TSVMM_TRACE_STARTUP=1: "tsvmm: start-up main 41.2, threads-started 45.0, …
 * ms", ms since its time origin) as instants `new.trace.NAME`, given that origin in µs.
 */
export function startupTrace(stderr: string, originUs: number): Record<string, number> {
  // The last line: after a cpr-exec the old image's start-up line is on the same stderr before the new one's.
  const line = [...stderr.matchAll(/^tsvmm: start-up (.*) ms$/gm)].at(-1);
  const out: Record<string, number> = {};
  if (!line) return out;
  for (const part of line[1].split(', ')) {
    const m = /^(\S+) ([\d.]+)$/.exec(part);
    if (m) out[`new.trace.${m[1]}`] = originUs + Number(m[2]) * 1000;
  }
  return out;
}
