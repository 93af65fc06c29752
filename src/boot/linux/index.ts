// The Linux loaders' public face: one call that loads a bzImage or an ELF vmlinux (PVH or 64-bit entry) with its
// command line and initrd, and returns the boot vCPU's state. See bzimage.ts and vmlinux.ts for the rules.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { loadBzImage } from './bzimage.js';
import type { LinuxBoot, LinuxBootOptions } from './common.js';
import { hasElfMagic } from '../elf.js';
import { LinuxBootError } from './error.js';
import { hasSetupHeader } from './setup-header.js';
import { loadVmlinux } from './vmlinux.js';

export { loadBzImage } from './bzimage.js';
export { loadVmlinux } from './vmlinux.js';
export type { LinuxBoot, LinuxBootOptions, LinuxEntry } from './common.js';
export { LinuxBootError } from './error.js';
export type { NamedRange } from './placement.js';
export { findPvhEntry } from './elf-kernel.js';
export { parseSetupHeader, type BzImageHeader } from './setup-header.js';
export {
  CMDLINE_ADDR,
  LINUX64_BOOT_DATA,
  PVH_BOOT_DATA,
  PVH_START_INFO_ADDR,
  ZERO_PAGE_ADDR,
} from './layout.js';

/** Loads a Linux kernel image of either kind: a bzImage ("HdrS" at 0x202) or an ELF vmlinux. */
export function loadLinux(mem: GuestMemory, image: Uint8Array, options: LinuxBootOptions): LinuxBoot {
  if (hasSetupHeader(image)) return loadBzImage(mem, image, options);
  if (hasElfMagic(image)) return loadVmlinux(mem, image, options);
  throw new LinuxBootError('not a Linux kernel: neither a bzImage ("HdrS" at 0x202) nor an ELF vmlinux');
}
