// The guest's copy of a passed-through function's configuration space, built from the host function's real bytes
// (read once through VFIO's config region) the way QEMU's vfio-pci presents it:
//
// - identity (vendor, device, revision, class, subsystem) and INTERRUPT_PIN as the host has them; the header type
//   without the multi-function bit (the guest sees one function);
// - BARs emulated: sizes from VFIO's regions, types from the host BAR's low bits, addresses the guest's (firmware's at
//   power-on). Sizing, relocation and 64-bit halves follow the PCI masks (devices/pci/config-space.ts); the host's
//   own BAR registers are never written;
// - COMMAND: IO, MEMORY, MASTER, PARITY, SERR and INTX_DISABLE writable (the model passes them to the device);
//   STATUS's error bits write-1-to-clear, INTERRUPT read from the device at each read (device.ts), the rest read-only;
// - the capability list at the host's offsets: MSI and MSI-X emulated (their enable, mask and message registers
//   writable here, acted on by the model through VFIO_DEVICE_SET_IRQS); every other standard capability read-only
//   (the bytes as read at start-up); a list that loops, points into the header or outside 256 bytes is cut there.
//   Extended capabilities are hidden (the guest sees a 256-byte space);
// - the expansion ROM BAR sized from VFIO's ROM region (the guest enables and places it; device.ts reads it through
//   the region), or reading 0 when the device has none.
//
// Everything guest-supplied arrives through PciConfigSpace.read/write, which ignore bytes outside the space.
import { PciConfigSpace } from '../pci/config-space.js';
import * as R from '../pci/constants.js';
import type { VfioBarInfo } from './host.js';

// MSI capability (PCI Local Bus 3.0 §6.8.1), offsets inside the capability.
export const PCI_CAP_ID_PM = 0x01;
export const PCI_MSI_FLAGS = 2; // u16 message control
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
export const PCI_MSI_FLAGS_QMASK = 0x000e; // multiple message capable: log2 vectors (read-only)
export const PCI_MSI_FLAGS_QSIZE = 0x0070; // multiple message enable: log2 vectors enabled
export const PCI_MSI_FLAGS_64BIT = 0x0080;
export const PCI_MSI_FLAGS_MASKBIT = 0x0100; // per-vector masking capable
export const PCI_MSI_ADDRESS_LO = 4;

/** Where the MSI capability's registers are, by its flags. */
export interface MsiLayout {
  readonly offset: number;
  /** log2 of the vectors the function can use (1..32). */
  readonly vectors: number;
  readonly is64: boolean;
  /** Offsets in config space. */
  readonly addressLo: number;
  readonly addressHi: number | null;
  readonly data: number;
  readonly mask: number | null;
  readonly pending: number | null;
}

export interface MsixInfo {
  readonly offset: number;
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** The capabilities found in the host's list (offsets are the host's). */
export interface VfioCapabilities {
  readonly list: readonly { readonly id: number; readonly offset: number }[];
  readonly msi: MsiLayout | null;
  readonly msix: MsixInfo | null;
}

const u8 = (c: ArrayLike<number>, at: number) => c[at] & 0xff;
const u16 = (c: ArrayLike<number>, at: number) => u8(c, at) | (u8(c, at + 1) << 8);
const u32 = (c: ArrayLike<number>, at: number) => (u16(c, at) | (u16(c, at + 2) << 16)) >>> 0;

/** The MSI capability's register offsets, from its message control word. */
export function msiLayout(config: ArrayLike<number>, offset: number): MsiLayout {
  const flags = u16(config, offset + PCI_MSI_FLAGS);
  const is64 = (flags & PCI_MSI_FLAGS_64BIT) !== 0;
  const maskable = (flags & PCI_MSI_FLAGS_MASKBIT) !== 0;
  const data = offset + (is64 ? 12 : 8);
  const vectors = 1 << Math.min(5, (flags & PCI_MSI_FLAGS_QMASK) >> 1);
  return {
    offset,
    vectors,
    is64,
    addressLo: offset + PCI_MSI_ADDRESS_LO,
    addressHi: is64 ? offset + 8 : null,
    data,
    mask: maskable ? data + 4 : null,
    pending: maskable ? data + 8 : null,
  };
}

