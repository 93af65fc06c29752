// The soak's judge and its /proc sampling: what counts as flat, and what a leak looks like.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, openSync } from 'node:fs';
import { fdKind, processSample } from './proc-sample.js';
import { RSS_MARGIN, soakProblems, type SoakGeneration, type SoakReport } from './transfer-soak-judge.js';
import { roundsProblems } from './transfer-soak-rounds.js';

const gen = (k: number, extra: Partial<SoakGeneration> = {}): SoakGeneration => ({
  generation: k,
  pid: 1000 + k,
  startMs: 100,
  handOverMs: 50,
  pauseUs: 20_000,
  fds: 40,
  fdKinds: { socket: 10, 'anon_inode:[eventfd]': 30 },
  rssKiB: 100_000,
  rssAnonKiB: 50_000,
  oldRssKiB: 100_000,
  oldRssAnonKiB: 50_000,
  rounds: k * 10,
  ...extra,
});

const guestRun = (rounds: number) =>
  `virtio-probe: start\n${Array.from({ length: rounds }, (_, i) => `virtio-probe: round ${i + 1} ok\n`).join('')}`;

const report = (generations: SoakGeneration[], o: Partial<SoakReport> = {}): SoakReport => ({
  boot: null,
  generations,
  output: guestRun(generations.at(-1)?.rounds ?? 0),
  stderr: generations.map(() => ''),
  exitStatuses: generations.map(() => 0),
  lastRound: generations.at(-1)?.rounds ?? 0,
  imageProblem: null,
  ...o,
});

test('soak judge: equal fds, flat memory and rounds going on in every generation is flat', () => {
  assert.equal(soakProblems(report([gen(1), gen(2), gen(3)])), []);
});

test('soak judge: one fd more in a later generation is a leak, named with its kind', () => {
  const leaked = gen(3, { fds: 41, fdKinds: { socket: 11, 'anon_inode:[eventfd]': 30 } });
  const problems = soakProblems(report([gen(1), gen(2), leaked]));
  assert.is(problems.length, 1);
  assert.match(problems[0], /generation 3 holds 41 fds .*socket×11.*generation 1 40/);
});

test('soak judge: the same count of other kinds is not flat either', () => {
  const swapped = gen(2, { fdKinds: { socket: 9, 'anon_inode:[eventfd]': 31 } });
  assert.is(soakProblems(report([gen(1), swapped])).length, 1);
});

test(`soak judge: RssAnon of the last generation more than ${RSS_MARGIN * 100} % above the first's is growth`, () => {
  const within = gen(3, { rssAnonKiB: 50_000 * (1 + RSS_MARGIN) });
  assert.equal(soakProblems(report([gen(1), gen(2), within])), []);
  const grown = gen(3, { rssAnonKiB: 50_000 * (1 + RSS_MARGIN) + 1 });
  assert.match(soakProblems(report([gen(1), gen(2), grown])).join('\n'), /RssAnon/);
});

test('soak judge: a generation where the guest made no round, a failed exit, an image mismatch each count', () => {
  const stuck = gen(2, { rounds: 10 });
  assert.match(soakProblems(report([gen(1), stuck])).join('\n'), /no round in generation 2/);
  assert.match(soakProblems(report([gen(1)], { exitStatuses: [0, 1] })).join('\n'), /generation 1 exited with 1/);
  assert.match(soakProblems(report([gen(1)], { imageProblem: 'round 3 differs' })).join('\n'), /image: round 3/);
});

test('soak rounds: a line cut by a hand-over and finished by the next process reads as one run', () => {
  const run = guestRun(4);
  const cut = run.indexOf('und 3 ok');
  assert.equal(roundsProblems(run.slice(0, cut) + run.slice(cut)), []);
  assert.match(roundsProblems(run.replace('virtio-probe: round 2 ok\n', '')).join('\n'), /round 2 is missing/);
  assert.match(roundsProblems(run + run).join('\n'), /started 2 times/);
  assert.match(roundsProblems(`${run}virtio-blk: FAILED: round 5 read status 1\n`).join('\n'), /FAILED/);
});

test('proc sample: fd kinds drop what differs between healthy processes (inodes, vCPU numbers)', () => {
  assert.is(fdKind('socket:[123456]'), 'socket');
  assert.is(fdKind('pipe:[99]'), 'pipe');
  assert.is(fdKind('anon_inode:kvm-vcpu:1'), 'anon_inode:kvm-vcpu');
  assert.is(fdKind('anon_inode:[eventfd]'), 'anon_inode:[eventfd]');
  assert.is(fdKind('/memfd:ram0 (deleted)'), '/memfd:ram0');
  assert.is(fdKind('/dev/kvm'), '/dev/kvm');
});

test('proc sample: an fd this process opens shows in its count and kinds', async () => {
  const before = await processSample(process.pid);
  const fd = openSync('/proc/self/status', 'r');
  try {
    const after = await processSample(process.pid);
    assert.is(after.fds, before.fds + 1);
    assert.ok(after.fdKinds[`/proc/${process.pid}/status`] >= 1, JSON.stringify(after.fdKinds));
    assert.ok(after.rssKiB > 0 && after.rssAnonKiB > 0 && after.rssAnonKiB <= after.rssKiB);
  } finally {
    closeSync(fd);
  }
});

test.run();
