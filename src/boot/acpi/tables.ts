// ACPI tables for a PC-like tsvmm machine (ACPI 6.x chapter 5.2): RSDP (revision 2) → RSDT and XSDT → FADT (→ FACS,
// DSDT), MADT, MCFG, plus any extra tables the caller adds. Field choices follow QEMU's `pc` machine unless noted.
//
// FADT decisions:
// - Revision 6 (276 bytes) with 32- and 64-bit (X_) forms of every address, the two always equal; the X_ blocks
//   are SystemIO with access size 0 ("legacy": natural width), as in QEMU's tables.
// - SMI_CMD = 0: no SMM, ACPI mode is always on (the OS must not try to enable it; the PM block's SCI_EN is set
//   from power-on). ACPI_ENABLE/ACPI_DISABLE are 0.
// - PM1a_EVT_BLK / PM1a_CNT_BLK / PM_TMR_BLK are the ports of devices/acpi-pm.ts; no PM1b, PM2 or GPE blocks.
//   TMR_VAL_EXT is set: the PM timer is 32 bits wide.
// - RESET_REG: the i8042 — SystemIO port 0x64, value 0xFE ("pulse reset line"), which devices/i8042.ts already
//   turns into MachineControl.reset. Without an i8042 there is no reset register (RESET_REG_SUP clear).
// - IAPC_BOOT_ARCH: LEGACY_DEVICES (ISA serial/RTC on the LPC-like bus), 8042 when present, VGA Not Present.
// - Flags: WBINVD, PROC_C1, SLP_BUTTON (no sleep button), RTC_S4, FIX_RTC clear (the RTC alarm wakes the guest from
//   S3 through RTC_EN/RTC_STS in PM1, as on QEMU's PIIX4),
//   TMR_VAL_EXT, USE_PLATFORM_CLOCK, RESET_REG_SUP; FORCE_APIC_PHYSICAL_DESTINATION_MODE above 8 CPUs (QEMU);
//   HW_REDUCED_ACPI clear (this is a full fixed-hardware platform).
// - CENTURY = 0x32, the RTC's century byte (as QEMU).
//
// MADT: local APIC address 0xFEE00000 with PCAT_COMPAT (8259s present); one Processor Local APIC per vCPU (ACPI
// processor UID = APIC ID = vCPU index, which is KVM's default APIC ID); the IOAPIC (ID 0, 0xFEC00000, GSI base 0);
// interrupt source overrides ISA IRQ 0 → GSI 2 (bus default polarity/trigger) and the SCI (level, active-high);
// a Local APIC NMI for LINT1 on every processor. No NMI Source entry: no IOAPIC input carries an NMI.
import { dsdtAml, type DsdtConfig } from './dsdt.js';
import { FACS_ALIGN, buildFacs } from './facs.js';
import {
  IOAPIC_ADDRESS,
  IOAPIC_ID,
  ISA_IRQ0_GSI,
  LAPIC_ADDRESS,
  checkCpus,
  checkIsaIrq,
  checkWindow,
  ioWindows,
  overlaps,
  type AddressWindow,
  type IsaSerialPort,
  type PciHost,
} from './platform.js';
import { PM1_CNT_LENGTH, PM1_EVT_LENGTH, PM_TMR_LENGTH, PM_TIMER_32BIT } from '../../../devices/acpi-pm.js';
import { I8042_COMMAND_PORT, CCMD_RESET } from '../../../devices/i8042.js';
import type { RamRegion } from '../e820.js';
import { alignUp } from '../../util/align.js';
import { asciiField } from '../../util/ascii.js';
import { le16, le32 } from '../../util/le-bytes.js';

// ---- identification ---------------------------------------------------------------------------------------------
export const ACPI_OEM_ID = 'TSVMM '; // 6 bytes
export const ACPI_OEM_TABLE_ID = 'TSVMMPC '; // 8 bytes
export const ACPI_OEM_REVISION = 1;
export const ACPI_CREATOR_ID = 'TSVM'; // 4 bytes
export const ACPI_CREATOR_REVISION = 1;

