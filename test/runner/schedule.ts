// Which test file a free runner slot takes next. Files that boot a Debian Linux guest (named `linux-*.test.js`)
// run one at a time: two of them at once on the rig's 2 CPUs — four nested vCPUs of two Linux guests, with their
// VMMs, tests and QEMU reference runs, under TCG — starved the guests for tens of seconds (RCU stalls, soft
// lockups, counter gaps of 30-120 s in src/machine/linux-cpr.test.ts) and once panicked the rig's own kernel, where
// each of these files alone passes. They start first, being the longest; the other slot takes the rest meanwhile.

/** A file whose tests boot a Linux guest (src/machine/linux-*.test.ts). */
export const bootsLinux = (file: string): boolean => /(^|\/)linux-[^/]*\.test\.js$/.test(file);

/**
 * A file that runs with no other file beside it.
 * - src/machine/linux-cpr.test.ts bounds the counter's gap across each checkpoint by the pause plus the stalls the
 *   guest showed otherwise, and the rig's nested paging (TCG's emulation of SVM) stalls a Linux guest inside its own
 *   page-fault handler for seconds to minutes when the rig is busy: its soft lockup reports put the stuck CPU in
 *   `__get_vma_policy`/`vma_alloc_folio` (CI 2026-12-08, beside light files only). Alone it passed (6 passed, 6 min
 *   47 s).
 * - examples/guests/transfer-soak.test.ts keeps one guest running through a chain of tsvmm processes for minutes. Its
 *   32-bit guest without paging, which reports every exception it takes, twice died in CI beside a Linux-guest file
 *   (stop 17: a process of the chain gone; 2026-12-08: a triple fault mid-line at round 2108): the rig's nested SVM
 *   losing the guest's CPU state, as when it once answered KVM_GET_SREGS for this guest with a 64-bit CS and CR0.PG
 *   (test/rig/README.md). Rig otherwise idle, 315 hand-overs in two 200-generation soaks met that once.
 */
export const runsAlone = (file: string): boolean => /(^|\/)(linux-cpr|transfer-soak)\.test\.js$/.test(file);

/** The run order: the Linux-guest files first (in the given order), then the rest. */
export function runOrder(files: readonly string[]): string[] {
  return [...files.filter(bootsLinux), ...files.filter((f) => !bootsLinux(f))];
}

/**
 * The index in `pending` of the file a free slot should start, given the files `running`; -1 when none may start
 * now (a file that runs alone is running, or only Linux-guest files are left and one runs): the slot waits for a
 * file to finish. A file that runs alone starts only when no other runs.
 */
export function nextFile(pending: readonly string[], running: readonly string[]): number {
  if (running.some(runsAlone)) return -1;
  const linuxRunning = running.some(bootsLinux);
  return pending.findIndex((f) => !(linuxRunning && bootsLinux(f)) && !(runsAlone(f) && running.length > 0));
}
