// What the ACPI tables and the MP table both describe: the CPUs, the IOAPIC, the PCI host bridge's windows and how
// PCI INTx pins reach IOAPIC inputs. One definition so the two tables (and the machine that wires the hardware)
// cannot disagree.
import { DEFAULT_INTX_ROUTING, intxGsi, type PciIntxRouting } from '../../../devices/pci/bus.js';

/** A guest-physical or I/O-port range: `size` bytes from `base`. */
export interface AddressWindow {
  readonly base: number;
  readonly size: number;
}

/** The local APICs' MMIO base every CPU sees (the architectural default). */
export const LAPIC_ADDRESS = 0xfee00000;
/** The IOAPIC's MMIO base, as on a PC (KVM's in-kernel IOAPIC sits here). */
export const IOAPIC_ADDRESS = 0xfec00000;
/** KVM's in-kernel IOAPIC has 24 inputs: GSIs 0-23. */
export const IOAPIC_PINS = 24;
/**
 * The IOAPIC's ID in both tables: 0, the value KVM's in-kernel IOAPIC holds after reset and what QEMU's MADT says.
 * (MP 1.4 wants it distinct from the local APIC IDs; Linux on x86-64 does not, and keeps the ID it is given.)
 */
export const IOAPIC_ID = 0;
/** xAPIC IDs are 8 bits and 0xFF is the broadcast ID: at most 255 CPUs with APIC IDs 0-254. */
export const MAX_CPUS = 255;

/** ISA IRQ 0 (the PIT) is wired to IOAPIC input 2 (input 0 carries the 8259's INTR): the override every PC has. */
export const ISA_IRQ0_GSI = 2;
/** ISA IRQ 2 is the 8259 cascade: no device uses it, and no IOAPIC input is assigned to it. */
export const ISA_CASCADE_IRQ = 2;

/**
 * Legacy PCI INTx routing is devices/pci/bus.ts's swizzle (PciIntxRouting, intxGsi), which the bus drives; the
 * tables describe the same GSIs, level-triggered and active-low as PCI INTx is (the _PRT's GSI entries mean exactly
 * that to the guest). The tables want those GSIs on the IOAPIC inputs above the ISA IRQs.
 */
export function checkIntxRouting(routing: PciIntxRouting): void {
  const { firstGsi, gsiCount } = routing;
  if (
    !Number.isInteger(firstGsi) ||
    !Number.isInteger(gsiCount) ||
    gsiCount < 1 ||
    firstGsi < 16 ||
    firstGsi + gsiCount > IOAPIC_PINS
  ) {
    throw new RangeError(
      `PCI INTx routing: GSIs ${firstGsi}+${gsiCount} must lie in 16-${IOAPIC_PINS - 1} (above the ISA IRQs)`,
    );
  }
}

/** _PRT address field: the device (slot) in bits 31-16, 0xFFFF = any function. */
const PRT_ANY_FUNCTION = 0xffff;

/** One _PRT entry: device address (slot << 16 | 0xffff), pin (0 = INTA# .. 3 = INTD#), GSI. */
export interface PrtEntry {
  readonly address: number;
  readonly pin: number;
  readonly gsi: number;
}

/**
 * The INTx routing ACPI's _PRT for bus 0 must describe (every slot, every pin), matching bus.ts's swizzle:
 * GSI = firstGsi + (slot + pin) mod gsiCount with pin 0 = INTA# (intxGsi numbers it 1). The GSIs are IOAPIC pins, level-triggered;
 * assert = line high as KVM's IOAPIC sees it (KVM ignores the polarity bit, so a guest that programs the pin
 * active-low — Linux's default for a _PRT entry without a link device — still works). Describe them with
 * Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) link devices, as QEMU's q35 GSIA..GSIH do, or as direct
 * GSIs in _PRT (source 0, index = GSI).
 */
export function pciRoutingTable(routing: PciIntxRouting = DEFAULT_INTX_ROUTING, slots = 32): PrtEntry[] {
  const out: PrtEntry[] = [];
  for (let slot = 0; slot < slots; slot++) {
    for (let pin = 0; pin < 4; pin++)
      out.push({ address: ((slot << 16) | PRT_ANY_FUNCTION) >>> 0, pin, gsi: intxGsi(slot, pin + 1, routing) });
  }
  return out;
}

/** The host bridge's windows: what it forwards to PCI devices (BARs are allocated inside them). */
export interface PciWindows {
  /** I/O port window(s) (the bridge decodes 0xCF8-0xCFF itself: keep them out). */
  readonly io: AddressWindow | readonly AddressWindow[];
  /** The 32-bit MMIO window, in the PCI hole below the IOAPIC. */
  readonly mmio32: AddressWindow;
  /** The 64-bit MMIO window, above the end of RAM (optional). */
  readonly mmio64?: AddressWindow | null;
}

/** The I/O windows as a list. */
export function ioWindows(windows: PciWindows): readonly AddressWindow[] {
  return 'base' in windows.io ? [windows.io as AddressWindow] : (windows.io as readonly AddressWindow[]);
}

/** The PCI host bridge both tables describe. */
export interface PciHost {
  readonly windows: PciWindows;
  /** Default DEFAULT_INTX_ROUTING. */
  readonly intx?: PciIntxRouting;
  /** The last bus number behind the bridge (default: the ECAM's endBus, or 0xFF). */
  readonly endBus?: number;
}

/** A 16550 UART at an ISA port with its ISA IRQ (COM1 = 0x3F8/4, COM2 = 0x2F8/3, COM3 = 0x3E8/4, COM4 = 0x2E8/3). */
export interface IsaSerialPort {
  readonly base: number;
  readonly irq: number;
}

export function checkCpus(cpus: number): void {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS)
    throw new RangeError(`platform tables: ${cpus} CPUs (1-${MAX_CPUS})`);
}

export function checkIsaIrq(what: string, irq: number): void {
  if (!Number.isInteger(irq) || irq < 0 || irq > 15 || irq === ISA_CASCADE_IRQ)
    throw new RangeError(`${what}: ISA IRQ ${irq} (0-15, not 2)`);
}

export function checkWindow(what: string, w: AddressWindow, limit: number): void {
  if (
    !Number.isSafeInteger(w.base) ||
    !Number.isSafeInteger(w.size) ||
    w.base < 0 ||
    w.size <= 0 ||
    w.base + w.size > limit
  ) {
    throw new RangeError(
      `${what}: window 0x${w.base.toString(16)}+0x${w.size.toString(16)} is empty or beyond 0x${limit.toString(16)}`,
    );
  }
}

export function overlaps(a: AddressWindow, b: AddressWindow): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}