/** Bytes of the MSI capability with this layout. */
export const msiLength = (m: MsiLayout) => (m.pending !== null ? m.pending + 4 : m.data + 2) - m.offset;

/**
 * Walks the host's standard capability list. Stops at a pointer into the header, past 256 bytes, not 4-byte
 * aligned, already visited, or after 48 entries (PCI_FIND_CAP_TTL), as Linux's walker does.
 */
export function findCapabilities(config: ArrayLike<number>): VfioCapabilities {
  const list: { id: number; offset: number }[] = [];
  let msi: MsiLayout | null = null;
  let msix: MsixInfo | null = null;
  if (config.length < R.PCI_CONFIG_SPACE_SIZE) throw new RangeError('config space: 256 bytes needed');
  if (!(u16(config, R.PCI_STATUS) & R.PCI_STATUS_CAP_LIST)) return { list, msi, msix };
  const seen = new Set<number>();
  let at = u8(config, R.PCI_CAPABILITY_LIST) & ~3;
  while (at >= R.PCI_STD_HEADER_END && at <= R.PCI_CONFIG_SPACE_SIZE - 4 && !seen.has(at) && list.length < 48) {
    seen.add(at);
    const id = u8(config, at);
    if (id === 0xff) break;
    if (id === R.PCI_CAP_ID_MSI && !msi) {
      const m = msiLayout(config, at);
      if (at + msiLength(m) <= R.PCI_CONFIG_SPACE_SIZE) msi = m;
    } else if (id === R.PCI_CAP_ID_MSIX && !msix && at + R.PCI_CAP_MSIX_SIZEOF <= R.PCI_CONFIG_SPACE_SIZE) {
      const table = u32(config, at + R.PCI_MSIX_TABLE);
      const pba = u32(config, at + R.PCI_MSIX_PBA);
      msix = {
        offset: at,
        vectors: (u16(config, at + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1,
        tableBar: table & R.PCI_MSIX_BIR_MASK,
        tableOffset: (table & ~R.PCI_MSIX_BIR_MASK) >>> 0,
        pbaBar: pba & R.PCI_MSIX_BIR_MASK,
        pbaOffset: (pba & ~R.PCI_MSIX_BIR_MASK) >>> 0,
      };
    }
    list.push({ id, offset: at });
    at = u8(config, at + R.PCI_CAP_LIST_NEXT) & ~3;
  }
  return { list, msi, msix };
}

/** The BAR types a host function declares in its BAR registers, with the sizes VFIO's regions give. */
export function barInfos(config: ArrayLike<number>, regionSizes: readonly number[]): VfioBarInfo[] {
  const bars: VfioBarInfo[] = [];
  for (let i = 0; i < R.PCI_NUM_BARS; i++) {
    const low = u32(config, R.PCI_BASE_ADDRESS_0 + 4 * i);
    const size = regionSizes[i] ?? 0;
    const io = (low & R.PCI_BASE_ADDRESS_SPACE_IO) !== 0;
    const wide = !io && (low & 0x6) === R.PCI_BASE_ADDRESS_MEM_TYPE_64;
    if (size > 0) {
      bars.push({
        index: i,
        kind: io ? 'io' : wide ? 'mmio64' : 'mmio32',
        size,
        prefetchable: !io && (low & R.PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0,
      });
    }
    if (wide) i++; // the upper half
  }
  return bars;
}

/** The guest's config space over `bytes` (the record's 4096), as the header comment says. */
export function virtualConfig(
  bytes: Uint8Array,
  host: ArrayLike<number>,
  bars: readonly VfioBarInfo[],
  addresses: ReadonlyMap<number, number>,
  romSize = 0,
): { config: PciConfigSpace; caps: VfioCapabilities } {
  const caps = findCapabilities(host);
  const pin = u8(host, R.PCI_INTERRUPT_PIN);
  const config = new PciConfigSpace(
    bytes,
    {
      vendorId: u16(host, R.PCI_VENDOR_ID),
      deviceId: u16(host, R.PCI_DEVICE_ID),
      revision: u8(host, R.PCI_REVISION_ID),
      classCode: (u8(host, R.PCI_CLASS_PROG) | (u16(host, R.PCI_CLASS_DEVICE) << 8)) >>> 0,
      subsystemVendorId: u16(host, R.PCI_SUBSYSTEM_VENDOR_ID),
      subsystemId: u16(host, R.PCI_SUBSYSTEM_ID),
      interruptPin: pin >= 1 && pin <= 4 ? pin : 0,
    },
    {
      // As firmware leaves a function whose BARs it assigned: decoding on, bus mastering off.
      command:
        (bars.some((b) => b.kind !== 'io' && addresses.get(b.index)) ? R.PCI_COMMAND_MEMORY : 0) |
        (bars.some((b) => b.kind === 'io' && addresses.get(b.index)) ? R.PCI_COMMAND_IO : 0),
    },
  );
  for (const bar of bars) {
    // A size PciConfigSpace cannot declare (not a power of two, a 32-bit BAR over 2 GiB) is left out: the guest sees
    // no BAR there rather than a wrong one.
    try {
      config.defineBar(
        bar.index,
        { kind: bar.kind, size: bar.size, prefetchable: bar.prefetchable },
        addresses.get(bar.index) ?? 0,
      );
    } catch {
      /* left undeclared */
    }
  }
  if (romSize) {
    try {
      config.defineRom(romSize);
    } catch {
      /* not a ROM PCI could describe: none */
    }
  }
  config.setImage(R.PCI_CACHE_LINE_SIZE, 1, u8(host, R.PCI_CACHE_LINE_SIZE));
  config.setImage(R.PCI_MIN_GNT, 1, u8(host, R.PCI_MIN_GNT));
  config.setImage(R.PCI_MAX_LAT, 1, u8(host, R.PCI_MAX_LAT));
  // The capability list, at the host's offsets, read-only unless emulated below.
  if (caps.list.length) {
    config.setImage(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
    config.setImage(R.PCI_CAPABILITY_LIST, 1, caps.list[0].offset);
    const offsets = caps.list.map((c) => c.offset).sort((a, b) => a - b);
    for (const [i, cap] of caps.list.entries()) {
      const end = offsets.find((o) => o > cap.offset) ?? R.PCI_CONFIG_SPACE_SIZE;
      const length = capLength(cap, caps, end);
      for (let b = 0; b < length && cap.offset + b < R.PCI_CONFIG_SPACE_SIZE; b++)
        config.setImage(cap.offset + b, 1, u8(host, cap.offset + b));
      config.setImage(cap.offset + R.PCI_CAP_LIST_NEXT, 1, i + 1 < caps.list.length ? caps.list[i + 1].offset : 0);
    }
  }
  if (caps.msi) {
    const m = caps.msi;
    // Enabled with nothing programmed: MSI off, no vectors enabled, message zero, every vector unmasked.
    const flags = u16(host, m.offset + PCI_MSI_FLAGS) & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
    config.setImage(m.offset + PCI_MSI_FLAGS, 2, flags);
    config.setWritable(m.offset + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
    config.setImage(m.addressLo, 4, 0);
    config.setWritable(m.addressLo, 4, 0xfffffffc);
    if (m.addressHi !== null) {
      config.setImage(m.addressHi, 4, 0);
      config.setWritable(m.addressHi, 4, 0xffffffff);
    }
    config.setImage(m.data, 2, 0);
    config.setWritable(m.data, 2, 0xffff);
    if (m.mask !== null && m.pending !== null) {
      config.setImage(m.mask, 4, 0);
      config.setWritable(m.mask, 4, m.vectors >= 32 ? 0xffffffff : (1 << m.vectors) - 1);
      config.setImage(m.pending, 4, 0);
    }
  }
  if (caps.msix) {
    const at = caps.msix.offset + R.PCI_MSIX_FLAGS;
    config.setImage(at, 2, u16(host, at) & R.PCI_MSIX_FLAGS_QSIZE);
    config.setWritable(at, 2, R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL);
  }
  return { config, caps };
}

/** How many bytes of a capability to copy: MSI and MSI-X exactly, others up to the next one above (at most 64). */
function capLength(cap: { id: number; offset: number }, caps: VfioCapabilities, next: number): number {
  if (cap.id === R.PCI_CAP_ID_MSI && caps.msi?.offset === cap.offset) return msiLength(caps.msi);
  if (cap.id === R.PCI_CAP_ID_MSIX) return R.PCI_CAP_MSIX_SIZEOF;
  return Math.min(next - cap.offset, 64);
}
