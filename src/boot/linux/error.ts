// The one error type of the Linux loaders: a single line naming what is wrong with the image or the request.
import { SetupError } from '../../util/setup-error.js';

export class LinuxBootError extends SetupError {
  constructor(message: string) {
    super(`linux: ${message}`);
    this.name = 'LinuxBootError';
  }
}
