// How long a test waits for something that must happen before it calls it a hang. It measures nothing: it only has
// to be far above the slowest machine the tests run on. Measured in the rig (test/rig/) with the 2-core host shared by
// five rigs (load ~15): `node -e 0` took 11-17 s, and tsvmm 45-50 s to open its QMP socket.
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const HANG_GUARD_MS = 300_000;

/** Polls `ready` every 20 ms until it holds; throws `what` (with `detail()`) only after HANG_GUARD_MS. */
export async function waitFor(ready: () => boolean, what: string, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${HANG_GUARD_MS / 1000} s\n${detail()}`);
    await sleep(20);
  }
}