export const ACPI_HEADER_LENGTH = 36;
const HEADER_OFF_LENGTH = 4;
const HEADER_OFF_CHECKSUM = 9;

// ---- revisions ------------------------------------------------------------------------------------------------------
const RSDP_REVISION = 2; // ACPI 2.0+ RSDP: has Length, XsdtAddress, extended checksum
const RSDT_REVISION = 1;
const XSDT_REVISION = 1;
export const FADT_REVISION = 6; // ACPI 6.0 layout
const FADT_MINOR_REVISION = 0;
const MADT_REVISION = 4; // ACPI 6.0 MADT
const MCFG_REVISION = 1;
const DSDT_REVISION = 2; // ≥ 2: AML integers are 64 bits

export const RSDP_LENGTH = 36;
const RSDP_V1_LENGTH = 20; // the part the first checksum covers
export const FADT_LENGTH = 276;

// ---- FADT fields ----------------------------------------------------------------------------------------------------
const FADT_OFF_FIRMWARE_CTRL = 36;
const FADT_OFF_DSDT = 40;
const FADT_OFF_PREFERRED_PM_PROFILE = 45;
const FADT_OFF_SCI_INT = 46;
const FADT_OFF_SMI_CMD = 48;
const FADT_OFF_PM1A_EVT_BLK = 56;
const FADT_OFF_PM1A_CNT_BLK = 64;
const FADT_OFF_PM_TMR_BLK = 76;
const FADT_OFF_PM1_EVT_LEN = 88;
const FADT_OFF_PM1_CNT_LEN = 89;
const FADT_OFF_PM_TMR_LEN = 91;
const FADT_OFF_P_LVL2_LAT = 96;
const FADT_OFF_P_LVL3_LAT = 98;
const FADT_OFF_CENTURY = 108;
const FADT_OFF_IAPC_BOOT_ARCH = 109;
const FADT_OFF_FLAGS = 112;
const FADT_OFF_RESET_REG = 116;
const FADT_OFF_RESET_VALUE = 128;
const FADT_OFF_MINOR_REVISION = 131;
const FADT_OFF_X_FIRMWARE_CTRL = 132;
const FADT_OFF_X_DSDT = 140;
const FADT_OFF_X_PM1A_EVT_BLK = 148;
const FADT_OFF_X_PM1A_CNT_BLK = 172;
const FADT_OFF_X_PM_TMR_BLK = 208;

const PM_PROFILE_UNSPECIFIED = 0;
/** P_LVL2_LAT / P_LVL3_LAT above 100 / 1000 µs mean "C2 / C3 not supported". */
const C2_NOT_SUPPORTED = 0x0fff;
const C3_NOT_SUPPORTED = 0x0fff;
/** The RTC's century byte (devices/rtc.ts RTC_CENTURY). */
export const FADT_CENTURY_INDEX = 0x32;

// IAPC_BOOT_ARCH (5.2.9.3)
export const BOOT_ARCH_LEGACY_DEVICES = 0x0001; // ISA/LPC devices the OS cannot enumerate otherwise
export const BOOT_ARCH_8042 = 0x0002; // an 8042 keyboard controller is present
export const BOOT_ARCH_VGA_NOT_PRESENT = 0x0004; // do not probe VGA
export const BOOT_ARCH_MSI_NOT_SUPPORTED = 0x0008;
export const BOOT_ARCH_PCIE_ASPM_CONTROLS = 0x0010;
export const BOOT_ARCH_CMOS_RTC_NOT_PRESENT = 0x0020;

