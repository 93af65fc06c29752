// The `-kernel` loaders (src/boot/): any image is recognised (detect.ts), then loaded as the machine does — Linux
// bzImage or ELF kernel by src/boot/linux/, anything else by the multiboot loader (ELF32 and a.out kludge) — into
// a 16 MiB guest RAM with a command line, an initrd and a multiboot module. An image either loads or is refused
// with a one-line SetupError (LinuxBootError, ElfError, MultibootError).
import { detectKernelFormat } from '../../src/boot/detect.js';
import { e820FromRam } from '../../src/boot/e820.js';
import { loadLinux } from '../../src/boot/linux/index.js';
import { elfKernel, bzImage, pvhNote } from '../../src/boot/linux/testing/images.js';
import { loadMultiboot } from '../../src/boot/multiboot.js';
import { ArrayGuestMemory } from '../../src/boot/testing/array-memory.js';
import { concat, elf32, multibootHeader, pattern } from '../../src/boot/testing/images.js';
import { MiB } from '../../src/util/sizes.js';
import { SetupError } from '../../src/util/setup-error.js';
import { refusedOnlyWith } from '../support/contract.js';

export const instrumented = ['src/boot/'];

const RAM = [{ start: 0, size: 16 * MiB }];
const memoryMap = e820FromRam(RAM);
let mem: ArrayGuestMemory | null = null;
const module = { bytes: pattern(100), cmdline: 'mod arg' };

export function fuzz(data: Uint8Array): void {
  mem ??= new ArrayGuestMemory(RAM); // reused: what a loader leaves in RAM does not matter to the next input
  const d = detectKernelFormat(data);
  refusedOnlyWith([SetupError], () => {
    if (d.kind === 'bzimage' || d.kind === 'elf64' || (d.kind === 'elf32' && d.loadable))
      loadLinux(mem!, data, { cmdline: 'console=ttyS0', initrd: pattern(64), memoryMap });
    else loadMultiboot(mem!, data, { cmdline: 'kernel arg', modules: [module], memoryMap });
  });
}

export const seeds = (): Uint8Array[] => [
  bzImage({ kernel: pattern(0x400) }),
  elfKernel({ entry: 0x1000000n, segments: [{ paddr: 0x100000, data: pattern(256) }] }),
  elfKernel({
    elfClass: 1,
    entry: 0x100000n,
    segments: [{ paddr: 0x100000, data: pattern(64) }],
    notes: [pvhNote(0x100010, 4)],
  }),
  elf32({ entry: 0x100000, segments: [{ paddr: 0x100000, data: concat(multibootHeader(), pattern(64)) }] }),
  concat(
    multibootHeader({
      flags: 1 << 16,
      aout: {
        headerAddr: 0x100000,
        loadAddr: 0x100000,
        loadEndAddr: 0x100100,
        bssEndAddr: 0x100200,
        entryAddr: 0x100020,
      },
    }),
    pattern(0x100),
  ),
];
