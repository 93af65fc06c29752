import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ExitStatus } from './exit-status.js';
import { SetupError } from './setup-error.js';

class ImageError extends SetupError {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

class BadFlagError extends SetupError {
  override get exitStatus(): number {
    return ExitStatus.usage;
  }
}

test('setup error: a subclass ends tsvmm with status 4 (set-up failed) unless it names another', () => {
  const image = new ImageError('kernel: no such file');
  assert.instance(image, SetupError);
  assert.instance(image, Error);
  assert.is(image.exitStatus, ExitStatus.setupFailed);
  assert.is(image.exitStatus, 4);
  assert.is(image.message, 'kernel: no such file');
  assert.is(image.name, 'ImageError');
  assert.is(new BadFlagError('-m: bad size').exitStatus, 2);
});

test('setup error: the status is no own property, so an error prints and compares as it did', () => {
  const image = new ImageError('kernel: no such file');
  assert.equal(Object.keys(image), ['name']);
  assert.not.ok(Object.hasOwn(image, 'exitStatus'));
});

test.run();
