// QMP query-pci (QEMU's qapi/pci.json): bus 0's functions as the guest currently sees them — identity, class,
// interrupt pin and line, and each BAR with where it decodes (-1 while it does not, as QEMU reports an unmapped
// BAR). Read from the main thread's view of the bus, under the machine lock.
import type { PciBus } from '../../devices/pci/bus.js';
import * as R from '../../devices/pci/constants.js';

export interface PciMemoryRegion {
  bar: number;
  type: 'io' | 'memory';
  address: number;
  size: number;
  prefetch?: boolean;
  mem_type_64?: boolean;
}

export interface PciDeviceInfo {
  bus: number;
  slot: number;
  function: number;
  class_info: { desc?: string; class: number };
  id: { device: number; vendor: number; subsystem?: number; 'subsystem-vendor'?: number };
  irq?: number;
  irq_pin: number;
  qdev_id: string;
  regions: PciMemoryRegion[];
}

export interface PciInfo {
  bus: number;
  devices: PciDeviceInfo[];
}

/** QEMU's descriptions of the PCI classes tsvmm's functions use (pci_class_descriptions in hw/pci/pci.c). */
const CLASS_DESCRIPTIONS: Record<number, string> = {
  0x0100: 'SCSI controller',
  0x0200: 'Ethernet controller',
  0x0600: 'Host bridge',
  0x0780: 'Communication controller',
  0x00ff: 'Unclassified device',
};

export function queryPci(bus: PciBus): PciInfo[] {
  const devices: PciDeviceInfo[] = [];
  for (const { slot, name, gsi } of bus.functions) {
    const fn = bus.function(slot)!;
    const config = fn.config;
    const cls = config.u16(R.PCI_CLASS_DEVICE);
    const mapped = bus.mappedBars(fn);
    const regions: PciMemoryRegion[] = [];
    for (let i = 0; i < R.PCI_NUM_BARS; i++) {
      const layout = config.barLayout(i);
      if (!layout) continue;
      const region: PciMemoryRegion = {
        bar: i,
        type: layout.kind === 'io' ? 'io' : 'memory',
        address: mapped[i]?.address ?? -1,
        size: layout.size,
      };
      if (layout.kind !== 'io') {
        region.prefetch = layout.prefetchable ?? false;
        region.mem_type_64 = layout.kind === 'mmio64';
      }
      regions.push(region);
    }
    const pin = config.u8(R.PCI_INTERRUPT_PIN);
    devices.push({
      bus: 0,
      slot,
      function: 0,
      class_info: { class: cls, ...(CLASS_DESCRIPTIONS[cls] ? { desc: CLASS_DESCRIPTIONS[cls] } : {}) },
      id: {
        vendor: config.u16(R.PCI_VENDOR_ID),
        device: config.u16(R.PCI_DEVICE_ID),
        subsystem: config.u16(R.PCI_SUBSYSTEM_ID),
        'subsystem-vendor': config.u16(R.PCI_SUBSYSTEM_VENDOR_ID),
      },
      ...(pin && gsi !== null ? { irq: config.u8(R.PCI_INTERRUPT_LINE) } : {}),
      irq_pin: pin,
      qdev_id: name,
      regions,
    });
  }
  return [{ bus: 0, devices }];
}
