// Binary size units, as QEMU's size suffixes and the kernel's messages mean them.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;