// FADT flags (5.2.9, table "Fixed ACPI Description Table Fixed Feature Flags")
export const FADT_F_WBINVD = 1 << 0; // WBINVD works
export const FADT_F_PROC_C1 = 1 << 2; // C1 (HLT) works on every processor
export const FADT_F_PWR_BUTTON = 1 << 4; // set: no fixed-feature power button (ours is fixed: clear)
export const FADT_F_SLP_BUTTON = 1 << 5; // set: no fixed-feature sleep button (none at all)
export const FADT_F_FIX_RTC = 1 << 6; // set: RTC wake status is not in the fixed registers
export const FADT_F_RTC_S4 = 1 << 7; // the RTC can wake from S4
export const FADT_F_TMR_VAL_EXT = 1 << 8; // the PM timer is 32 bits (clear: 24 bits)
export const FADT_F_RESET_REG_SUP = 1 << 10; // RESET_REG is valid
export const FADT_F_USE_PLATFORM_CLOCK = 1 << 15; // use the platform's clocks (PM timer/HPET), not per-CPU ones
export const FADT_F_FORCE_APIC_PHYSICAL_DESTINATION_MODE = 1 << 19;
export const FADT_F_HW_REDUCED_ACPI = 1 << 20; // never set here

// Generic Address Structure (5.2.3.2)
const GAS_SPACE_SYSTEM_IO = 1;
/** Access size 0 ("undefined/legacy"): the OS accesses the register at its natural width (as QEMU's tables say). */
const GAS_ACCESS_LEGACY = 0;

// ---- MADT -----------------------------------------------------------------------------------------------------------
const MADT_FLAG_PCAT_COMPAT = 0x1; // dual 8259s present: the OS must mask them before using APICs
const MADT_LOCAL_APIC = 0; // Processor Local APIC (8 bytes)
const MADT_IOAPIC = 1; // I/O APIC (12 bytes)
const MADT_INTERRUPT_OVERRIDE = 2; // Interrupt Source Override (10 bytes)
const MADT_LOCAL_APIC_NMI = 4; // Local APIC NMI (6 bytes)
const LOCAL_APIC_ENABLED = 0x1;
const MADT_ISA_BUS = 0;
/** MPS INTI flags: polarity in bits 1-0, trigger mode in bits 3-2; 0 = conforms to the bus. */
export const MPS_INTI_CONFORMS = 0x0;
export const MPS_INTI_ACTIVE_HIGH = 0x1;
export const MPS_INTI_ACTIVE_LOW = 0x3;
export const MPS_INTI_EDGE = 0x1 << 2;
export const MPS_INTI_LEVEL = 0x3 << 2;
const ALL_PROCESSORS = 0xff; // Local APIC NMI: applies to every processor
const LINT1 = 1;

// ---- MCFG -----------------------------------------------------------------------------------------------------------
const MCFG_RESERVED_LENGTH = 8;
const MCFG_ENTRY_LENGTH = 16;
/** Each bus takes 1 MiB of ECAM: 32 devices × 8 functions × 4 KiB. */
export const ECAM_BYTES_PER_BUS = 1 << 20;

// ---- helpers --------------------------------------------------------------------------------------------------------

