// A fuzz target's contract: any input either succeeds or is refused with one of the parser's own documented errors.
// Anything else (a TypeError, a RangeError out of a Buffer, an assertion in a test double) escapes to the fuzzer,
// which records the input as a crash.

// biome-ignore lint/suspicious/noExplicitAny: error classes take any constructor arguments
type ErrorClass = abstract new (...args: any[]) => Error;

/** Runs `fn`; an error that is an instance of one of `allowed` is a refusal (returned), any other is rethrown. */
export function refusedOnlyWith(allowed: readonly ErrorClass[], fn: () => void): Error | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (allowed.some((c) => e instanceof c)) return e as Error;
    throw e;
  }
}

/** Throws when `condition` is false: an invariant the code under test must keep, checked from outside. */
export function invariant(condition: boolean, what: string): void {
  if (!condition) throw new Error(`fuzz invariant broken: ${what}`);
}
