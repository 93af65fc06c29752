// Loading the guest image into RAM and deciding the boot vCPU's first state. Runs at start-up and again on every
// reset (the guest may have overwritten its own image, as QEMU's -kernel reloads it on each boot).
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { BootCpuState } from '../boot/cpu-modes.js';
import { loadFlat } from '../boot/flat.js';
import { loadMultiboot, parseQemuModuleList, qemuKernelCmdline } from '../boot/multiboot.js';
import { detectKernelFormat, type DetectedKernel } from '../boot/detect.js';
import { e820FromRam, type E820Entry } from '../boot/e820.js';
import { loadLinux } from '../boot/linux/index.js';
import { readElfMetadata, readExactly } from '../boot/linux/elf-file.js';
import { elfIdent } from '../boot/elf.js';
import type { BootConfig } from './config.js';
import { SetupError } from '../util/setup-error.js';

export class BootError extends SetupError {
  constructor(message: string) {
    super(message);
    this.name = 'BootError';
  }
}

function readImage(what: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BootError(
      `${what} '${path}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
}

/**
 * The image files, read once: a reset reloads from memory, so a file replaced meanwhile does not change the guest.
 * An ELF Linux kernel is the exception: `kernel` holds only its headers and notes, and its segments are read from
 * `kernelFile` (kept open) at every boot — a file replaced by a new one (a rebuild, a rename) still loads the old
 * kernel, but one rewritten in place loads what it holds then.
 */
export interface LoadedImages {
  readonly kernel: Uint8Array;
  readonly kernelFile?: { readonly fd: number; readonly path: string };
  readonly modules: readonly { bytes: Uint8Array; cmdline: string }[];
}

/** ELF kernels at least this big are loaded from the file (below it, reading them whole costs nothing). */
const ELF_FROM_FILE_MIN_BYTES = 1 << 20;

/** An ELF Linux kernel's headers and notes, with its fd kept for the segments; null if `path` is not one. */
function openElfKernel(path: string): { kernel: Uint8Array; kernelFile: { fd: number; path: string } } | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null; // readImage reports it
  }
  try {
    const size = fstatSync(fd).size;
    if (size >= ELF_FROM_FILE_MIN_BYTES) {
      const kernel = readElfMetadata(fd, size);
      if (elfIdent(kernel) && isLinux(detectKernelFormat(kernel))) return { kernel, kernelFile: { fd, path } };
    }
  } catch {
    /* read it whole instead */
  }
  closeSync(fd);
  return null;
}

/** Closes what readBootImages kept open. */
export function closeBootImages(images: LoadedImages | null): void {
  if (images?.kernelFile) closeSync(images.kernelFile.fd);
}

export function readBootImages(boot: BootConfig): LoadedImages {
  if (boot.kind === 'flat') return { kernel: readImage('loader file', boot.path), modules: [] };
  const elf = openElfKernel(boot.path);
  const kernel = elf?.kernel ?? readImage('kernel', boot.path);
  const detected = detectKernelFormat(kernel);
  if (isLinux(detected)) {
    // Linux: -initrd is one file (no module list); -append is the command line as it is.
    try {
      const modules = boot.initrd === undefined ? [] : [{ bytes: readImage('initrd', boot.initrd), cmdline: '' }];
      return { kernel, kernelFile: elf?.kernelFile, modules };
    } catch (e) {
      if (elf) closeSync(elf.kernelFile.fd);
      throw e;
    }
  }
  if (detected.kind !== 'multiboot') {
    const hint =
      detected.kind === 'flat'
        ? ' (for a flat binary use -device loader,file=…,addr=…,mode=real|protected|long)'
        : ' (this kind is not supported yet)';
    throw new BootError(`kernel '${boot.path}': ${detected.description}${hint}`);
  }
  const modules =
    boot.initrd === undefined
      ? []
      : parseQemuModuleList(boot.initrd).map((m) => ({ bytes: readImage('module', m.path), cmdline: m.cmdline }));
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
  return { memoryMap: e820FromRam(ram.map((r) => ({ start: r.gpa, size: r.size }))), reserved: [], rsdpAddress: null };
}

/** Writes the image into RAM and returns the boot vCPU's state. */
export function loadBoot(
  boot: BootConfig,
  images: LoadedImages,
  mem: GuestMemory,
  platform: PlatformInfo,
): BootCpuState {
  try {
    if (boot.kind === 'flat') {
      return loadFlat(mem, images.kernel, { loadAddress: boot.loadAddress, entry: boot.entry, mode: boot.mode });
    }
    if (isLinux(detectKernelFormat(images.kernel))) {
      return loadLinux(mem, images.kernel, {
        cmdline: boot.append,
        initrd: images.modules[0]?.bytes,
        memoryMap: platform.memoryMap,
        reserved: platform.reserved,
        acpiRsdpAddr: platform.rsdpAddress ?? undefined,
        // An ELF kernel with a PVH note starts at its PVH entry; TSVMM_LINUX_ENTRY=64bit picks startup_64 instead.
        entry: process.env.TSVMM_LINUX_ENTRY === '64bit' ? '64bit' : undefined,
        readSegment: images.kernelFile
          ? (offset, into) => readExactly(images.kernelFile!.fd, into, offset, `kernel '${images.kernelFile!.path}'`)
          : undefined,
      }).cpu;
    }
    const loaded = loadMultiboot(mem, images.kernel, {
      cmdline: qemuKernelCmdline(boot.path, boot.append),
      modules: images.modules,
      memoryMap: platform.memoryMap,
    });
    for (const w of loaded.warnings) process.stderr.write(`tsvmm: kernel '${boot.path}': ${w}\n`);
    return loaded.cpu;
  } catch (e) {
    if (e instanceof BootError) throw e;
    throw new BootError(
      `${boot.kind === 'flat' ? 'loader file' : 'kernel'} '${boot.path}': ${(e as Error).message.replace(/^linux: /, '')}`,
    );
  }
}
