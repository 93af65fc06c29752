// The errors that stop tsvmm before its guest runs — a bad command line, /dev/kvm, the RAM backend, the guest image,
// a checkpoint — say in one line what is wrong. Their class carries how tsvmm ends, so src/cli/main.ts prints the
// message and exits with `exitStatus` without knowing each class.
import { ExitStatus } from './exit-status.js';

export class SetupError extends Error {
  /**
   * tsvmm's exit status when this error ends it: 4 (set-up failed) unless a subclass says otherwise. A getter on the
   * class, not a field: errors keep the own properties they had (printed, compared and cloned as before).
   */
  get exitStatus(): number {
    return ExitStatus.setupFailed;
  }
}
