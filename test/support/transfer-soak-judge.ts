// Whether a cpr-transfer soak (transfer-soak.ts) stayed flat: what it recorded per generation, and the rules.
//   - fds: every generation holds exactly the fds of generation 1, kind by kind (a leak down the chain adds one per
//     hand-over, however slowly);
//   - memory: the last generation's RssAnon within RSS_MARGIN of generation 1's (each generation is a fresh
//     process: its heap grows only if something it receives grows down the chain);
//   - the guest: its rounds go on in every generation, none failed, every process exited 0, the guest booted
//     once, and every round's sector is in the image at the end.
import { roundsProblems } from './transfer-soak-rounds.js';
import type { ProcessSample } from './proc-sample.js';

/** The last generation's RssAnon may exceed the first's by this fraction (Node's heap varies run to run). */
export const RSS_MARGIN = 0.2;

export interface SoakGeneration {
  /** 1..N: the k-th process that received the VM (0 booted it). */
  generation: number;
  pid: number;
  /** Spawn → the new process listens on its cpr channel. */
  startMs: number;
  /** migrate → the old one reports completed and the new one `running` (what the guest and its user wait for). */
  handOverMs: number;
  /** The guest's pause as the new process measured it (x-query-cpr-timings). */
  pauseUs: number | null;
  fds: number;
  fdKinds: Record<string, number>;
  rssKiB: number;
  rssAnonKiB: number;
  /** The old process just before it handed over. */
  oldRssKiB: number;
  oldRssAnonKiB: number;
  /** The guest's last completed round when this generation was sampled. */
  rounds: number;
}

export interface SoakReport {
  /** The booting process, sampled after its first round. */
  boot: ProcessSample | null;
  generations: SoakGeneration[];
  /** Every process's COM1 output, in order, joined: one run of the guest. */
  output: string;
  stderr: string[];
  exitStatuses: (number | null)[];
  lastRound: number;
  /** Null when the image holds the probe's pattern and every round's sector up to lastRound. */
  imageProblem: string | null;
}

const kindsText = (k: Record<string, number>) =>
  Object.entries(k)
    .map(([kind, n]) => `${kind}×${n}`)
    .join(', ');

/** Everything that is not flat or not right; empty means the soak passed. */
export function soakProblems(r: SoakReport): string[] {
  const problems: string[] = [];
  const first = r.generations[0];
  if (!first) return ['no generation was recorded'];
  for (const g of r.generations) {
    if (g.fds !== first.fds || kindsText(g.fdKinds) !== kindsText(first.fdKinds))
      problems.push(
        `generation ${g.generation} holds ${g.fds} fds (${kindsText(g.fdKinds)}), generation 1 ${first.fds} (${kindsText(first.fdKinds)})`,
      );
  }
  const last = r.generations.at(-1)!;
  if (last.rssAnonKiB > first.rssAnonKiB * (1 + RSS_MARGIN))
    problems.push(
      `generation ${last.generation}'s RssAnon is ${last.rssAnonKiB} KiB, more than ${Math.round(RSS_MARGIN * 100)} % above generation 1's ${first.rssAnonKiB} KiB`,
    );
  let before = 0;
  for (const g of r.generations) {
    if (g.rounds <= before) problems.push(`the guest made no round in generation ${g.generation} (at ${g.rounds})`);
    before = g.rounds;
  }
  problems.push(...roundsProblems(r.output));
  r.exitStatuses.forEach((s, i) => {
    if (s !== 0) problems.push(`generation ${i} exited with ${s}`);
  });
  r.stderr.forEach((text, i) => {
    const bad = /NEEDS_RESET|needs reset|activation failed|error/i.exec(text);
    if (bad)
      problems.push(`generation ${i} reported a problem: ${text.split('\n').find((l) => bad && l.includes(bad[0]))}`);
  });
  if (r.imageProblem) problems.push(`the image: ${r.imageProblem}`);
  return problems;
}
