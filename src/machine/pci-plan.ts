// Planning the PCI side of a machine (main thread, once): where the host bridge's windows and ECAM sit and the BAR
// addresses firmware would have assigned (the INTx routing table ACPI's _PRT describes is src/boot/acpi/platform.ts's
// pciRoutingTable). All plain data that goes into the device table.
import { X86_PCI_HOLE_START, X86_HIGH_RAM_START } from '../memory/x86-layout.js';
import type { PciHostConfig } from '../../devices/pci/host-bridge.js';
import { ecamSize } from '../../devices/pci/host-bridge.js';
import { DEFAULT_INTX_ROUTING, type PciIntxRouting, type PciWindow, type PciWindows } from '../../devices/pci/bus.js';
import type { PciBarKind } from '../../devices/pci/config-space.js';
import * as V from '../../devices/virtio/pci-transport.js';

/** ECAM: 256 buses (256 MiB) at 0xe0000000, inside the PCI hole above the 32-bit BAR window. */
export const DEFAULT_ECAM_BASE = 0xe000_0000;
export const DEFAULT_ECAM_BUSES = 256;
/** 32-bit BARs: the bottom of the PCI hole up to ECAM (512 MiB). */
export const DEFAULT_MMIO32_WINDOW: PciWindow = {
  base: X86_PCI_HOLE_START,
  size: DEFAULT_ECAM_BASE - X86_PCI_HOLE_START,
};
/** I/O BARs: 0xc000-0xffff, where SeaBIOS and QEMU put them. */
export const DEFAULT_IO_WINDOW: PciWindow = { base: 0xc000, size: 0x4000 };
/** 64-bit BARs: 32 GiB from the first 1 GiB boundary above RAM (QEMU's pci-hole64 default size). */
export const DEFAULT_MMIO64_SIZE = 32 * 2 ** 30;

/**
 * The host bridge's layout for a machine whose RAM ends at `ramEnd` (the highest guest-physical RAM address + 1,
 * above 4 GiB when there is high RAM).
 */
export function defaultPciHostConfig(
  ramEnd: number,
  options: { mmio64?: boolean; intx?: PciIntxRouting } = {},
): PciHostConfig {
  const gib = 2 ** 30;
  const base64 = Math.ceil(Math.max(ramEnd, X86_HIGH_RAM_START) / gib) * gib;
  const windows: PciWindows = {
    mmio32: DEFAULT_MMIO32_WINDOW,
    io: DEFAULT_IO_WINDOW,
    mmio64: options.mmio64 === false ? null : { base: base64, size: DEFAULT_MMIO64_SIZE },
  };
  return {
    windows,
    ecam: { base: DEFAULT_ECAM_BASE, buses: DEFAULT_ECAM_BUSES },
    intx: options.intx ?? DEFAULT_INTX_ROUTING,
  };
}

/** The MMIO range ECAM occupies (for the ACPI MCFG table and a reservation in e820 or a PNP0C02 _CRS). */
export function ecamRange(
  config: PciHostConfig,
): { base: number; size: number; startBus: number; endBus: number } | null {
  return config.ecam
    ? { base: config.ecam.base, size: ecamSize(config.ecam.buses), startBus: 0, endBus: config.ecam.buses - 1 }
    : null;
}

/** One BAR a function wants placed. */
export interface BarRequest {
  readonly index: number;
  readonly kind: PciBarKind;
  readonly size: number;
}

/** The BARs of a virtio-pci function (devices/virtio/pci-transport.ts). */
export const VIRTIO_PCI_BAR_REQUESTS: readonly BarRequest[] = [
  { index: V.VIRTIO_PCI_MSIX_BAR, kind: 'mmio32', size: V.VIRTIO_PCI_MSIX_BAR_SIZE },
  { index: V.VIRTIO_PCI_MODERN_BAR, kind: 'mmio64', size: V.VIRTIO_PCI_MODERN_BAR_SIZE },
];

/**
 * Assigns every BAR an address, as firmware would: bottom-up in each window, aligned to its size, functions in
 * the order given. 64-bit BARs go above 4 GiB only when `place64Above4G` (the guest must then know the 64-bit
 * window from ACPI); by default they share the 32-bit window, which every guest can reach.
 * Returns, per function, index → address.
 */
export function allocateBars(
  functions: readonly (readonly BarRequest[])[],
  windows: PciWindows,
  options: { place64Above4G?: boolean } = {},
): Map<number, number>[] {
  const next = new Map<PciWindow, number>();
  const take = (w: PciWindow, size: number, what: string): number => {
    const at = Math.ceil((next.get(w) ?? w.base) / size) * size;
    if (at + size > w.base + w.size)
      throw new RangeError(
        `PCI: no room for ${what} of 0x${size.toString(16)} bytes in window 0x${w.base.toString(16)}+0x${w.size.toString(16)}`,
      );
    next.set(w, at + size);
    return at;
  };
  return functions.map((bars, f) => {
    const placed = new Map<number, number>();
    // Largest first within a function keeps alignment gaps small.
    for (const bar of [...bars].sort((a, b) => b.size - a.size)) {
      const what = `function ${f} BAR ${bar.index}`;
      const w =
        bar.kind === 'io'
          ? windows.io
          : bar.kind === 'mmio64' && options.place64Above4G && windows.mmio64
            ? windows.mmio64
            : windows.mmio32;
      placed.set(bar.index, take(w, bar.size, what));
    }
    return placed;
  });
}
