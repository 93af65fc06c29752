// The DSDT's AML: the namespace a guest enumerates devices from. What is in it, and why:
//
//   \_SB.Cnnn   one processor device (ACPI0007) per vCPU, _UID = the MADT's ACPI processor UID
//   \_SB.PCI0   the PCI host bridge (PNP0A08, compatible PNP0A03): _SEG/_BBN/_UID, _CRS with the bus range, the
//               0xCF8-0xCFF config ports, the I/O windows, the 32-bit window below the IOAPIC and the 64-bit window
//               above RAM; _PRT routes every slot's INTx pins straight to IOAPIC GSIs (platform.ts: pciRoutingTable)
//   \_SB.COMn   16550 UARTs (PNP0501), \_SB.RTC_ (PNP0B00), \_SB.KBD_ / \_SB.MOU_ (PNP0303 / PNP0F13)
//   \_SB.PEVT   QEMU's pvpanic (QEMU0001, devices/pvpanic.ts), only with -device pvpanic: _HID, _CRS, _STA as
//               QEMU 7.2 writes them (its PEOR region and RDPT/WRPT methods are left out: no driver uses them)
//   \_SB.SYSR   motherboard resources (PNP0C02): the ECAM window and the ACPI PM ports, so the OS keeps them out
//               of its allocations and trusts the MCFG's ECAM
//   \_S3_ \_S5_ {SLP_TYP, SLP_TYP, 0, 0} for the PM block (devices/acpi-pm.ts)
//
// No _OSC on the host bridge: Linux then keeps native PCIe hotplug/AER/PME control off and disables ASPM, which
// a virtual bridge does not need.
import {
  device,
  dwordIo,
  dwordMemory,
  eisaId,
  integer,
  io,
  irqNoFlags,
  memory32Fixed,
  method,
  name,
  pkg,
  qwordMemory,
  resourceTemplate,
  ret,
  scope,
  string,
  termList,
  wordBusNumber,
  type Aml,
  type Resource,
} from './aml.js';
import {
  checkCpus,
  checkIsaIrq,
  checkIntxRouting,
  ioWindows,
  pciRoutingTable,
  type AddressWindow,
  type IsaSerialPort,
  type PciHost,
} from './platform.js';
import { DEFAULT_INTX_ROUTING, type PciIntxRouting } from '../../../devices/pci/bus.js';
import { SLP_TYP_S3, SLP_TYP_S5 } from '../../../devices/acpi-pm.js';
import { RTC_IRQ, RTC_PORT_BASE } from '../../../devices/rtc.js';
import { PVPANIC_IO_LENGTH } from '../../../devices/pvpanic.js';
import { I8042_AUX_IRQ, I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_KBD_IRQ } from '../../../devices/i8042.js';

/** PCI configuration mechanism #1: address port 0xCF8, data ports 0xCFC-0xCFF. */
export const PCI_CONFIG_PORT = 0xcf8;
export const PCI_CONFIG_PORT_LENGTH = 8;
/** _STA: present, enabled, shown in the UI, functioning. */
const STA_PRESENT = 0x0f;
/** Ports a 16550 decodes. */
const UART_IO_LENGTH = 8;
/** The RTC's index and data ports (the device claims 0x70-0x71). */
const RTC_IO_LENGTH = 2;

export interface DsdtConfig {
  readonly cpus: number;
  readonly serial: readonly IsaSerialPort[];
  readonly rtc: boolean;
  readonly i8042: boolean;
  readonly pci?: PciHost;
  /** ECAM window (also reported in MCFG): reserved through the motherboard-resources device. */
  readonly ecam?: AddressWindow;
  /** I/O ports the platform decodes itself (the ACPI PM registers): reserved through the same device. */
  readonly reservedIo?: readonly AddressWindow[];
  /** QEMU's pvpanic ISA device at this I/O port (absent: no PEVT). */
  readonly pvpanic?: { readonly port: number };
}

/** The DSDT's definition block body (the AML after the table header). */
export function dsdtAml(config: DsdtConfig): Uint8Array {
  checkCpus(config.cpus);
  if (config.serial.length > 4) throw new RangeError(`DSDT: ${config.serial.length} serial ports (COM1-COM4 at most)`);
  const sb: Aml<'object'>[] = [];
  for (let i = 0; i < config.cpus; i++) sb.push(processor(i));
  if (config.pci) sb.push(pciHostBridge(config.pci));
  for (const [i, port] of config.serial.entries()) sb.push(serialPort(i + 1, port));
  if (config.rtc) sb.push(rtc());
  if (config.i8042) sb.push(...i8042());
  if (config.pvpanic) sb.push(pvpanic(config.pvpanic.port));
  const reserved = motherboardResources(config);
  if (reserved) sb.push(reserved);
  return termList([scope('\\_SB', sb), sleepState('_S3', SLP_TYP_S3), sleepState('_S5', SLP_TYP_S5)]);
}

/** Device(Cnnn): an ACPI processor device whose _UID matches the MADT's Processor Local APIC entry. */
function processor(uid: number): Aml<'object'> {
  return device(`C${uid.toString(16).toUpperCase().padStart(3, '0')}`, [
    name('_HID', string('ACPI0007')),
    name('_UID', integer(uid)),
  ]);
}

