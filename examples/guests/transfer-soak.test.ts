// The cpr-transfer soak (test/support/transfer-soak.ts), short: a chain of hand-overs of the virtio-probe guest,
// which does a virtio-blk write + read-back and a virtio-rng read every 20 ms throughout; after each hand-over the
// new process holds exactly the fds generation 1 held, memory stays flat, and the guest's rounds go on. `npm test`
// runs SOAK_GENERATIONS of them (each a new Node process: seconds in the rig); `npm run soak` runs 200
// (bench/soak.ts), with the numbers in docs/cpr.md.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { toolchainUnavailable } from './build.js';
import { runTransferSoak } from '../../test/support/transfer-soak.js';
import { soakProblems } from '../../test/support/transfer-soak-judge.js';

const SOAK_GENERATIONS = 10;

const skip = kvmMissing() ?? (await toolchainUnavailable());

testIf(
  test,
  skip,
  `cpr-transfer soak: ${SOAK_GENERATIONS} hand-overs in a row with the guest doing virtio I/O — the fd count and kinds of every generation equal generation 1's, RssAnon flat, no round lost or failed, every round's sector in the image`,
  async () => {
    const report = await runTransferSoak({ generations: SOAK_GENERATIONS });
    assert.is(report.generations.length, SOAK_GENERATIONS);
    const summary = report.generations
      .map(
        (g) =>
          `gen ${g.generation}: ${g.fds} fds, RssAnon ${g.rssAnonKiB} KiB, round ${g.rounds}, hand-over ${Math.round(g.handOverMs)} ms`,
      )
      .join('\n');
    console.log(summary);
    assert.equal(
      soakProblems(report),
      [],
      `${summary}\nfds of generation 1: ${JSON.stringify(report.generations[0].fdKinds)}`,
    );
  },
);

test.run();
