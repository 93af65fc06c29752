// The power-of-two check that queue sizes, BAR sizes, alignments and huge page sizes need.

/** True for 1, 2, 4, … up to 2^52: safe integers only, exact beyond 32 bits (no bitwise wrap). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}