/** Name(\_Sx_, Package() {SLP_TYP for PM1a_CNT, SLP_TYP for PM1b_CNT, reserved, reserved}). */
function sleepState(state: '_S3' | '_S5', slpTyp: number): Aml<'object'> {
  return name(state, pkg([integer(slpTyp), integer(slpTyp), integer(0), integer(0)]));
}

function staPresent(): Aml<'object'> {
  return method('_STA', { args: 0 }, [ret(integer(STA_PRESENT))]);
}

function serialPort(n: number, port: IsaSerialPort): Aml<'object'> {
  checkIsaIrq(`COM${n}`, port.irq);
  return device(`COM${n}`, [
    name('_HID', eisaId('PNP0501')),
    name('_UID', integer(n)),
    staPresent(),
    name('_CRS', resourceTemplate([io({ min: port.base, length: UART_IO_LENGTH }), irqNoFlags([port.irq])])),
  ]);
}

/** Device(PEVT): QEMU's pvpanic, one byte at `port`; _STA 0x0F as QEMU's (present, enabled, shown, functioning). */
function pvpanic(port: number): Aml<'object'> {
  return device('PEVT', [
    name('_HID', string('QEMU0001')),
    name('_CRS', resourceTemplate([io({ min: port, length: PVPANIC_IO_LENGTH })])),
    name('_STA', integer(STA_PRESENT)),
  ]);
}

function rtc(): Aml<'object'> {
  return device('RTC', [
    name('_HID', eisaId('PNP0B00')),
    name('_CRS', resourceTemplate([io({ min: RTC_PORT_BASE, length: RTC_IO_LENGTH }), irqNoFlags([RTC_IRQ])])),
  ]);
}

function i8042(): Aml<'object'>[] {
  return [
    device('KBD', [
      name('_HID', eisaId('PNP0303')),
      staPresent(),
      name(
        '_CRS',
        resourceTemplate([
          io({ min: I8042_DATA_PORT, length: 1 }),
          io({ min: I8042_COMMAND_PORT, length: 1 }),
          irqNoFlags([I8042_KBD_IRQ]),
        ]),
      ),
    ]),
    device('MOU', [
      name('_HID', eisaId('PNP0F13')),
      staPresent(),
      name('_CRS', resourceTemplate([irqNoFlags([I8042_AUX_IRQ])])),
    ]),
  ];
}

function pciHostBridge(pci: PciHost): Aml<'object'> {
  const { windows } = pci;
  const endBus = pci.endBus ?? 0xff;
  if (!Number.isInteger(endBus) || endBus < 0 || endBus > 0xff)
    throw new RangeError(`PCI host bridge: last bus ${endBus} (0-255)`);
  const crs: Resource[] = [
    wordBusNumber({ min: 0, max: endBus }),
    io({ min: PCI_CONFIG_PORT, length: PCI_CONFIG_PORT_LENGTH }),
    ...ioWindows(windows).map((w) => dwordIo({ min: w.base, max: w.base + w.size - 1 })),
    // The 32-bit window is uncached (device registers); the 64-bit one is where large prefetchable BARs go.
    dwordMemory({ min: windows.mmio32.base, max: windows.mmio32.base + windows.mmio32.size - 1, cacheable: false }),
  ];
  if (windows.mmio64) {
    const w = windows.mmio64;
    crs.push(qwordMemory({ min: BigInt(w.base), max: BigInt(w.base) + BigInt(w.size) - 1n, cacheable: true }));
  }
  return device('PCI0', [
    name('_HID', eisaId('PNP0A08')), // PCI Express root bridge …
    name('_CID', eisaId('PNP0A03')), // … compatible with a PCI host bridge
    name('_SEG', integer(0)),
    name('_BBN', integer(0)),
    name('_UID', integer(0)),
    name('_CRS', resourceTemplate(crs)),
    name('_PRT', prtPackage(pci.intx ?? DEFAULT_INTX_ROUTING)),
  ]);
}

/**
 * _PRT: Package { Package { address (slot << 16 | 0xFFFF: any function), pin (0 = INTA#), source (0: a GSI, no link
 * device), source index (the GSI) } } for every slot and pin on bus 0, as platform.ts's pciRoutingTable lists them.
 */
function prtPackage(routing: PciIntxRouting): Aml<'data'> {
  checkIntxRouting(routing);
  return pkg(
    pciRoutingTable(routing).map((e) => pkg([integer(e.address), integer(e.pin), integer(0), integer(e.gsi)])),
  );
}

function motherboardResources(config: DsdtConfig): Aml<'object'> | null {
  const crs: Resource[] = [];
  if (config.ecam) crs.push(memory32Fixed({ base: config.ecam.base, length: config.ecam.size }));
  for (const w of config.reservedIo ?? []) crs.push(io({ min: w.base, length: w.size }));
  if (crs.length === 0) return null;
  return device('SYSR', [
    name('_HID', eisaId('PNP0C02')),
    name('_UID', integer(1)),
    name('_CRS', resourceTemplate(crs)),
  ]);
}
