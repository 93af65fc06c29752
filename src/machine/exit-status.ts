// The table lives in src/util/exit-status.ts, below every layer, so that an error anywhere can carry its status.
// This re-export only keeps machine.ts, guest-policy.ts and devices/pvpanic.test.ts building while they are
// restructured elsewhere; once they import src/util/exit-status.ts, it goes.
export { ExitStatus, type ExitStatusName } from '../util/exit-status.js';
