// What `machine.exited` resolves to: the exit status the tsvmm command would end with, and the reason in a word,
// taken from the status and the SHUTDOWN event the machine sent (QMP's reasons: guest-shutdown, guest-reset, …).
import { ExitStatus } from '../util/exit-status.js';
import type { ExitReason } from './options.js';

/** The statuses tsvmm picks itself (always even), by what they mean. */
const BY_STATUS: ReadonlyMap<number, ExitReason> = new Map([
  [ExitStatus.timeout, 'timeout'],
  [ExitStatus.guestPanic, 'panic'],
  [ExitStatus.tripleFault, 'triple-fault'],
  [ExitStatus.kvmInternalError, 'kvm-internal-error'],
  [ExitStatus.failEntry, 'fail-entry'],
  [ExitStatus.internalError, 'internal-error'],
]);

/** A status 0 by the SHUTDOWN event's reason (QEMU's ShutdownCause names). */
const BY_SHUTDOWN: Readonly<Record<string, ExitReason>> = {
  'guest-shutdown': 'poweroff',
  'guest-reset': 'reset',
  'guest-panic': 'panic',
  'host-qmp-quit': 'quit',
};

/** `shutdownReason`: the last SHUTDOWN event's reason, if the machine sent one. */
export function exitReason(status: number, shutdownReason: string | undefined): ExitReason {
  // isa-debug-exit gives (v << 1) | 1; every status tsvmm picks itself is even.
  if (status % 2 === 1) return 'guest-exit';
  const known = BY_STATUS.get(status);
  if (known) return known;
  if (status !== ExitStatus.ok) return 'internal-error';
  return (shutdownReason !== undefined ? BY_SHUTDOWN[shutdownReason] : undefined) ?? 'quit';
}
