// Loading the guest image into RAM and deciding the boot vCPU's first state. Runs at start-up and again on every
// reset (the guest may have overwritten its own image, as QEMU's -kernel reloads it on each boot).
import { readFileSync } from 'node:fs';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { BootCpuState } from '../boot/cpu-modes.js';
import { loadFlat } from '../boot/flat.js';
import { loadMultiboot, parseQemuModuleList, qemuKernelCmdline } from '../boot/multiboot.js';
import { detectKernelFormat } from '../boot/detect.js';
import { e820FromRam } from '../boot/e820.js';
import type { BootConfig } from './config.js';

export class BootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootError';
  }
}

function readImage(what: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BootError(`${what} '${path}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/** The image files, read once: a reset reloads from memory, so a file replaced meanwhile does not change the guest. */
export interface LoadedImages {
  readonly kernel: Uint8Array;
  readonly modules: readonly { bytes: Uint8Array; cmdline: string }[];
}

export function readBootImages(boot: BootConfig): LoadedImages {
  if (boot.kind === 'flat') return { kernel: readImage('loader file', boot.path), modules: [] };
  const kernel = readImage('kernel', boot.path);
  const detected = detectKernelFormat(kernel);
  if (detected.kind !== 'multiboot') {
    const hint = detected.kind === 'flat'
      ? ' (for a flat binary use -device loader,file=…,addr=…,mode=real|protected|long)'
      : ' (this kind is not supported yet)';
    throw new BootError(`kernel '${boot.path}': ${detected.description}${hint}`);
  }
  const modules = boot.initrd === undefined ? [] : parseQemuModuleList(boot.initrd).map(m => ({ bytes: readImage('module', m.path), cmdline: m.cmdline }));
  return { kernel, modules };
}

/** Writes the image into RAM and returns the boot vCPU's state. `ram` regions give the memory map. */
export function loadBoot(boot: BootConfig, images: LoadedImages, mem: GuestMemory, ram: readonly { gpa: number; size: number }[]): BootCpuState {
  try {
    if (boot.kind === 'flat') {
      return loadFlat(mem, images.kernel, { loadAddress: boot.loadAddress, entry: boot.entry, mode: boot.mode });
    }
    const memoryMap = e820FromRam(ram.map(r => ({ start: r.gpa, size: r.size })));
    const loaded = loadMultiboot(mem, images.kernel, {
      cmdline: qemuKernelCmdline(boot.path, boot.append), modules: images.modules, memoryMap,
    });
    for (const w of loaded.warnings) process.stderr.write(`tsvmm: kernel '${boot.path}': ${w}\n`);
    return loaded.cpu;
  } catch (e) {
    if (e instanceof BootError) throw e;
    throw new BootError(`${boot.kind === 'flat' ? 'loader file' : 'kernel'} '${boot.path}': ${(e as Error).message}`);
  }
}
