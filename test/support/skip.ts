// Skipping a test that needs what this host lacks: say why in one line (the runner collects `SKIP …` lines).
import type { Test } from 'uvu';

/**
 * Registers `name` as a real test when `reason` is null, otherwise as a skipped test with its one-line reason.
 * Use: `testIf(suite, hostLacksVfio(), 'vfio: …', async () => { … })`.
 */
export function testIf(suite: Test, reason: string | null, name: string, fn: () => unknown | Promise<unknown>): void {
  if (reason === null) {
    suite(name, fn as () => void);
  } else {
    console.log(`SKIP ${name}: ${reason}`);
    suite.skip(name, fn as () => void);
  }
}