/** The byte that makes `bytes` sum to zero modulo 256 when stored at `at` (which must hold 0 while summing). */
export function checksum8(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum = (sum + bytes[i]) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** A complete table: the standard 36-byte header (5.2.6), `body`, and the checksum over it all. */
export function acpiTable(
  signature: string,
  revision: number,
  body: Uint8Array,
  oemTableId = ACPI_OEM_TABLE_ID,
): Uint8Array {
  const bytes = new Uint8Array(ACPI_HEADER_LENGTH + body.length);
  const v = new DataView(bytes.buffer);
  bytes.set(asciiField(signature, 4, 'ACPI'), 0);
  v.setUint32(HEADER_OFF_LENGTH, bytes.length, true);
  bytes[8] = revision;
  bytes.set(asciiField(ACPI_OEM_ID, 6, 'ACPI'), 10);
  bytes.set(asciiField(oemTableId, 8, 'ACPI'), 16);
  v.setUint32(24, ACPI_OEM_REVISION, true);
  bytes.set(asciiField(ACPI_CREATOR_ID, 4, 'ACPI'), 28);
  v.setUint32(32, ACPI_CREATOR_REVISION, true);
  bytes.set(body, ACPI_HEADER_LENGTH);
  bytes[HEADER_OFF_CHECKSUM] = checksum8(bytes);
  return bytes;
}

/** A Generic Address Structure for `bytes` of I/O ports at `port`. */
function gas(v: DataView, at: number, port: number, bytes: number): void {
  v.setUint8(at, GAS_SPACE_SYSTEM_IO);
  v.setUint8(at + 1, bytes * 8); // register bit width
  v.setUint8(at + 2, 0); // bit offset
  v.setUint8(at + 3, GAS_ACCESS_LEGACY);
  v.setBigUint64(at + 4, BigInt(port), true);
}

// ---- individual tables ----------------------------------------------------------------------------------------------

/** RSDP revision 2 (5.2.5.3): both checksums set. Lives at a 16-byte boundary, where the OS can find it. */
export function buildRsdp(rsdtAddress: number, xsdtAddress: number): Uint8Array {
  const bytes = new Uint8Array(RSDP_LENGTH);
  const v = new DataView(bytes.buffer);
  bytes.set(asciiField('RSD PTR ', 8, 'ACPI'), 0);
  bytes.set(asciiField(ACPI_OEM_ID, 6, 'ACPI'), 9);
  bytes[15] = RSDP_REVISION;
  v.setUint32(16, rsdtAddress, true);
  v.setUint32(20, RSDP_LENGTH, true);
  v.setBigUint64(24, BigInt(xsdtAddress), true);
  bytes[8] = checksum8(bytes, 0, RSDP_V1_LENGTH); // the ACPI 1.0 part
  bytes[32] = checksum8(bytes, 0, RSDP_LENGTH); // the whole structure (first checksum included)
  return bytes;
}

/** RSDT: 32-bit pointers to every table but the DSDT and FACS (for OSes that ignore the XSDT, or `acpi=rsdt`). */
export function buildRsdt(tables: readonly number[]): Uint8Array {
  const body = new Uint8Array(4 * tables.length);
  const v = new DataView(body.buffer);
  for (const [i, a] of tables.entries()) v.setUint32(4 * i, a, true);
  return acpiTable('RSDT', RSDT_REVISION, body);
}

/** XSDT: the same pointers, 64 bits wide. */
export function buildXsdt(tables: readonly number[]): Uint8Array {
  const body = new Uint8Array(8 * tables.length);
  const v = new DataView(body.buffer);
  for (const [i, a] of tables.entries()) v.setBigUint64(8 * i, BigInt(a), true);
  return acpiTable('XSDT', XSDT_REVISION, body);
}

/** The ports of the PM block (devices/acpi-pm.ts acpiPmPorts). */
export interface PmPorts {
  readonly pm1aEvt: number;
  readonly pm1aCnt: number;
  readonly pmTmr: number;
}

export interface FadtConfig {
  readonly facs: number;
  readonly dsdt: number;
  readonly sciIrq: number;
  readonly pm: PmPorts;
  readonly cpus: number;
  readonly i8042: boolean;
}

export function buildFadt(c: FadtConfig): Uint8Array {
  const table = new Uint8Array(FADT_LENGTH);
  const v = new DataView(table.buffer);
  v.setUint32(FADT_OFF_FIRMWARE_CTRL, c.facs, true);
  v.setUint32(FADT_OFF_DSDT, c.dsdt, true);
  v.setUint8(FADT_OFF_PREFERRED_PM_PROFILE, PM_PROFILE_UNSPECIFIED);
  v.setUint16(FADT_OFF_SCI_INT, c.sciIrq, true);
  v.setUint32(FADT_OFF_SMI_CMD, 0, true); // no SMM: ACPI always enabled
  v.setUint32(FADT_OFF_PM1A_EVT_BLK, c.pm.pm1aEvt, true);
  v.setUint32(FADT_OFF_PM1A_CNT_BLK, c.pm.pm1aCnt, true);
  v.setUint32(FADT_OFF_PM_TMR_BLK, c.pm.pmTmr, true);
  v.setUint8(FADT_OFF_PM1_EVT_LEN, PM1_EVT_LENGTH);
  v.setUint8(FADT_OFF_PM1_CNT_LEN, PM1_CNT_LENGTH);
  v.setUint8(FADT_OFF_PM_TMR_LEN, PM_TMR_LENGTH);
  v.setUint16(FADT_OFF_P_LVL2_LAT, C2_NOT_SUPPORTED, true);
  v.setUint16(FADT_OFF_P_LVL3_LAT, C3_NOT_SUPPORTED, true);
  v.setUint8(FADT_OFF_CENTURY, FADT_CENTURY_INDEX);
  v.setUint16(
    FADT_OFF_IAPC_BOOT_ARCH,
    BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT | (c.i8042 ? BOOT_ARCH_8042 : 0),
    true,
  );
  let flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RTC_S4 | FADT_F_USE_PLATFORM_CLOCK;
  if (PM_TIMER_32BIT) flags |= FADT_F_TMR_VAL_EXT;
  if (c.cpus > 8) flags |= FADT_F_FORCE_APIC_PHYSICAL_DESTINATION_MODE;
  if (c.i8042) {
    flags |= FADT_F_RESET_REG_SUP;
    gas(v, FADT_OFF_RESET_REG, I8042_COMMAND_PORT, 1);
    v.setUint8(FADT_OFF_RESET_VALUE, CCMD_RESET);
  }
  v.setUint32(FADT_OFF_FLAGS, flags >>> 0, true);
  v.setUint8(FADT_OFF_MINOR_REVISION, FADT_MINOR_REVISION);
  // ACPI 6: FIRMWARE_CTRL and X_FIRMWARE_CTRL are exclusive (one must be zero); the FACS is below 4 GiB, so the
  // 32-bit pointer alone, as QEMU does (with both, Linux lists the FACS twice).
  v.setBigUint64(FADT_OFF_X_FIRMWARE_CTRL, 0n, true);
  v.setBigUint64(FADT_OFF_X_DSDT, BigInt(c.dsdt), true);
  gas(v, FADT_OFF_X_PM1A_EVT_BLK, c.pm.pm1aEvt, PM1_EVT_LENGTH);
  gas(v, FADT_OFF_X_PM1A_CNT_BLK, c.pm.pm1aCnt, PM1_CNT_LENGTH);
  gas(v, FADT_OFF_X_PM_TMR_BLK, c.pm.pmTmr, PM_TMR_LENGTH);
  return acpiTable('FACP', FADT_REVISION, table.subarray(ACPI_HEADER_LENGTH));
}

export interface MadtConfig {
  readonly cpus: number;
  readonly sciIrq: number;
}

export function buildMadt(c: MadtConfig): Uint8Array {
  const entries: number[][] = [];
  for (let cpu = 0; cpu < c.cpus; cpu++) {
    entries.push([MADT_LOCAL_APIC, 8, cpu, cpu, ...le32(LOCAL_APIC_ENABLED)]); // UID, APIC ID, flags
  }
  entries.push([MADT_IOAPIC, 12, IOAPIC_ID, 0, ...le32(IOAPIC_ADDRESS), ...le32(0)]);
  const override = (irq: number, gsi: number, flags: number) => [
    MADT_INTERRUPT_OVERRIDE,
    10,
    MADT_ISA_BUS,
    irq,
    ...le32(gsi),
    ...le16(flags),
  ];
  entries.push(override(0, ISA_IRQ0_GSI, MPS_INTI_CONFORMS));
  entries.push(override(c.sciIrq, c.sciIrq, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL));
  entries.push([MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS, ...le16(MPS_INTI_CONFORMS), LINT1]);
  const body = Uint8Array.from([...le32(LAPIC_ADDRESS), ...le32(MADT_FLAG_PCAT_COMPAT), ...entries.flat()]);
  return acpiTable('APIC', MADT_REVISION, body);
}

/** One ECAM window: segment 0, buses 0..endBus, at `base` (1 MiB per bus). */
export interface EcamConfig {
  readonly base: number;
  readonly endBus: number;
}

export function ecamWindow(e: EcamConfig): AddressWindow {
  return { base: e.base, size: (e.endBus + 1) * ECAM_BYTES_PER_BUS };
}

export function buildMcfg(e: EcamConfig): Uint8Array {
  const body = new Uint8Array(MCFG_RESERVED_LENGTH + MCFG_ENTRY_LENGTH);
  const v = new DataView(body.buffer);
  const at = MCFG_RESERVED_LENGTH;
  v.setBigUint64(at, BigInt(e.base), true); // ECAM base for bus 0
  v.setUint16(at + 8, 0, true); // PCI segment group
  v.setUint8(at + 10, 0); // first bus
  v.setUint8(at + 11, e.endBus); // last bus
  return acpiTable('MCFG', MCFG_REVISION, body);
}

export function buildDsdt(c: DsdtConfig): Uint8Array {
  return acpiTable('DSDT', DSDT_REVISION, dsdtAml(c));
}

// ---- the whole set ----------------------------------------------------------------------------------------------

export interface AcpiConfig {
  /** vCPUs at boot (1-255); APIC ID = ACPI processor UID = vCPU index. */
  readonly cpus: number;
  /** The machine's RAM: table placements must lie in RAM, windows outside it. */
  readonly ram: readonly RamRegion[];
  /** The PM block's ports (acpiPmPorts(base) from devices/acpi-pm.ts). */
  readonly pm: PmPorts;
  /** The SCI's ISA IRQ (level, active-high); QEMU uses 9. */
  readonly sciIrq: number;
  /** The PCI host bridge; without it the DSDT has no PCI0 and there is no MCFG. */
  readonly pci?: PciHost;
  /** PCI Express ECAM for segment 0 (needs `pci`): listed in MCFG and reserved as a motherboard resource. */
  readonly ecam?: EcamConfig;
  /** ISA 16550s present, in COM order. */
  readonly serial: readonly IsaSerialPort[];
  /** The MC146818 RTC at 0x70 (default true). */
  readonly rtc?: boolean;
  /** The i8042 at 0x60/0x64 (also the reset register). */
  readonly i8042: boolean;
  /** QEMU's pvpanic ISA device at this port (-device pvpanic): described as \_SB.PEVT (QEMU0001). */
  readonly pvpanic?: { readonly port: number };
  /** Where the tables go; see BIOS_AREA_LAYOUT. */
  readonly placement: { readonly rsdp: AddressWindow; readonly tables: AddressWindow };
  /** More complete tables (header and checksum included, e.g. from acpiTable) to list in the RSDT/XSDT. */
  readonly extraTables?: readonly Uint8Array[];
}

/** One piece of guest memory to write. */
export interface PlacedBlob {
  readonly name: string;
  readonly gpa: number;
  readonly bytes: Uint8Array;
}

export interface AcpiTables {
  /** Where the RSDP is (also for boot_params.acpi_rsdp_addr / PVH start_info.rsdp_paddr). */
  readonly rsdpAddress: number;
  /** Where the FACS is: readWakingVector (facs.ts) needs it on S3 resume. */
  readonly facsAddress: number;
  /** Write each blob's bytes at its address before the guest starts (and again after a reset). */
  readonly blobs: readonly PlacedBlob[];
  /**
   * What the guest must never use as RAM: the used parts of the two placement windows, rounded out to 4 KiB pages.
   * Report them as E820 reserved (ranges inside 0xF0000-0xFFFFF already are, via e820FromRam).
   */
  readonly reserved: readonly AddressWindow[];
}

/**
 * A layout inside the BIOS area [0xF0000, 0x100000), which e820FromRam already reports as reserved and where Linux
 * scans for both the RSDP and the MP floating pointer: RSDP first, then the MP table, then the ACPI tables.
 * Large enough for 255 CPUs and COM1-4 (ACPI tables ≈ 12 KiB of 48, MP table ≈ 6.2 KiB of 16).
 */
export const BIOS_AREA_LAYOUT = {
  rsdp: { base: 0xf0000, size: 0x40 },
  mp: { base: 0xf0040, size: 0x3fc0 },
  tables: { base: 0xf4000, size: 0xc000 },
} as const satisfies Record<string, AddressWindow>;

const PAGE = 4096;
const FOUR_GIB = 2 ** 32;

function insideRam(ram: readonly RamRegion[], w: AddressWindow): boolean {
  return ram.some((r) => w.base >= r.start && w.base + w.size <= r.start + r.size);
}

function checkConfig(c: AcpiConfig): void {
  checkCpus(c.cpus);
  checkIsaIrq('SCI', c.sciIrq);
  for (const [what, port, len] of [
    ['PM1a_EVT_BLK', c.pm.pm1aEvt, PM1_EVT_LENGTH],
    ['PM1a_CNT_BLK', c.pm.pm1aCnt, PM1_CNT_LENGTH],
    ['PM_TMR_BLK', c.pm.pmTmr, PM_TMR_LENGTH],
  ] as const) {
    checkWindow(what, { base: port, size: len }, 0x10000);
  }
  const ramWindows = c.ram.map((r) => ({ base: r.start, size: r.size }));
  for (const [what, w] of [
    ['RSDP placement', c.placement.rsdp],
    ['ACPI tables placement', c.placement.tables],
  ] as const) {
    checkWindow(what, w, FOUR_GIB);
    if (!insideRam(c.ram, w))
      throw new RangeError(`${what} 0x${w.base.toString(16)}+0x${w.size.toString(16)} is not inside one RAM region`);
  }
  if (c.placement.rsdp.base % 16 !== 0) throw new RangeError('RSDP placement must be 16-byte aligned');
  if (overlaps(c.placement.rsdp, c.placement.tables)) throw new RangeError('RSDP and ACPI tables placements overlap');
  const fixed: [string, AddressWindow][] = [
    ['IOAPIC', { base: IOAPIC_ADDRESS, size: PAGE }],
    ['local APIC', { base: LAPIC_ADDRESS, size: PAGE }],
  ];
  const mmio: [string, AddressWindow][] = [];
  if (c.ecam) {
    if (!c.pci) throw new RangeError('ECAM without a PCI host bridge');
    const { base, endBus } = c.ecam;
    if (!Number.isInteger(endBus) || endBus < 0 || endBus > 0xff)
      throw new RangeError(`ECAM last bus ${endBus} (0-255)`);
    if (base % ECAM_BYTES_PER_BUS !== 0) throw new RangeError(`ECAM base 0x${base.toString(16)} must be 1 MiB aligned`);
    const w = ecamWindow(c.ecam);
    checkWindow('ECAM', w, FOUR_GIB); // below 4 GiB: reserved with Memory32Fixed
    mmio.push(['ECAM', w]);
    if (c.pci.endBus !== undefined && c.pci.endBus > endBus)
      throw new RangeError(`PCI buses 0-${c.pci.endBus} exceed the ECAM's 0-${endBus}`);
  }
  if (c.pci) {
    const { mmio32, mmio64 } = c.pci.windows;
    for (const [i, w] of ioWindows(c.pci.windows).entries()) checkWindow(`PCI I/O window ${i}`, w, 0x10000);
    checkWindow('PCI 32-bit MMIO window', mmio32, IOAPIC_ADDRESS);
    mmio.push(['PCI 32-bit MMIO window', mmio32]);
    if (mmio64) {
      checkWindow('PCI 64-bit MMIO window', mmio64, 2 ** 52);
      mmio.push(['PCI 64-bit MMIO window', mmio64]);
    }
  }
  for (const [what, w] of mmio) {
    for (const r of ramWindows)
      if (overlaps(w, r)) throw new RangeError(`${what} overlaps RAM at 0x${r.base.toString(16)}`);
    for (const [other, o] of [...fixed, ...mmio])
      if (o !== w && overlaps(w, o)) throw new RangeError(`${what} overlaps the ${other}`);
  }
}

/** Builds every table, places them, and links the pointers. */
export function buildAcpiTables(c: AcpiConfig): AcpiTables {
  checkConfig(c);
  const { tables: area, rsdp: rsdpArea } = c.placement;
  let next = area.base;
  const blobs: PlacedBlob[] = [];
  const place = (name: string, bytes: Uint8Array, align: number): number => {
    const gpa = alignUp(next, align);
    if (gpa + bytes.length > area.base + area.size) {
      throw new RangeError(
        `ACPI tables need more than the 0x${area.size.toString(16)} bytes placed at 0x${area.base.toString(16)} (at ${name})`,
      );
    }
    blobs.push({ name, gpa, bytes });
    next = gpa + bytes.length;
    return gpa;
  };

  const facs = place('FACS', buildFacs(), FACS_ALIGN);
  const ecam = c.ecam ? ecamWindow(c.ecam) : undefined;
  const dsdt = place(
    'DSDT',
    buildDsdt({
      cpus: c.cpus,
      serial: c.serial,
      rtc: c.rtc ?? true,
      i8042: c.i8042,
      pvpanic: c.pvpanic,
      pci: c.pci && { ...c.pci, endBus: c.pci.endBus ?? c.ecam?.endBus },
      ecam,
      reservedIo: [
        { base: c.pm.pm1aEvt, size: PM1_EVT_LENGTH },
        { base: c.pm.pm1aCnt, size: PM1_CNT_LENGTH },
        { base: c.pm.pmTmr, size: PM_TMR_LENGTH },
      ],
    }),
    16,
  );
  const listed: number[] = [];
  listed.push(place('FACP', buildFadt({ facs, dsdt, sciIrq: c.sciIrq, pm: c.pm, cpus: c.cpus, i8042: c.i8042 }), 16));
  listed.push(place('APIC', buildMadt({ cpus: c.cpus, sciIrq: c.sciIrq }), 16));
  if (c.ecam) listed.push(place('MCFG', buildMcfg(c.ecam), 16));
  for (const t of c.extraTables ?? []) {
    if (
      t.length < ACPI_HEADER_LENGTH ||
      new DataView(t.buffer, t.byteOffset).getUint32(HEADER_OFF_LENGTH, true) !== t.length ||
      checksum8(t) !== 0
    ) {
      throw new RangeError('extra ACPI table: bad header length or checksum');
    }
    listed.push(place(String.fromCharCode(...t.subarray(0, 4)), t, 16));
  }
  const xsdt = place('XSDT', buildXsdt(listed), 16);
  const rsdt = place('RSDT', buildRsdt(listed), 16);

  const rsdp = buildRsdp(rsdt, xsdt);
  if (rsdp.length > rsdpArea.size)
    throw new RangeError(`RSDP needs ${rsdp.length} bytes, the placement has ${rsdpArea.size}`);
  blobs.unshift({ name: 'RSDP', gpa: rsdpArea.base, bytes: rsdp });

  const pages = (base: number, end: number): AddressWindow => {
    const start = Math.floor(base / PAGE) * PAGE;
    return { base: start, size: alignUp(end, PAGE) - start };
  };
  const reserved = mergeWindows([pages(rsdpArea.base, rsdpArea.base + rsdp.length), pages(area.base, next)]);
  return { rsdpAddress: rsdpArea.base, facsAddress: facs, blobs, reserved };
}

/** Sorted, with overlapping or touching windows joined. */
function mergeWindows(windows: AddressWindow[]): AddressWindow[] {
  const out: { base: number; size: number }[] = [];
  for (const w of [...windows].sort((a, b) => a.base - b.base)) {
    const last = out[out.length - 1];
    if (last && w.base <= last.base + last.size) last.size = Math.max(last.size, w.base + w.size - last.base);
    else out.push({ ...w });
  }
  return out;
}
