// The test runner behind `npm test`: runs every compiled `*.test.js` in its own process, two at a time (files that
// boot a Linux guest one at a time, linux-cpr alone: test/runner/schedule.ts), and ends with the line
// `N passed, N failed` that CI reads.
//
// Where /dev/kvm is missing or unusable, a file whose tests skip for that reason (or another the rig can lift, see
// test/support/rig-provides.ts: KVM that is PVM, no huge pages, no device bound to vfio-pci) is run again, whole, inside the rig (test/rig/: a
// QEMU machine whose Linux has a real, SVM-backed /dev/kvm and reserved huge pages), all such files in one boot;
// its native result is dropped and the rig's counts instead. When any of them skipped for want of a vfio-pci device,
// that one boot is a q35 with intel-iommu and QEMU's edu and nvme bound to vfio-pci (RIG_VFIO_DEVICES). Inside the rig this runner runs only the files it is
// given and writes their results as JSON for the runner outside; a file that failed because the rig lost a guest's
// CPU state (test/runner/rig-state-loss.ts) runs once more there.
//
// Usage: node dist/test/run.js [filter …]            (a filter is a substring of the test file's path)
//        node dist/test/run.js --files F… --json OUT  (exactly these files, relative to dist/; results to OUT)
// Environment: TSVMM_TEST_JOBS (files at once, default 2), TSVMM_TEST_TIMEOUT_MS (per file), TSVMM_NO_RIG=1 (skip
// rather than use the rig), TSVMM_RIG_TIMEOUT_S (the whole rig batch).
import { renameSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RIG_VFIO_DEVICES, rigCanLift, rigNeedsVfio } from './support/rig-provides.js';
import { describe, findTests, runTestFile, type FileResult } from './runner/test-file.js';
import { nextFile, runOrder } from './runner/schedule.js';
import { rigStateLoss } from './runner/rig-state-loss.js';

const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const inRig = process.env.TSVMM_IN_RIG === '1';
// Inside the rig Node runs 3-13 times slower and guests run under nested virtualisation.
const fileTimeoutMs = Number(process.env.TSVMM_TEST_TIMEOUT_MS ?? (inRig ? 1_800_000 : 300_000));
const parallel = Number(process.env.TSVMM_TEST_JOBS ?? Math.max(1, Math.min(2, availableParallelism())));

const seconds = (ms: number): string =>
  ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
const needsRig = (r: FileResult): boolean => r.skips.some(rigCanLift);

/**
 * Runs `files` `parallel` at a time, Linux-guest files one at a time and first (test/runner/schedule.ts); `onDone`
 * sees each result as it finishes.
 */
async function runAll(files: string[], onDone: (r: FileResult) => void): Promise<FileResult[]> {
  const results: FileResult[] = [];
  const pending = runOrder(files);
  const running: string[] = [];
  // Resolved whenever a file finishes: a slot that had to wait looks again.
  let finished: () => void = () => {};
  let oneFinished = new Promise<void>((resolve) => (finished = resolve));
  const worker = async () => {
    while (pending.length > 0) {
      const i = nextFile(pending, running);
      if (i < 0) {
        await oneFinished;
        continue;
      }
      const [file] = pending.splice(i, 1);
      running.push(file);
      let r = await runTestFile(distRoot, file, fileTimeoutMs);
      const lost = inRig && r.failed ? rigStateLoss(r.output) : null;
      if (lost) {
        console.log(`rig: ${r.file} met the rig losing a guest's CPU state, so it runs once more: ${lost.trim()}`);
        r = await runTestFile(distRoot, file, fileTimeoutMs);
      }
      running.splice(running.indexOf(file), 1);
      results.push(r);
      onDone(r);
      finished();
      oneFinished = new Promise<void>((resolve) => (finished = resolve));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

/** Results as JSON, replaced whole (a reader never sees half a file); passing files' output is only noise outside. */
function writeResults(path: string, results: FileResult[]): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(results.map((r) => (r.failed ? r : { ...r, output: '' }))));
  renameSync(`${path}.tmp`, path);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { files: { type: 'boolean' }, json: { type: 'string' } },
  });
  const all = findTests(distRoot);
  const files = values.files
    ? positionals.map((f) => join(distRoot, f))
    : all.filter((f) => positionals.length === 0 || positionals.some((x) => f.includes(x)));

  // Outside, this line's arrival is how long the rig took to boot and start node.
  if (inRig) console.log(`runner: ${files.length} files, ${parallel} at a time`);
  const nativeStarted = Date.now();
  const useRig = !inRig && process.env.TSVMM_NO_RIG !== '1';
  const forRig: string[] = [];
  let rigVfio = false;
  const finished: FileResult[] = [];
  const native = await runAll(files, (r) => {
    // Written after every file, not only at the end: when the rig times out or dies, the files that finished
    // before keep their results (the runner outside reads this file) and only the unfinished ones fail.
    finished.push(r);
    if (values.json) writeResults(values.json, finished);
    if (useRig && needsRig(r)) {
      forRig.push(r.file);
      if (r.skips.some(rigNeedsVfio)) rigVfio = true;
      console.log(
        `rig  ${r.file.padEnd(48)} needs what the rig has (${r.skips.filter(rigCanLift).length} tests skipped): runs in the rig below`,
      );
    } else {
      console.log(describe(r));
    }
  });
  const nativeMs = Date.now() - nativeStarted;
  let results = native.filter((r) => !forRig.includes(r.file));
  let timeLine = `time: ${seconds(nativeMs)} for ${results.length} files${inRig ? ' in the rig' : ' natively'}`;

  if (forRig.length) {
    forRig.sort();
    const vfio = rigVfio ? RIG_VFIO_DEVICES : [];
    console.log(
      `rig: ${forRig.length} files need what this host lacks (/dev/kvm, VMX/SVM, huge pages or vfio-pci devices): running them in one boot of the rig${vfio.length ? ` (q35 + intel-iommu, vfio: ${vfio.join(', ')})` : ''} (test/rig/README.md)`,
    );
    const { runFilesInRig } = await import('./runner/rig-batch.js');
    const batch = await runFilesInRig(distRoot, forRig, (line) => console.log(line), vfio);
    if ('reason' in batch) {
      console.log(`rig: cannot run here (${batch.reason}); those files' native results stand, their KVM tests skipped`);
      results = native;
    } else {
      results = [...results, ...batch.results];
      timeLine += `; rig ${seconds(batch.ms)} for ${forRig.length} files (set-up, boot and node's start: ${seconds(batch.bootMs)})`;
    }
  }

  if (values.json) writeResults(values.json, results);
  const passed = results.reduce((a, r) => a + r.passed, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const skipped = results.reduce((a, r) => a + r.skipped, 0);
  console.log(timeLine);
  if (skipped) console.log(`${skipped} skipped (reasons above)`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
