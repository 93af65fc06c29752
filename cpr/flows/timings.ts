// Per-phase timestamps of a checkpoint/restart, for pause-time analysis. Times are CLOCK_REALTIME microseconds
// since the epoch (exact in a double), so marks taken by the old and the new process line up on one axis.
import { clockNs, CLOCK_REALTIME } from '../../src/sys/libc.js';

export type CprProcess = 'old' | 'new';

export interface PhaseMark {
  phase: string;
  process: CprProcess;
  startUs: number;
  endUs: number;
}

export function nowUs(): number {
  return Number(clockNs(CLOCK_REALTIME) / 1000n);
}

/** Collects phase marks of one process. */
export class PhaseClock {
  readonly marks: PhaseMark[] = [];

  constructor(readonly process: CprProcess) {}

  /** Runs `fn` as phase `phase` and records when it started and ended. */
  time<T>(phase: string, fn: () => T): T {
    const startUs = nowUs();
    try {
      return fn();
    } finally {
      this.marks.push({ phase, process: this.process, startUs, endUs: nowUs() });
    }
  }

  async timeAsync<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    const startUs = nowUs();
    try {
      return await fn();
    } finally {
      this.marks.push({ phase, process: this.process, startUs, endUs: nowUs() });
    }
  }

  mark(phase: string, startUs: number, endUs: number = startUs): void {
    this.marks.push({ phase, process: this.process, startUs, endUs });
  }
}

/**
 * The guest's pause as both processes saw it: from the old process stopping the vCPUs (the guest's last
 * instruction there) to the new one resuming them (its first instruction here). Null if either mark is missing.
 */
export function pauseUs(marks: readonly PhaseMark[]): number | null {
  const stop = marks.find((m) => m.process === 'old' && m.phase === 'stop-vcpus');
  const resume = marks.find((m) => m.process === 'new' && m.phase === 'resume');
  return stop && resume ? resume.endUs - stop.startUs : null;
}

/** A table for people: each phase with its start relative to the first mark and its duration, in ms. */
export function formatTimings(marks: readonly PhaseMark[]): string {
  if (marks.length === 0) return '(no timings)';
  const sorted = [...marks].sort((a, b) => a.startUs - b.startUs);
  const origin = sorted[0].startUs;
  const ms = (us: number) => (us / 1000).toFixed(3).padStart(10);
  const lines = ['process  phase                      start ms   duration ms'];
  for (const m of sorted)
    lines.push(`${m.process.padEnd(8)} ${m.phase.padEnd(24)} ${ms(m.startUs - origin)}   ${ms(m.endUs - m.startUs)}`);
  const pause = pauseUs(marks);
  if (pause !== null) lines.push(`guest pause (old stop-vcpus → new resume): ${(pause / 1000).toFixed(3)} ms`);
  return lines.join('\n');
}
