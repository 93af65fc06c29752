// Hexadecimal for messages and reports, written one way everywhere: `0x1f`, or `0x0000001f` with a width.

/** The digits of `n` in lower-case hexadecimal, zero-padded to at least `width` digits; no prefix. */
export function hexDigits(n: number | bigint, width = 0): string {
  return n.toString(16).padStart(width, '0');
}

/** `n` as `0x…` (QEMU's and the kernel's spelling), zero-padded to at least `width` digits. */
export function hex(n: number | bigint, width = 0): string {
  return `0x${hexDigits(n, width)}`;
}
