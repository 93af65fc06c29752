// What the guest is told about the machine: the e820 map, the MP table and the ACPI tables (RSDP, XSDT, FADT,
// FACS, MADT, DSDT, MCFG). Built once from the configuration; the blobs are written into the BIOS area (reserved
// in e820) every time the guest boots, because a guest may reuse that memory.
import { e820FromRam, E820_RESERVED, type E820Entry } from '../boot/e820.js';
import { buildAcpiTables, BIOS_AREA_LAYOUT } from '../boot/acpi/tables.js';
import { buildMpTable } from '../boot/mptable.js';
import type { PciWindows } from '../boot/acpi/platform.js';
import { acpiPmPorts, ACPI_PM_DEFAULT_BASE, ACPI_SCI_DEFAULT_IRQ } from '../../devices/acpi-pm.js';
import { COM_PORTS } from '../../devices/serial.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { PlatformInfo } from './boot.js';
import type { MachineConfig } from './config.js';

/** The PCI host as the tables describe it (from the PCI plan). */
export interface PlatformPci {
  windows: PciWindows;
  intx?: { firstGsi: number; gsiCount: number };
  ecam?: { base: number; endBus: number };
}

export interface Platform extends PlatformInfo {
  /** Bytes to write into guest memory at every boot. */
  readonly blobs: readonly { name: string; gpa: number; bytes: Uint8Array }[];
  /** The FACS (the S3 waking vector lives there), or null without ACPI. */
  readonly facsAddress: number | null;
  /** The ACPI PM block's base port and SCI, or null without ACPI. */
  readonly pm: { base: number; sciIrq: number } | null;
}

export function planPlatform(
  config: MachineConfig,
  ram: readonly { gpa: number; size: number }[],
  pci?: PlatformPci,
): Platform {
  const regions = ram.map((r) => ({ start: r.gpa, size: r.size }));
  const reservedExtra: { start: number; size: number }[] = [];
  if (pci?.ecam) reservedExtra.push({ start: pci.ecam.base, size: (pci.ecam.endBus + 1) << 20 });
  const memoryMap: E820Entry[] = e820FromRam(regions, reservedExtra);
  const serial = config.serial.flatMap((spec, i) =>
    spec.kind === 'none' || i >= COM_PORTS.length ? [] : [{ base: COM_PORTS[i].base, irq: COM_PORTS[i].irq }],
  );
  const blobs: { name: string; gpa: number; bytes: Uint8Array }[] = [];

  const mp = buildMpTable({
    cpus: config.cpus,
    placement: BIOS_AREA_LAYOUT.mp,
    ram: regions,
    sciIrq: config.acpi ? ACPI_SCI_DEFAULT_IRQ : undefined,
    pci: pci ? { intx: pci.intx } : undefined,
  });
  blobs.push(...mp.blobs.map((b) => ({ name: `MP ${b.name}`, gpa: b.gpa, bytes: b.bytes })));
  if (!config.acpi) return { memoryMap, reserved: [], rsdpAddress: null, blobs, facsAddress: null, pm: null };

  const acpi = buildAcpiTables({
    cpus: config.cpus,
    ram: regions,
    pm: acpiPmPorts(ACPI_PM_DEFAULT_BASE),
    sciIrq: ACPI_SCI_DEFAULT_IRQ,
    pci: pci ? { windows: pci.windows, intx: pci.intx } : undefined,
    ecam: pci?.ecam,
    serial,
    rtc: true,
    i8042: true,
    placement: BIOS_AREA_LAYOUT,
    pvpanic: config.pvpanic ? { port: config.pvpanic.ioport } : undefined,
  });
  blobs.push(...acpi.blobs);
  // The tables sit in 0xF0000-0xFFFFF, which e820FromRam already reports reserved.
  return {
    memoryMap,
    reserved: acpi.reserved.map((r) => ({ start: r.base, end: r.base + r.size, what: 'ACPI tables' })),
    rsdpAddress: acpi.rsdpAddress,
    blobs,
    facsAddress: acpi.facsAddress,
    pm: { base: ACPI_PM_DEFAULT_BASE, sciIrq: ACPI_SCI_DEFAULT_IRQ },
  };
}

export function writePlatformTables(platform: Platform, mem: GuestMemory): void {
  for (const b of platform.blobs) mem.write(b.gpa, b.bytes);
}

export { E820_RESERVED };
