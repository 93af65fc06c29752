// `npm run soak [-- --generations N]`: the cpr-transfer soak (test/support/transfer-soak.ts), 200 hand-overs by
// default, with a table per generation and the verdict (test/support/transfer-soak-judge.ts). Needs a usable
// /dev/kvm; without one, run it in the rig: `npm run rig -- --timeout 7200 node dist/bench/soak.js`.
import { parseArgs } from 'node:util';
import { kvmMissing } from '../kvm/testing/test-guest.js';
import { runTransferSoak } from '../test/support/transfer-soak.js';
import { soakProblems, type SoakGeneration } from '../test/support/transfer-soak-judge.js';

const { values } = parseArgs({ options: { generations: { type: 'string', default: '200' } } });
const generations = Number(values.generations);
if (!(Number.isInteger(generations) && generations >= 1)) {
  process.stderr.write(`soak: --generations ${values.generations}: want a positive integer\n`);
  process.exit(2);
}
const why = kvmMissing();
if (why) {
  process.stderr.write(`soak: ${why}; run it in the rig: npm run rig -- --timeout 7200 node dist/bench/soak.js\n`);
  process.exit(4);
}

const started = performance.now();
const row = (g: SoakGeneration) =>
  [
    String(g.generation).padStart(4),
    String(g.fds).padStart(4),
    String(g.rssKiB).padStart(8),
    String(g.rssAnonKiB).padStart(8),
    String(g.oldRssAnonKiB).padStart(8),
    String(Math.round(g.startMs)).padStart(8),
    String(Math.round(g.handOverMs)).padStart(8),
    String(g.pauseUs === null ? '-' : Math.round(g.pauseUs / 1000)).padStart(6),
    String(g.rounds).padStart(7),
  ].join(' ');
console.log(' gen  fds  rss-KiB anon-KiB old-anon start-ms hand-ms pause  round');
const report = await runTransferSoak({ generations, onGeneration: (g) => console.log(row(g)) });

const gens = report.generations;
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)];
const hand = gens.map((g) => g.handOverMs);
const anon = gens.map((g) => g.rssAnonKiB);
const rss = gens.map((g) => g.rssKiB);
console.log(
  `\nboot process: ${report.boot?.fds} fds, RSS ${report.boot?.rssKiB} KiB, RssAnon ${report.boot?.rssAnonKiB} KiB`,
);
console.log(`generation 1's fds: ${JSON.stringify(gens[0].fdKinds)}`);
console.log(`fds per generation: ${[...new Set(gens.map((g) => g.fds))].join(', ')} (distinct values)`);
console.log(`RSS KiB first/last/max: ${rss[0]} / ${rss.at(-1)} / ${Math.max(...rss)}`);
console.log(`RssAnon KiB first/last/max: ${anon[0]} / ${anon.at(-1)} / ${Math.max(...anon)}`);
console.log(`hand-over ms median/max: ${Math.round(median(hand))} / ${Math.round(Math.max(...hand))}`);
console.log(`start-to-listening ms median: ${Math.round(median(gens.map((g) => g.startMs)))}`);
console.log(`guest rounds: ${report.lastRound} (every one's sector in the image: ${report.imageProblem ?? 'yes'})`);
console.log(`wall time: ${Math.round((performance.now() - started) / 1000)} s for ${generations} hand-overs`);
const problems = soakProblems(report);
console.log(problems.length ? `NOT FLAT:\n  ${problems.join('\n  ')}` : 'flat: every check passed');
process.exitCode = problems.length ? 1 : 0;
