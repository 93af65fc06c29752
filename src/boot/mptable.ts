// The Intel MultiProcessor Specification 1.4 table, as kvmtool and Firecracker give it to guests that look for it
// (Linux without ACPI, `acpi=off`, or older kernels): a 16-byte floating pointer structure, found by scanning the
// BIOS area 0xF0000-0xFFFFF on 16-byte boundaries, pointing at a configuration table that lists
//   - one processor entry per vCPU (local APIC ID = vCPU index; vCPU 0 is the bootstrap processor),
//   - the buses: PCI (ID 0, when there is a host bridge) and ISA,
//   - the IOAPIC (ID 0 at 0xFEC00000, like the MADT),
//   - I/O interrupt assignments: the 8259's ExtINT on IOAPIC input 0, ISA IRQ 0 on input 2 (the same override as
//     the MADT), ISA IRQs 1 and 3-15 on the input of the same number (the SCI's IRQ level/active-high, as in the
//     MADT), and every PCI slot/pin on bus 0 on the GSI devices/pci/bus.ts's intxGsi gives (level, active-low),
//   - local interrupt assignments: ExtINT on LINT0 and NMI on LINT1 of every local APIC.
// Both checksums are set; entries are in type order as the specification requires. No extended table.
import {
  IOAPIC_ADDRESS,
  IOAPIC_ID,
  ISA_CASCADE_IRQ,
  ISA_IRQ0_GSI,
  LAPIC_ADDRESS,
  checkCpus,
  checkIsaIrq,
  checkIntxRouting,
  checkWindow,
  type AddressWindow,
} from './acpi/platform.js';
import { DEFAULT_INTX_ROUTING, intxGsi, type PciIntxRouting } from '../../devices/pci/bus.js';
import { checksum8, type PlacedBlob } from './acpi/tables.js';
import type { RamRegion } from './e820.js';
import { asciiField } from '../util/ascii.js';
import { le16, le32 } from '../util/le-bytes.js';

const FLOATING_SIGNATURE = '_MP_';
const CONFIG_SIGNATURE = 'PCMP';
export const MP_FLOATING_LENGTH = 16;
const MP_FLOATING_LENGTH_UNITS = 1; // the length field counts 16-byte paragraphs
const MP_SPEC_REVISION = 4; // MP 1.4
export const MP_CONFIG_HEADER_LENGTH = 44;
const MP_OEM_ID = 'TSVMM   '; // 8 bytes
const MP_PRODUCT_ID = 'TSVMM-PC    '; // 12 bytes
/** Feature byte 1 = 0: a configuration table follows (no default configuration). */
const FEATURE1_CONFIG_TABLE = 0;
/** Feature byte 2 bit 7 (IMCRP) clear: no IMCR, the PIC is in virtual-wire mode through LINT0. */
const FEATURE2_VIRTUAL_WIRE = 0;

// ---- entry types and sizes -------------------------------------------------------------------------------------
export const MP_ENTRY_PROCESSOR = 0; // 20 bytes
export const MP_ENTRY_BUS = 1; // 8 bytes
export const MP_ENTRY_IOAPIC = 2; // 8 bytes
export const MP_ENTRY_IO_INTERRUPT = 3; // 8 bytes
export const MP_ENTRY_LOCAL_INTERRUPT = 4; // 8 bytes
export const MP_PROCESSOR_ENTRY_LENGTH = 20;
export const MP_OTHER_ENTRY_LENGTH = 8;

const CPU_FLAG_ENABLED = 0x01; // EN: usable
const CPU_FLAG_BOOTSTRAP = 0x02; // BP: the bootstrap processor
const IOAPIC_FLAG_ENABLED = 0x01;
/** KVM's local APIC reports version 0x14 (integrated APIC); its IOAPIC version 0x11. */
const LAPIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
/** Family 6 processor signature and CPUID.1:EDX FPU | APIC: what the entries claim when the caller says nothing. */
const DEFAULT_CPU_SIGNATURE = 0x600;
const DEFAULT_FEATURE_FLAGS = 0x201;

// Interrupt types
export const MP_INT = 0; // vectored interrupt (through the IOAPIC redirection entry)
export const MP_NMI = 1;
export const MP_EXTINT = 3; // from the 8259
// Interrupt flags: polarity in bits 1-0, trigger mode in bits 3-2 (same encoding as the MADT's MPS INTI flags).
export const MP_IRQ_CONFORMS = 0x0;
export const MP_IRQ_LEVEL_HIGH = 0x1 | (0x3 << 2);
export const MP_IRQ_LEVEL_LOW = 0x3 | (0x3 << 2);
const ALL_LOCAL_APICS = 0xff;
const LINT0 = 0;
const LINT1 = 1;

export const MP_PCI_BUS_ID = 0;

export interface MpTableConfig {
  /** vCPUs (1-255); local APIC ID = vCPU index. */
  readonly cpus: number;
  /** Where to put the floating pointer (first, 16-byte aligned) and the configuration table (after it). */
  readonly placement: AddressWindow;
  /** The machine's RAM: the placement must lie inside it. */
  readonly ram: readonly RamRegion[];
  /** An ISA IRQ wired level/active-high (the ACPI SCI, like the MADT's override); omit for none. */
  readonly sciIrq?: number;
  /** PCI bus 0 and the INTx routing of its slots; omit when there is no PCI host bridge. */
  readonly pci?: { readonly intx?: PciIntxRouting };
  /** CPUID.1:EAX signature and CPUID.1:EDX feature flags for the processor entries. */
  readonly cpuSignature?: number;
  readonly featureFlags?: number;
}

