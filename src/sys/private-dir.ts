// Scratch files in a directory of their own: mkdtemp makes it with a random name and mode 0700, so no other user
// can predict, plant, read or replace anything inside (a fixed name such as /tmp/tsvmm-warm-up-PID.cpr invites a
// symlink or a directory planted in its place). The directory goes when the work is done, and its removal never
// throws: a clean-up that fails must not replace the error that matters, or escape as an unhandled rejection.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Makes a private directory under `parent` named `prefix` + random characters; throws as mkdtemp does. */
export function makePrivateDir(parent: string, prefix: string): string {
  return mkdtempSync(join(parent, prefix));
}

/** Removes `dir` and everything in it; false (not a throw) when that fails. */
export function removePrivateDir(dir: string): boolean {
  try {
    rmSync(dir, { recursive: true, force: true });
    return true;
  } catch {
    return false;
  }
}

/** Runs `fn` with a fresh private directory under `parent`, removed afterwards whatever `fn` did. */
export function withPrivateDir<T>(parent: string, prefix: string, fn: (dir: string) => T): T {
  const dir = makePrivateDir(parent, prefix);
  try {
    return fn(dir);
  } finally {
    removePrivateDir(dir);
  }
}
