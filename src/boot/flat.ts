// Flat binary loader: copies a raw image to a fixed guest address and starts it in the requested CPU mode.
// Used for `-kernel` images with no header (with an explicit load address) and for the small test guests.
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  bootCpuState,
  formatRange,
  rangesOverlap,
  reservedBootRanges,
  BOOT_IDENTITY_MAP_BYTES,
  type BootCpuState,
  type CpuMode,
  type GuestRange,
} from './cpu-modes.js';
import { hex } from '../util/hex.js';
import { SetupError } from '../util/setup-error.js';

export interface FlatOptions {
  /** Guest-physical address the first byte of the image goes to. */
  loadAddress: number;
  /** Guest-physical address of the first instruction (default: loadAddress). Must lie inside the image. */
  entry?: number;
  mode: CpuMode;
  /** Initial stack pointer (default BOOT_STACK_TOP, inside the reserved boot page). */
  stack?: number;
}

export class FlatLoadError extends SetupError {
  constructor(message: string) {
    super(`flat image: ${message}`);
    this.name = 'FlatLoadError';
  }
}

/** How far each mode can address with the state we give it: real mode 1 MiB, the others the mapped 4 GiB. */
const MODE_LIMIT: Record<CpuMode, number> = { real: 0x100000, protected: 2 ** 32, long: BOOT_IDENTITY_MAP_BYTES };

/** Copies `bytes` to `loadAddress` and returns the vCPU state that starts it at `entry` in `mode`. */
export function loadFlat(mem: GuestMemory, bytes: Uint8Array, options: FlatOptions): BootCpuState {
  const { loadAddress, mode } = options;
  const entry = options.entry ?? loadAddress;
  if (!(mode in MODE_LIMIT)) throw new FlatLoadError(`unknown mode ${String(mode)}`);
  if (bytes.length === 0) throw new FlatLoadError('image is empty');
  if (!Number.isSafeInteger(loadAddress) || loadAddress < 0) throw new FlatLoadError(`bad load address ${loadAddress}`);
  const image: GuestRange = { start: loadAddress, end: loadAddress + bytes.length };
  if (image.end > MODE_LIMIT[mode]) {
    throw new FlatLoadError(
      `image ${formatRange(image)} is not addressable in ${mode} mode (limit ${hex(MODE_LIMIT[mode])})`,
    );
  }
  if (!mem.contains(image.start, bytes.length)) {
    throw new FlatLoadError(`image ${formatRange(image)} (${bytes.length} bytes) does not fit in guest RAM`);
  }
  for (const reserved of reservedBootRanges(mode)) {
    if (rangesOverlap(image, reserved)) {
      throw new FlatLoadError(`image ${formatRange(image)} overlaps the reserved boot range ${formatRange(reserved)}`);
    }
  }
  if (!Number.isSafeInteger(entry) || entry < image.start || entry >= image.end) {
    throw new FlatLoadError(`entry ${hex(entry)} is outside the image ${formatRange(image)}`);
  }
  mem.write(loadAddress, bytes);
  const stack = options.stack;
  return bootCpuState(mem, mode, stack === undefined ? { entry } : { entry, stack });
}
