// Running the real tsvmm command line (the compiled dist/src/cli/main.js) from a benchmark.
import { join } from 'node:path';
import { repoRoot } from '../../test/support/cc.js';
import { runTimed, expectStatus, type TimedOptions, type TimedRun } from './spawn.js';

export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** isa-debug-exit's status for a guest that writes 0: (0 << 1) | 1. */
export const GUEST_EXIT_OK = 1;

/** `node dist/src/cli/main.js run ARGS…`, timed; throws unless the guest ended with debug-exit value 0. */
export async function runTsvmm(
  args: readonly string[],
  options: TimedOptions & { expect?: number | null } = {},
): Promise<TimedRun> {
  const run = await runTimed(process.execPath, [cliPath, 'run', ...args], options);
  return options.expect === null ? run : expectStatus(run, options.expect ?? GUEST_EXIT_OK, `tsvmm ${args.join(' ')}`);
}
