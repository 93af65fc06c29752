// Start-up phases, for finding where a restart's time goes: with TSVMM_TRACE_STARTUP=1, tsvmm prints each mark's
// time since the process started (ms) to stderr once it is up.
const enabled = process.env.TSVMM_TRACE_STARTUP === '1';
const marks: Array<[string, number]> = [];

export function startupMark(name: string): void {
  if (enabled) marks.push([name, performance.now()]);
}

export function reportStartup(): void {
  if (!enabled || marks.length === 0) return;
  process.stderr.write(`tsvmm: start-up ${marks.map(([n, t]) => `${n} ${t.toFixed(1)}`).join(', ')} ms\n`);
  marks.length = 0;
}
