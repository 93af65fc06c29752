// The test files that need KVM, on a host without a usable /dev/kvm: all of them in one boot of the rig
// (test/rig/), run there by this same runner, whose per-file lines are streamed with a "[rig]" prefix and whose
// results come back as JSON through the run's share.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RigSetupError } from '../rig/debian.js';
import { RIG_SHARE_IN_GUEST, runInRig } from '../rig/machine.js';
import type { VfioDeviceName } from '../support/vfio-devices.js';
import { describe, type FileResult } from './test-file.js';

/** The whole batch's time limit: well inside CI's 90 minutes, and far above a normal run (~10 min on 2 cores). */
const RIG_BATCH_TIMEOUT_MS = Number(process.env.TSVMM_RIG_TIMEOUT_S ?? 45 * 60) * 1000;

export interface RigBatch {
  results: FileResult[];
  /** From the start to the first line of the runner inside (fetching, QEMU start, the kernel boot, node's start). */
  bootMs: number;
  ms: number;
}

/**
 * What the files need that is cheaper to make here than inside (where gcc runs under TCG and every write is lost
 * with the machine): the example guests, which files that skipped here would otherwise build at every rig boot.
 */
async function prepareNatively(print: (line: string) => void): Promise<void> {
  const { buildAllGuests, toolchainUnavailable } = await import('../../examples/guests/build.js');
  const why = await toolchainUnavailable();
  if (why) {
    print(`rig: the example guests are not built beforehand (${why}); tests that need them say so`);
    return;
  }
  await buildAllGuests();
}

/** Lines of a stream, however it is chunked. */
function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) onLine(line);
    },
    end() {
      if (pending) onLine(pending);
      pending = '';
    },
  };
}

/**
 * A rig whose own kernel panics mid-run has said nothing about the files it was running (three times so far: in two
 * of the last four full runs and in one short batch, each while Linux-guest files ran; test/rig/README.md, "When the
 * rig's kernel dies"). Those files run again in a fresh boot, up to two more boots while the batch's time limit
 * leaves room; each panic is printed, and the last boot's fails every file it leaves unfinished.
 */
const RIG_BOOTS = 3;
/** A fresh boot is not worth starting with less time than this left in the batch's limit. */
const MIN_RETRY_MS = 8 * 60 * 1000;

const panicked = (trouble: string[]): boolean => trouble.some((l) => /Kernel panic/.test(l));

/**
 * Runs `files` (paths relative to dist/) inside the rig; with `vfio`, the rig boots as q35 + intel-iommu with those
 * devices bound to vfio-pci (for every file: one boot). Returns null with a one-line reason when the rig cannot be
 * set up here. A file without a result (the machine died or timed out first) counts as one failure saying so.
 */
export async function runFilesInRig(
  distRoot: string,
  files: string[],
  print: (line: string) => void,
  vfio: readonly VfioDeviceName[] = [],
): Promise<RigBatch | { reason: string }> {
  await prepareNatively(print);
  const share = mkdtempSync(join(tmpdir(), 'tsvmm-test-rig-'));
  const started = Date.now();
  let bootMs = -1;
  const results: FileResult[] = [];
  // Failures the runner inside could not report itself are reported here.
  const failure = (file: string, output: string): void => {
    const r: FileResult = { file, passed: 0, failed: 1, skipped: 0, skips: [], ms: 0, output };
    results.push(r);
    print(describe({ ...r, file: `[rig] ${file}` }));
  };
  try {
    let pending = files;
    for (let boot = 1; boot <= RIG_BOOTS && pending.length; boot++) {
      const resultsFile = `results-${boot}.json`;
      const lines = lineSplitter((line) => print(`[rig] ${line}`));
      const result = await runInRig({
        command: [
          process.execPath,
          join(distRoot, 'test', 'run.js'),
          '--json',
          `${RIG_SHARE_IN_GUEST}/${resultsFile}`,
          '--files',
          ...pending,
        ],
        shareDir: share,
        vfio: [...vfio],
        timeoutMs: RIG_BATCH_TIMEOUT_MS - (Date.now() - started),
        output: (chunk) => {
          if (bootMs < 0) bootMs = Date.now() - started;
          lines.push(chunk);
        },
        log: (line) => print(line),
      });
      lines.end();
      try {
        results.push(...(JSON.parse(readFileSync(join(share, resultsFile), 'utf8')) as FileResult[]));
      } catch {
        /* none: every file is reported missing below */
      }
      pending = pending.filter((file) => !results.some((r) => r.file === file));
      const timeLeft = RIG_BATCH_TIMEOUT_MS - (Date.now() - started);
      if (
        result.died &&
        panicked(result.kernelTrouble) &&
        pending.length &&
        boot < RIG_BOOTS &&
        timeLeft > MIN_RETRY_MS
      ) {
        print(
          `rig: the rig's own kernel panicked (its lines above; test/rig/README.md, "When the rig's kernel dies"): the ${pending.length} files it left unfinished run again in a fresh boot`,
        );
        continue;
      }
      const why = result.timedOut
        ? `the rig timed out after ${Math.round(result.ms / 1000)} s`
        : result.died
          ? 'the rig machine died'
          : 'the runner inside the rig gave no result';
      for (const file of pending) failure(file, `${why} before this file finished`);
      // A kernel warning in the rig (a soft lockup, an RCU stall) is a failure of its own: it hides hangs.
      if (result.kernelTrouble.length)
        failure('test/rig (kernel log)', `the rig's kernel reported:\n${result.kernelTrouble.join('\n')}`);
      break;
    }
    return { results, bootMs: Math.max(0, bootMs), ms: Date.now() - started };
  } catch (e) {
    if (e instanceof RigSetupError) return { reason: e.message };
    throw e;
  } finally {
    rmSync(share, { recursive: true, force: true });
  }
}
