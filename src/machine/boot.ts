// Loading the guest image into RAM and deciding the boot vCPU's first state. Runs at start-up and again on every
// reset (the guest may have overwritten its own image, as QEMU's -kernel reloads it on each boot).
import { readFileSync } from 'node:fs';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { BootCpuState } from '../boot/cpu-modes.js';
import { loadFlat } from '../boot/flat.js';
import { loadMultiboot, parseQemuModuleList, qemuKernelCmdline } from '../boot/multiboot.js';
import { detectKernelFormat, type DetectedKernel } from '../boot/detect.js';
import { e820FromRam, type E820Entry } from '../boot/e820.js';
import { loadLinux } from '../boot/linux/index.js';
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
  if (isLinux(detected)) {
    // Linux: -initrd is one file (no module list); -append is the command line as it is.
    const modules = boot.initrd === undefined ? [] : [{ bytes: readImage('initrd', boot.initrd), cmdline: '' }];
    return { kernel, modules };
  }
  if (detected.kind !== 'multiboot') {
    const hint = detected.kind === 'flat'
      ? ' (for a flat binary use -device loader,file=…,addr=…,mode=real|protected|long)'
      : ' (this kind is not supported yet)';
    throw new BootError(`kernel '${boot.path}': ${detected.description}${hint}`);
  }
  const modules = boot.initrd === undefined ? [] : parseQemuModuleList(boot.initrd).map(m => ({ bytes: readImage('module', m.path), cmdline: m.cmdline }));
  return { kernel, modules };
}

const isLinux = (d: DetectedKernel) => d.kind === 'bzimage' || d.kind === 'elf64' || (d.kind === 'elf32' && d.loadable);

/** What the platform tells a guest about itself: the e820 map (RAM and reserved ranges) and the ACPI RSDP. */
export interface PlatformInfo {
  memoryMap: E820Entry[];
  /** Ranges a loader must not put anything in (ACPI and MP tables). */
  reserved: { start: number; end: number; what: string }[];
  /** Where the ACPI RSDP is (boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr), when there are tables. */
  rsdpAddress: number | null;
}

/** The e820 map of a machine without ACPI or MP tables. */
export function plainPlatform(ram: readonly { gpa: number; size: number }[]): PlatformInfo {
  return { memoryMap: e820FromRam(ram.map(r => ({ start: r.gpa, size: r.size }))), reserved: [], rsdpAddress: null };
}

/** Writes the image into RAM and returns the boot vCPU's state. */
export function loadBoot(boot: BootConfig, images: LoadedImages, mem: GuestMemory, platform: PlatformInfo): BootCpuState {
  try {
    if (boot.kind === 'flat') {
      return loadFlat(mem, images.kernel, { loadAddress: boot.loadAddress, entry: boot.entry, mode: boot.mode });
    }
    if (isLinux(detectKernelFormat(images.kernel))) {
      return loadLinux(mem, images.kernel, {
        cmdline: boot.append, initrd: images.modules[0]?.bytes, memoryMap: platform.memoryMap,
        reserved: platform.reserved, acpiRsdpAddr: platform.rsdpAddress ?? undefined,
        // An ELF kernel with a PVH note starts at its PVH entry; TSVMM_LINUX_ENTRY=64bit picks startup_64 instead.
        entry: process.env.TSVMM_LINUX_ENTRY === '64bit' ? '64bit' : undefined,
      }).cpu;
    }
    const loaded = loadMultiboot(mem, images.kernel, {
      cmdline: qemuKernelCmdline(boot.path, boot.append), modules: images.modules, memoryMap: platform.memoryMap,
    });
    for (const w of loaded.warnings) process.stderr.write(`tsvmm: kernel '${boot.path}': ${w}\n`);
    return loaded.cpu;
  } catch (e) {
    if (e instanceof BootError) throw e;
    throw new BootError(`${boot.kind === 'flat' ? 'loader file' : 'kernel'} '${boot.path}': ${(e as Error).message.replace(/^linux: /, '')}`);
  }
}
