// Whether this host can run guests itself, asked the cheap way (no FFI): the entry points that fall back to the rig
// (npm start, npm run bench) ask it before deciding where to run.
import { closeSync, openSync } from 'node:fs';

/** Null when /dev/kvm opens for reading and writing, else why not (one phrase). */
export function hostKvmUnusable(): string | null {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'this host has no /dev/kvm' : `/dev/kvm cannot be opened (${code})`;
  }
}
