// ELF kernel loader (an uncompressed vmlinux): PT_LOAD segments go to their physical addresses (p_paddr), then one
// of two entries:
//  - PVH (default when the kernel carries the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY; Linux prefers it, and it skips
//    the decompressor and the real-mode code): hvm_start_info version 1 at PVH_START_INFO_ADDR with the command
//    line, the RSDP, the memory map (PVH_MEMMAP_ADDR) and the initrd as module 0 (PVH_MODLIST_ADDR); 32-bit
//    protected mode at the note's address with EBX = hvm_start_info.
//  - 64-bit (ELF64 only): startup_64 at e_entry (made physical) with RSI = boot_params. A vmlinux has no setup
//    header, so boot_params gets the minimal one Firecracker writes — boot_flag, "HdrS", type_of_loader,
//    cmd_line_ptr, cmdline_size, kernel_alignment, ramdisk_* — plus the version the fields belong to (2.12),
//    vid_mode, the e820 map and acpi_rsdp_addr.
// As for bzImage, everything is checked before anything is written.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LinuxBootError } from './error.js';
import { planLinuxBoot, writeCmdlineAndInitrd, type LinuxBoot, type LinuxBootOptions } from './common.js';
import { ELFCLASS64 } from '../elf.js';
import { parseKernelElf, physicalEntry, type KernelElf } from './elf-kernel.js';
import { linux64EntryState, pvhEntryState } from './entry-state.js';
import {
  BOOT_FLAG_MAGIC,
  DEFAULT_CMDLINE_MAX,
  DEFAULT_INITRD_ADDR_MAX,
  ELF_HEADER_VERSION,
  ELF_KERNEL_ALIGNMENT,
  HDRS_MAGIC,
  LINUX64_BOOT_DATA,
  LOADER_TYPE_UNDEFINED,
  PVH_BOOT_DATA,
  PVH_MEMMAP_ADDR,
  PVH_MODLIST_ADDR,
  PVH_START_INFO_ADDR,
  VID_MODE_NORMAL,
  ZERO_PAGE_ADDR,
} from './layout.js';
import { buildStartInfo } from './start-info.js';
import { buildZeroPage } from './zero-page.js';
import { hex } from '../../util/hex.js';

/** The boot page tables identity-map the first 4 GiB: a 64-bit-entry kernel must lie below that. */
const IDENTITY_MAPPED_END = 2 ** 32;

function writeSegments(
  mem: GuestMemory,
  image: Uint8Array,
  elf: KernelElf,
  readSegment?: LinuxBootOptions['readSegment'],
): void {
  for (const s of elf.segments) {
    if (s.filesz && readSegment) readSegment(s.offset, mem.slice(s.paddr, s.filesz));
    else if (s.filesz) mem.write(s.paddr, image.subarray(s.offset, s.offset + s.filesz));
    if (s.memsz > s.filesz) mem.fill(s.paddr + s.filesz, s.memsz - s.filesz, 0);
  }
}

function inSegment(elf: KernelElf, addr: number): boolean {
  return elf.segments.some((s) => addr >= s.paddr && addr < s.paddr + s.memsz);
}

