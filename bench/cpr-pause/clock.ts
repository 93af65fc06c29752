// One time axis for everything the bench compares: CLOCK_REALTIME, as the VMMs use for their phase marks and the
// timestamped debugcon uses for the guest's bytes. Microseconds since the epoch as a double (exact to well below a
// microsecond at today's dates).
import { clockNs, CLOCK_REALTIME } from '../../src/sys/libc.js';

/** CLOCK_REALTIME now, in µs. */
export function realtimeUs(): number {
  return nsToUs(clockNs(CLOCK_REALTIME));
}

/** A CLOCK_REALTIME stamp in ns (as the debugcon writes it) to µs, keeping the sub-µs part. */
export function nsToUs(ns: bigint): number {
  return Number(ns / 1000n) + Number(ns % 1000n) / 1000;
}
