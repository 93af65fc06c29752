// The one error type of the Linux loaders: a single line naming what is wrong with the image or the request.

export class LinuxBootError extends Error {
  constructor(message: string) {
    super(`linux: ${message}`);
    this.name = 'LinuxBootError';
  }
}
