import { SetupError } from '../../src/util/setup-error.js';

/** A checkpoint/restart operation refused or failed: one line for the user (QMP GenericError, or exit 4). */
export class CprError extends SetupError {
  override readonly name = 'CprError';
}
