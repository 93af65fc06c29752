// Little-endian fields as bytes, for tables built byte by byte (the MP table, the MADT) and read back from images.

/** The two bytes of a 16-bit little-endian field holding `x` (its low 16 bits). */
export const le16 = (x: number): number[] => [x & 0xff, (x >> 8) & 0xff];

/** The four bytes of a 32-bit little-endian field holding `x` (its low 32 bits). */
export const le32 = (x: number): number[] => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];

/** The unsigned 32-bit little-endian value at `bytes[at .. at + 4)` (the caller checks the bounds). */
export const u32At = (bytes: Uint8Array, at: number): number =>
  (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