export interface MpTable {
  readonly floatingPointerAddress: number;
  readonly blobs: readonly PlacedBlob[];
}

function busEntry(id: number, type: string): number[] {
  const e = [MP_ENTRY_BUS, id];
  e.push(...asciiField(type.padEnd(6, ' '), 6, 'MP table'));
  return e;
}

function ioInterrupt(type: number, flags: number, bus: number, busIrq: number, intin: number): number[] {
  return [MP_ENTRY_IO_INTERRUPT, type, ...le16(flags), bus, busIrq, IOAPIC_ID, intin];
}

function localInterrupt(type: number, bus: number, lint: number): number[] {
  return [MP_ENTRY_LOCAL_INTERRUPT, type, ...le16(MP_IRQ_CONFORMS), bus, 0, ALL_LOCAL_APICS, lint];
}

export function buildMpTable(c: MpTableConfig): MpTable {
  checkCpus(c.cpus);
  checkWindow('MP table placement', c.placement, 2 ** 32);
  if (c.placement.base % 16 !== 0) throw new RangeError('MP table placement must be 16-byte aligned');
  if (!c.ram.some((r) => c.placement.base >= r.start && c.placement.base + c.placement.size <= r.start + r.size)) {
    throw new RangeError(`MP table placement 0x${c.placement.base.toString(16)} is not inside one RAM region`);
  }
  if (c.sciIrq !== undefined) checkIsaIrq('SCI', c.sciIrq);
  const routing = c.pci?.intx ?? DEFAULT_INTX_ROUTING;
  if (c.pci) checkIntxRouting(routing);

  const entries: number[][] = [];
  for (let cpu = 0; cpu < c.cpus; cpu++) {
    entries.push([
      MP_ENTRY_PROCESSOR,
      cpu,
      LAPIC_VERSION,
      CPU_FLAG_ENABLED | (cpu === 0 ? CPU_FLAG_BOOTSTRAP : 0),
      ...le32(c.cpuSignature ?? DEFAULT_CPU_SIGNATURE),
      ...le32(c.featureFlags ?? DEFAULT_FEATURE_FLAGS),
      ...new Array(8).fill(0),
    ]);
  }
  const isaBus = c.pci ? MP_PCI_BUS_ID + 1 : 0;
  if (c.pci) entries.push(busEntry(MP_PCI_BUS_ID, 'PCI'));
  entries.push(busEntry(isaBus, 'ISA'));
  entries.push([MP_ENTRY_IOAPIC, IOAPIC_ID, IOAPIC_VERSION, IOAPIC_FLAG_ENABLED, ...le32(IOAPIC_ADDRESS)]);
  entries.push(ioInterrupt(MP_EXTINT, MP_IRQ_CONFORMS, isaBus, 0, 0));
  for (let irq = 0; irq < 16; irq++) {
    if (irq === ISA_CASCADE_IRQ) continue;
    const flags = irq === c.sciIrq ? MP_IRQ_LEVEL_HIGH : MP_IRQ_CONFORMS;
    entries.push(ioInterrupt(MP_INT, flags, isaBus, irq, irq === 0 ? ISA_IRQ0_GSI : irq));
  }
  if (c.pci) {
    // PCI source bus IRQ: bits 6-2 the device (slot), bits 1-0 the pin (0 = INTA#).
    for (let slot = 0; slot < 32; slot++) {
      for (let pin = 0; pin < 4; pin++) {
        entries.push(
          ioInterrupt(MP_INT, MP_IRQ_LEVEL_LOW, MP_PCI_BUS_ID, (slot << 2) | pin, intxGsi(slot, pin + 1, routing)),
        );
      }
    }
  }
  entries.push(localInterrupt(MP_EXTINT, isaBus, LINT0));
  entries.push(localInterrupt(MP_NMI, isaBus, LINT1));

  const body = entries.flat();
  const length = MP_CONFIG_HEADER_LENGTH + body.length;
  const configAddress = c.placement.base + MP_FLOATING_LENGTH;
  if (MP_FLOATING_LENGTH + length > c.placement.size) {
    throw new RangeError(`MP table needs ${MP_FLOATING_LENGTH + length} bytes, the placement has ${c.placement.size}`);
  }
  const header: number[] = [];
  header.push(...asciiField(CONFIG_SIGNATURE, 4, 'MP table'));
  header.push(...le16(length), MP_SPEC_REVISION, 0); // checksum filled below
  header.push(...asciiField(MP_OEM_ID, 8, 'MP table'));
  header.push(...asciiField(MP_PRODUCT_ID, 12, 'MP table'));
  header.push(...le32(0), ...le16(0)); // no OEM table
  header.push(...le16(entries.length), ...le32(LAPIC_ADDRESS));
  header.push(...le16(0), 0, 0); // no extended table; reserved
  const config = Uint8Array.from([...header, ...body]);
  config[7] = checksum8(config);

  const floating: number[] = [];
  floating.push(...asciiField(FLOATING_SIGNATURE, 4, 'MP table'));
  floating.push(
    ...le32(configAddress),
    MP_FLOATING_LENGTH_UNITS,
    MP_SPEC_REVISION,
    0,
    FEATURE1_CONFIG_TABLE,
    FEATURE2_VIRTUAL_WIRE,
    0,
    0,
    0,
  );
  const pointer = Uint8Array.from(floating);
  pointer[10] = checksum8(pointer);

  return {
    floatingPointerAddress: c.placement.base,
    blobs: [
      { name: 'MP floating pointer', gpa: c.placement.base, bytes: pointer },
      { name: 'MP configuration table', gpa: configAddress, bytes: config },
    ],
  };
}