/** Loads an ELF vmlinux (ELF64, or ELF32 with a PVH note) and returns the entry state. */
export function loadVmlinux(mem: GuestMemory, image: Uint8Array, options: LinuxBootOptions): LinuxBoot {
  const elf = parseKernelElf(image);
  const format = elf.elfClass === ELFCLASS64 ? 'elf64' : 'elf32';
  const entryKind = options.entry ?? (elf.pvhEntry !== null ? 'pvh' : '64bit');
  const kernel = { start: elf.start, end: elf.end };
  const common = { mem, options, kernel, cmdlineMax: DEFAULT_CMDLINE_MAX, initrdAddrMax: DEFAULT_INITRD_ADDR_MAX };

  if (entryKind === 'pvh') {
    if (elf.pvhEntry === null)
      throw new LinuxBootError(
        `this kernel has no PVH entry (no Xen ELF note of type 18)${format === 'elf64' ? '; use the 64-bit entry' : ''}`,
      );
    const entry = elf.pvhEntry;
    if (!inSegment(elf, entry)) throw new LinuxBootError(`PVH entry ${hex(entry)} is not inside any loaded segment`);
    const plan = planLinuxBoot({
      ...common,
      mode: 'protected',
      bootData: { ...PVH_BOOT_DATA, what: 'the PVH start info' },
    });
    const modules = plan.initrd ? [{ paddr: plan.initrd.start, size: plan.initrd.end - plan.initrd.start }] : [];
    const bytes = buildStartInfo({
      cmdlinePaddr: plan.cmdline.start,
      modlistPaddr: PVH_MODLIST_ADDR,
      modules,
      memmapPaddr: PVH_MEMMAP_ADDR,
      memoryMap: plan.map,
      rsdpPaddr: options.acpiRsdpAddr ?? 0,
    });
    writeSegments(mem, image, elf, options.readSegment);
    mem.fill(PVH_BOOT_DATA.start, PVH_BOOT_DATA.end - PVH_BOOT_DATA.start, 0);
    mem.write(PVH_START_INFO_ADDR, bytes.startInfo);
    mem.write(PVH_MODLIST_ADDR, bytes.modlist);
    mem.write(PVH_MEMMAP_ADDR, bytes.memmap);
    writeCmdlineAndInitrd(mem, plan, options.initrd);
    return {
      cpu: pvhEntryState(mem, entry, PVH_START_INFO_ADDR),
      protocol: 'pvh',
      format,
      entry,
      kernel,
      bootData: PVH_START_INFO_ADDR,
      bootDataRange: { ...PVH_BOOT_DATA },
      cmdline: plan.cmdline,
      initrd: plan.initrd,
      header: null,
      description: `Linux ${format === 'elf64' ? '64' : '32'}-bit ELF vmlinux at ${hex(kernel.start)}-${hex(kernel.end)}, PVH entry ${hex(entry)}, hvm_start_info at ${hex(PVH_START_INFO_ADDR)}`,
    };
  }

  if (format !== 'elf64') throw new LinuxBootError('a 32-bit ELF kernel has no 64-bit entry; it needs a PVH note');
  const entry = physicalEntry(elf);
  if (kernel.end > IDENTITY_MAPPED_END) {
    throw new LinuxBootError(
      `kernel [${hex(kernel.start)}, ${hex(kernel.end)}) lies past the 4 GiB the boot page tables identity-map`,
    );
  }
  const plan = planLinuxBoot({ ...common, mode: 'long', bootData: { ...LINUX64_BOOT_DATA, what: 'the zero page' } });
  const zeroPage = buildZeroPage({
    header: null,
    fields: {
      boot_flag: BOOT_FLAG_MAGIC,
      header: HDRS_MAGIC,
      version: ELF_HEADER_VERSION,
      type_of_loader: LOADER_TYPE_UNDEFINED,
      vid_mode: VID_MODE_NORMAL,
      cmd_line_ptr: plan.cmdline.start,
      cmdline_size: DEFAULT_CMDLINE_MAX,
      kernel_alignment: ELF_KERNEL_ALIGNMENT,
      ramdisk_image: plan.initrd?.start ?? 0,
      ramdisk_size: plan.initrd ? plan.initrd.end - plan.initrd.start : 0,
    },
    e820: plan.map,
    acpiRsdpAddr: options.acpiRsdpAddr,
  });
  writeSegments(mem, image, elf, options.readSegment);
  mem.write(ZERO_PAGE_ADDR, zeroPage);
  writeCmdlineAndInitrd(mem, plan, options.initrd);
  return {
    cpu: linux64EntryState(mem, entry, ZERO_PAGE_ADDR),
    protocol: 'linux64',
    format,
    entry,
    kernel,
    bootData: ZERO_PAGE_ADDR,
    bootDataRange: { ...LINUX64_BOOT_DATA },
    cmdline: plan.cmdline,
    initrd: plan.initrd,
    header: null,
    description: `Linux 64-bit ELF vmlinux at ${hex(kernel.start)}-${hex(kernel.end)}, 64-bit entry ${hex(entry)}, boot_params at ${hex(ZERO_PAGE_ADDR)}`,
  };
}
