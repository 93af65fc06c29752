// Which test file a free runner slot takes next. Files that boot a Debian Linux guest (named `linux-*.test.js`)
// run one at a time: two of them at once on the rig's 2 CPUs — four nested vCPUs of two Linux guests, with their
// VMMs, tests and QEMU reference runs, under TCG — starved the guests for tens of seconds (RCU stalls, soft
// lockups, counter gaps of 30-120 s in src/machine/linux-cpr.test.ts) and once panicked the rig's own kernel, where
// each of these files alone passes. They start first, being the longest; the other slot takes the rest meanwhile.

/** A file whose tests boot a Linux guest (src/machine/linux-*.test.ts). */
export const bootsLinux = (file: string): boolean => /(^|\/)linux-[^/]*\.test\.js$/.test(file);

/** The run order: the Linux-guest files first (in the given order), then the rest. */
export function runOrder(files: readonly string[]): string[] {
  return [...files.filter(bootsLinux), ...files.filter((f) => !bootsLinux(f))];
}

/**
 * The index in `pending` of the file a free slot should start, given the files `running`; -1 when none may start
 * now (only Linux-guest files are left and one runs): the slot waits for a file to finish.
 */
export function nextFile(pending: readonly string[], running: readonly string[]): number {
  const linuxRunning = running.some(bootsLinux);
  return pending.findIndex((f) => !(linuxRunning && bootsLinux(f)));
}
