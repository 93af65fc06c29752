// What the bzImage and ELF loaders share: the options and result shapes, the command line, and the plan of fixed
// ranges + initrd placement that is decided (and checked) before anything is written to guest RAM.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { reservedBootRanges, type BootCpuState, type CpuMode, type GuestRange } from '../cpu-modes.js';
import type { E820Entry } from '../e820.js';
import { LinuxBootError } from './error.js';
import { CMDLINE_ADDR, CMDLINE_LIMIT } from './layout.js';
import { placeHighest, requireFree, requireUsableRam, usableRanges, type NamedRange } from './placement.js';
import type { BzImageHeader } from './setup-header.js';
import { checkedMemoryMap } from './zero-page.js';
import { hex } from '../../util/hex.js';

export type LinuxEntry = 'pvh' | '64bit';

export interface LinuxBootOptions {
  /** The kernel command line (`-append`), without a NUL. */
  cmdline?: string;
  /** The initrd / initramfs (`-initrd`). */
  initrd?: Uint8Array;
  /** The machine's e820 map (e820FromRam, with ACPI/MP table areas reserved). */
  memoryMap: readonly E820Entry[];
  /** Physical address of the ACPI RSDP, when the machine has ACPI tables. */
  acpiRsdpAddr?: number;
  /** Guest ranges that already hold something (ACPI or MP tables…): nothing is loaded over them. */
  reserved?: readonly NamedRange[];
  /** ELF kernels only: which entry to use. Default: 'pvh' when the kernel has a PVH note, else '64bit'. */
  entry?: LinuxEntry;
  /**
   * ELF kernels only: reads `into.length` bytes of the kernel file at `offset` (straight into guest RAM). With it the
   * image needs to hold only the ELF headers and notes: the PT_LOAD contents come from here.
   */
  readSegment?: (offset: number, into: Uint8Array) => void;
}

export interface LinuxBoot {
  /** The boot vCPU's state at the kernel's first instruction. */
  cpu: BootCpuState;
  /** 'linux64': 64-bit boot protocol (RSI = boot_params); 'pvh': PVH (EBX = hvm_start_info). */
  protocol: 'linux64' | 'pvh';
  format: 'bzimage' | 'elf64' | 'elf32';
  /** Physical address of the first instruction. */
  entry: number;
  /** Memory the kernel occupies or needs before it reads the memory map (a bzImage's init_size included). */
  kernel: GuestRange;
  /** boot_params (linux64) or hvm_start_info (pvh): the value in RSI / EBX. */
  bootData: number;
  /** All boot data written besides the command line: zero page, or start info + module list + memory map. */
  bootDataRange: GuestRange;
  /** The command line, its NUL included. */
  cmdline: GuestRange;
  initrd: GuestRange | null;
  /** The bzImage's setup header, null for an ELF kernel. */
  header: BzImageHeader | null;
  /** One line for logs: what was loaded and how it starts. */
  description: string;
}

/** Encodes the command line with its NUL, refusing an embedded NUL or more than `max` characters. */
export function encodeCmdline(cmdline: string, max: number): Uint8Array {
  if (cmdline.includes('\0')) throw new LinuxBootError('the command line contains a NUL character');
  const bytes = new TextEncoder().encode(cmdline);
  if (bytes.length > max)
    throw new LinuxBootError(`command line too long: ${bytes.length} bytes, this kernel takes at most ${max}`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export interface PlanInput {
  mem: GuestMemory;
  options: LinuxBootOptions;
  /** CPU mode at entry (decides which of cpu-modes' ranges are used). */
  mode: CpuMode;
  /** The boot data block written at a fixed address. */
  bootData: NamedRange;
  kernel: GuestRange;
  /** How to name the kernel in messages (default "the kernel"). */
  kernelWhat?: string;
  /** Longest command line the kernel takes (without the NUL). */
  cmdlineMax: number;
  /** Highest address the initrd may occupy (inclusive, as initrd_addr_max). */
  initrdAddrMax: number;
}

export interface Plan {
  map: E820Entry[];
  cmdlineBytes: Uint8Array;
  cmdline: GuestRange;
  initrd: GuestRange | null;
}

/**
 * Checks the kernel's footprint and the fixed boot ranges against RAM and each other, and places the initrd as high
 * as allowed. Writes nothing.
 */
export function planLinuxBoot(p: PlanInput): Plan {
  const map = checkedMemoryMap(p.options.memoryMap);
  const usable = usableRanges(map);
  const cmdlineBytes = encodeCmdline(p.options.cmdline ?? '', p.cmdlineMax);
  const cmdline = { start: CMDLINE_ADDR, end: CMDLINE_ADDR + cmdlineBytes.length };
  if (cmdline.end > CMDLINE_LIMIT) {
    throw new LinuxBootError(
      `command line too long: ${cmdlineBytes.length - 1} bytes do not fit between ${hex(CMDLINE_ADDR)} and ${hex(CMDLINE_LIMIT)}`,
    );
  }
  const cpuRanges: NamedRange[] = reservedBootRanges(p.mode).map((r) => ({
    ...r,
    what: 'the boot GDT/stack/page tables',
  }));
  const userReserved = (p.options.reserved ?? []).map((r) => ({ ...r }));
  for (const r of userReserved) {
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end <= r.start) {
      throw new LinuxBootError(`bad reserved range ${r.what} [${r.start}, ${r.end})`);
    }
  }
  const fixed: NamedRange[] = [...cpuRanges, p.bootData, { ...cmdline, what: 'the command line' }];
  // Our own fixed ranges must be RAM and must not meet the caller's reserved ranges.
  for (const f of [p.bootData, { ...cmdline, what: 'the command line' }]) {
    requireUsableRam(p.mem, usable, f.what, f);
    requireFree(f.what, f, userReserved);
  }
  const kernelWhat = p.kernelWhat ?? 'the kernel';
  requireUsableRam(p.mem, usable, kernelWhat, p.kernel);
  requireFree(kernelWhat, p.kernel, [...fixed, ...userReserved]);

  let initrd: GuestRange | null = null;
  if (p.options.initrd !== undefined) {
    if (p.options.initrd.length === 0) throw new LinuxBootError('the initrd is empty');
    try {
      initrd = placeHighest(
        p.mem,
        usable,
        [...fixed, ...userReserved, { ...p.kernel, what: 'the kernel' }],
        'the initrd',
        p.options.initrd.length,
        p.initrdAddrMax + 1,
      );
    } catch (e) {
      if (!(e instanceof LinuxBootError)) throw e;
      throw new LinuxBootError(
        `initrd does not fit: ${p.options.initrd.length} bytes in free usable RAM at or below ` +
          `${hex(p.initrdAddrMax)} (the kernel takes ${hex(p.kernel.start)}-${hex(p.kernel.end)})`,
      );
    }
  }
  return { map, cmdlineBytes, cmdline, initrd };
}

/** Writes the command line and initrd chosen by the plan. */
export function writeCmdlineAndInitrd(mem: GuestMemory, plan: Plan, initrd: Uint8Array | undefined): void {
  mem.write(plan.cmdline.start, plan.cmdlineBytes);
  if (plan.initrd && initrd) mem.write(plan.initrd.start, initrd);
}
