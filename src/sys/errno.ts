// errno numbers → names, and the typed error every libc wrapper throws.
import { constants } from 'node:os';
import { SetupError } from '../util/setup-error.js';

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E#${errno}`;
}

export const Errno = constants.errno;

/** A failed system call: names the call, what it was called with and the errno (name and number). */
export class SysError extends SetupError {
  readonly call: string;
  readonly argument: string;
  readonly errno: number;
  readonly code: string;

  constructor(call: string, argument: string, errno: number) {
    const code = errnoName(errno);
    super(`${call}(${argument}) failed: ${code} (errno ${errno})`);
    this.name = 'SysError';
    this.call = call;
    this.argument = argument;
    this.errno = errno;
    this.code = code;
  }
}
