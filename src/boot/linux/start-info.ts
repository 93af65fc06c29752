// The PVH start-of-day data (Xen's include/public/arch-x86/hvm/start_info.h, version 1): hvm_start_info, the module
// list (the initrd, if any) and the memory map, encoded as the bytes that go to guest RAM.
import type { E820Entry } from '../e820.js';
import { LinuxBootError } from './error.js';
import {
  HVM_MEMMAP_TABLE_ENTRY,
  HVM_MEMMAP_TABLE_ENTRY_SIZE,
  HVM_MODLIST_ENTRY,
  HVM_MODLIST_ENTRY_SIZE,
  HVM_START_INFO,
  HVM_START_INFO_SIZE,
  HVM_START_INFO_VERSION,
  XEN_HVM_START_MAGIC_VALUE,
} from './layout.js';
import { checkedMemoryMap } from './zero-page.js';

export interface StartInfoSpec {
  cmdlinePaddr: number;
  /** 0 when there is no module list. */
  modlistPaddr: number;
  modules: readonly { paddr: number; size: number; cmdlinePaddr?: number }[];
  memmapPaddr: number;
  memoryMap: readonly E820Entry[];
  /** 0 when the machine has no ACPI tables. */
  rsdpPaddr: number;
}

export interface StartInfoBytes {
  startInfo: Uint8Array;
  modlist: Uint8Array;
  memmap: Uint8Array;
}

/** A start-info address or size: a non-negative safe integer, as the u64 field takes it. */
function checkedU64(n: number): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw new LinuxBootError(`bad PVH start info value ${n}`);
  return BigInt(n);
}

export function buildStartInfo(spec: StartInfoSpec): StartInfoBytes {
  const map = checkedMemoryMap(spec.memoryMap);
  const startInfo = new Uint8Array(HVM_START_INFO_SIZE);
  const si = new DataView(startInfo.buffer);
  si.setUint32(HVM_START_INFO.magic, XEN_HVM_START_MAGIC_VALUE, true);
  si.setUint32(HVM_START_INFO.version, HVM_START_INFO_VERSION, true);
  si.setUint32(HVM_START_INFO.flags, 0, true); // no SIF_* flag applies outside Xen
  si.setUint32(HVM_START_INFO.nr_modules, spec.modules.length, true);
  si.setBigUint64(HVM_START_INFO.modlist_paddr, spec.modules.length ? checkedU64(spec.modlistPaddr) : 0n, true);
  si.setBigUint64(HVM_START_INFO.cmdline_paddr, checkedU64(spec.cmdlinePaddr), true);
  si.setBigUint64(HVM_START_INFO.rsdp_paddr, checkedU64(spec.rsdpPaddr), true);
  si.setBigUint64(HVM_START_INFO.memmap_paddr, checkedU64(spec.memmapPaddr), true);
  si.setUint32(HVM_START_INFO.memmap_entries, map.length, true);

  const modlist = new Uint8Array(spec.modules.length * HVM_MODLIST_ENTRY_SIZE);
  const ml = new DataView(modlist.buffer);
  spec.modules.forEach((m, i) => {
    const at = i * HVM_MODLIST_ENTRY_SIZE;
    ml.setBigUint64(at + HVM_MODLIST_ENTRY.paddr, checkedU64(m.paddr), true);
    ml.setBigUint64(at + HVM_MODLIST_ENTRY.size, checkedU64(m.size), true);
    ml.setBigUint64(at + HVM_MODLIST_ENTRY.cmdline_paddr, checkedU64(m.cmdlinePaddr ?? 0), true);
  });

  const memmap = new Uint8Array(map.length * HVM_MEMMAP_TABLE_ENTRY_SIZE);
  const mm = new DataView(memmap.buffer);
  map.forEach((e, i) => {
    const at = i * HVM_MEMMAP_TABLE_ENTRY_SIZE;
    mm.setBigUint64(at + HVM_MEMMAP_TABLE_ENTRY.addr, BigInt(e.addr), true);
    mm.setBigUint64(at + HVM_MEMMAP_TABLE_ENTRY.size, BigInt(e.size), true);
    mm.setUint32(at + HVM_MEMMAP_TABLE_ENTRY.type, e.type, true);
  });
  return { startInfo, modlist, memmap };
}
