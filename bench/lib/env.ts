// Benchmark knobs from the environment.

/** A positive integer from $name, or `fallback` when it is unset or empty. */
export function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}=${text}: expected a positive integer`);
  return n;
}
