// bzImage loader: the Linux/x86 boot protocol (Documentation/arch/x86/boot.rst) with the 64-bit entry, as a
// protected-mode loader that runs none of the kernel's real-mode setup code (like Firecracker, cloud-hypervisor and
// kvmtool's 64-bit path):
//  1. read and check the setup header (protocol >= 2.06; XLF_KERNEL_64 for the entry at +0x200);
//  2. put the protected-mode code (everything after the setup sectors) at its load address: pref_address for a
//     relocatable kernel (2.10+), else 0x100000; the kernel then needs [runtime start, + init_size) as boot.rst
//     defines it, which must be usable RAM and free;
//  3. build boot_params at ZERO_PAGE_ADDR from a clean page: the image's setup header copied in, then the fields a
//     loader writes (type_of_loader, loadflags, heap_end_ptr, vid_mode, cmd_line_ptr, ramdisk_*, code32_start,
//     hardware_subarch), the e820 map and acpi_rsdp_addr;
//  4. the command line at CMDLINE_ADDR (at most cmdline_size characters) and the initrd as high as initrd_addr_max
//     and the end of low RAM allow, page aligned;
//  5. start in 64-bit mode at load + 0x200 with RSI = boot_params (see entry-state.ts).
// Everything is decided and checked before the first byte is written, so a refused image leaves RAM untouched.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LinuxBootError } from './error.js';
import { planLinuxBoot, writeCmdlineAndInitrd, type LinuxBoot, type LinuxBootOptions } from './common.js';
import { linux64EntryState } from './entry-state.js';
import {
  BZIMAGE_DEFAULT_LOAD,
  CAN_USE_HEAP,
  HEAP_END_PTR,
  KEEP_SEGMENTS,
  LINUX64_BOOT_DATA,
  LOADER_TYPE_UNDEFINED,
  PROTOCOL_PREF_ADDRESS,
  STARTUP_64_OFFSET,
  VID_MODE_NORMAL,
  X86_SUBARCH_PC,
  XLF_KERNEL_64,
  ZERO_PAGE_ADDR,
  type SetupHeaderField,
} from './layout.js';
import { parseSetupHeader, type BzImageHeader } from './setup-header.js';
import { buildZeroPage } from './zero-page.js';
import { hex } from '../../util/hex.js';
import { alignUp } from '../../util/align.js';
import { isPowerOfTwo } from '../../util/power-of-two.js';

/** The boot page tables identity-map the first 4 GiB: the kernel must run below that. */
const IDENTITY_MAPPED_END = 2 ** 32;

export interface BzImagePlacement {
  /** Where the protected-mode code is copied. */
  load: number;
  /** Where the kernel runs (decompresses itself to) per boot.rst's init_size rule. */
  runtimeStart: number;
  /** [min(load, runtime), max(load + file bytes, runtime + init_size)). */
  start: number;
  end: number;
}

/** Decides where a bzImage goes and how much memory it claims from there. */
export function placeBzImage(h: BzImageHeader): BzImagePlacement {
  if (h.relocatable && !isPowerOfTwo(h.kernelAlignment)) {
    throw new LinuxBootError(
      `relocatable kernel with kernel_alignment ${hex(h.kernelAlignment)}, which is not a power of two`,
    );
  }
  const load =
    h.relocatable && h.version >= PROTOCOL_PREF_ADDRESS && h.prefAddress >= BZIMAGE_DEFAULT_LOAD
      ? h.prefAddress
      : BZIMAGE_DEFAULT_LOAD;
  // boot.rst: runtime_start = relocatable ? align_up(load_address, kernel_alignment) : pref_address.
  const runtimeStart = h.relocatable ? alignUp(load, h.kernelAlignment) : h.prefAddress || load;
  const start = Math.min(load, runtimeStart);
  const end = Math.max(load + h.kernelFileSize, runtimeStart + h.initSize);
  if (end > IDENTITY_MAPPED_END) {
    throw new LinuxBootError(
      `kernel cannot be placed: it needs [${hex(start)}, ${hex(end)}), past the 4 GiB the boot page tables identity-map`,
    );
  }
  return { load, runtimeStart, start, end };
}

/** Loads a bzImage for the 64-bit boot protocol and returns the entry state. */
export function loadBzImage(mem: GuestMemory, image: Uint8Array, options: LinuxBootOptions): LinuxBoot {
  const header = parseSetupHeader(image);
  if (!(header.xloadflags & XLF_KERNEL_64)) {
    throw new LinuxBootError(
      `kernel has no 64-bit entry point (boot protocol ${header.versionText}, xloadflags ${hex(header.xloadflags)}: XLF_KERNEL_64 clear)`,
    );
  }
  if (options.entry === 'pvh')
    throw new LinuxBootError('a bzImage has no PVH entry; boot the uncompressed ELF vmlinux for PVH');
  const place = placeBzImage(header);
  const kernel = { start: place.start, end: place.end };
  const plan = planLinuxBoot({
    mem,
    options,
    mode: 'long',
    kernel,
    kernelWhat:
      `kernel cannot be placed: loaded at ${hex(place.load)}${header.relocatable ? ' (relocatable)' : ''} it needs ` +
      `init_size ${hex(header.initSize)} from ${hex(place.runtimeStart)}, so`,
    bootData: { ...LINUX64_BOOT_DATA, what: 'the zero page' },
    cmdlineMax: header.cmdlineSize,
    initrdAddrMax: header.initrdAddrMax,
  });

  const fields: Partial<Record<SetupHeaderField, number>> = {
    type_of_loader: LOADER_TYPE_UNDEFINED,
    loadflags: (header.loadflags | CAN_USE_HEAP) & ~KEEP_SEGMENTS,
    heap_end_ptr: HEAP_END_PTR,
    vid_mode: VID_MODE_NORMAL,
    cmd_line_ptr: plan.cmdline.start,
    ramdisk_image: plan.initrd?.start ?? 0,
    ramdisk_size: plan.initrd ? plan.initrd.end - plan.initrd.start : 0,
    code32_start: place.load,
  };
  if (header.version >= 0x0207) fields.hardware_subarch = X86_SUBARCH_PC;
  const zeroPage = buildZeroPage({ header: header.bytes, fields, e820: plan.map, acpiRsdpAddr: options.acpiRsdpAddr });

  mem.write(place.load, image.subarray(header.setupSize));
  mem.write(ZERO_PAGE_ADDR, zeroPage);
  writeCmdlineAndInitrd(mem, plan, options.initrd);
  const entry = place.load + STARTUP_64_OFFSET;
  const cpu = linux64EntryState(mem, entry, ZERO_PAGE_ADDR);
  return {
    cpu,
    protocol: 'linux64',
    format: 'bzimage',
    entry,
    kernel,
    bootData: ZERO_PAGE_ADDR,
    bootDataRange: { ...LINUX64_BOOT_DATA },
    cmdline: plan.cmdline,
    initrd: plan.initrd,
    header,
    description:
      `Linux bzImage${header.kernelVersion ? ` ${header.kernelVersion.split(' ')[0]}` : ''} (boot protocol ${header.versionText}) ` +
      `loaded at ${hex(place.load)}, 64-bit entry ${hex(entry)}, boot_params at ${hex(ZERO_PAGE_ADDR)}`,
  };
}
