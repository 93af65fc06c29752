// QMP errors as QEMU reports them: `{"error": {"class": …, "desc": …}}`. The classes are QEMU's QapiErrorClass
// (qapi/error.json); almost everything is GenericError, and clients are told not to parse `desc`.

/** QEMU's error classes, in its order. */
export const QMP_ERROR_CLASSES = [
  'GenericError',
  'CommandNotFound',
  'DeviceNotActive',
  'DeviceNotFound',
  'KVMMissingCap',
] as const;
export type QmpErrorClass = (typeof QMP_ERROR_CLASSES)[number];

/**
 * What a command handler throws to answer with a QMP error: `throw new QmpError('GenericError', 'No migration in
 * progress')`. Anything else a handler throws becomes a GenericError carrying the exception's message.
 */
export class QmpError extends Error {
  constructor(
    readonly errorClass: QmpErrorClass,
    readonly desc: string,
  ) {
    super(desc);
    this.name = 'QmpError';
  }
}

/** Shorthand for the common case. */
export function genericError(desc: string): QmpError {
  return new QmpError('GenericError', desc);
}
