// Rounding a size or an address up to a boundary.

/** The smallest multiple of `alignment` that is ≥ `n` (any positive alignment; arithmetic, so no 32-bit wrap). */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
