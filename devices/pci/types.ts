// The PCI framework's contract: what a PCI function implements (PciFunction) and what the bus gives it back
// (PciSlot). A function's mutable state — its configuration space included — lives in its vmstate record; the
// objects here are rebuilt identically in every thread over that record.
import type { IoHandler, IrqLine } from '../../src/bus/types.js';
import type { PciBarKind, PciConfigSpace } from './config-space.js';

/** Where a BAR currently decodes (decoding enabled in COMMAND and the whole BAR inside a host-bridge window). */
export interface MappedBar {
  readonly index: number;
  readonly kind: PciBarKind;
  readonly address: number;
  readonly size: number;
}

/** A PCI function (one device on bus 0, function 0 of its slot). */
export interface PciFunction {
  /** For messages and bus window names. */
  readonly name: string;
  readonly config: PciConfigSpace;
  /** The register handler of BAR i (offsets relative to the BAR's base), for each BAR the config declares (6: the ROM). */
  bar(index: number): IoHandler | undefined;
  /**
   * The function's INTx# reaches its GSI without the bus (a passed-through device: VFIO's eventfd on a resampling
   * irqfd). Its STATUS.INTERRUPT is only reported; the bus never drives the GSI for it.
   */
  readonly externalIntx?: boolean;
  /** Before a config read: the function may refresh bytes that live elsewhere (a passed-through device's STATUS). */
  configReading?(offset: number, size: number): void;
  /** After a config write the generic rules applied (capability side effects: MSI-X enable, function mask). */
  configWritten?(offset: number, size: number): void;
  /** The BARs were moved, enabled or disabled (index → mapping, null = not decoding). */
  barsMapped?(bars: readonly (MappedBar | null)[]): void;
}

/** What the bus gives a function it attached. */
export interface PciSlot {
  readonly slot: number;
  /** The function's INTx# pin (level): OR-ed with the other functions on the same GSI, gated by INTX_DISABLE. */
  readonly intx: IrqLine;
  /** Where each BAR decodes now. */
  mappedBars(): readonly (MappedBar | null)[];
  /** The function changed its config space outside a guest config write (reset, restore): re-derive mappings. */
  configChanged(): void;
}
