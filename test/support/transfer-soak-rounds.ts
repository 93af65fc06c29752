// The guest's rounds across a chain of processes (virtio-probe rounds=): its COM1 output, all processes' joined in
// order, must read as one run — booted once, rounds 1..K each once and in order, no failure.
const ROUND_LINE = /^virtio-probe: round (\d+) ok\r?\n/gm;

/** Whole "round K ok" lines only: a hand-over can cut a line, and the next process finishes it. */
export const roundsIn = (out: string): number[] => [...out.matchAll(ROUND_LINE)].map((m) => Number(m[1]));

/** What is wrong with `output` as one run of the guest's rounds; empty when nothing is. */
export function roundsProblems(output: string): string[] {
  const problems: string[] = [];
  const starts = output.match(/^virtio-probe: start$/gm)?.length ?? 0;
  if (starts !== 1) problems.push(`the guest started ${starts} times (once expected)`);
  const failed = /^.*FAILED.*$/m.exec(output);
  if (failed) problems.push(`the guest failed: ${failed[0]}`);
  const rounds = roundsIn(output);
  const gap = rounds.findIndex((r, i) => r !== i + 1);
  if (rounds.length === 0) problems.push('no round completed');
  else if (gap >= 0)
    problems.push(`round ${gap + 1} is missing or out of order: ${rounds.slice(Math.max(0, gap - 2), gap + 3)}`);
  return problems;
}
