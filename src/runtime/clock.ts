// The host clock devices see, from clock_gettime(2).
import { clockNs, CLOCK_MONOTONIC, CLOCK_REALTIME } from '../sys/libc.js';
import type { HostClock } from '../bus/types.js';

export const hostClock: HostClock = {
  realtimeNs: () => clockNs(CLOCK_REALTIME),
  monotonicNs: () => clockNs(CLOCK_MONOTONIC),
};
