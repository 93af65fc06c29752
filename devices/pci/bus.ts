// PCI bus 0 as one thread sees it: slot → function, configuration cycles from the host bridge, BAR decoding inside
// the host bridge's windows, and INTx# routing onto IOAPIC GSIs.
//
// Threads: every thread builds its own PciBus and attaches its own instances of the functions, all over the same
// records. Where a BAR decodes is derived from the function's config bytes (BAR registers and COMMAND) and the
// window limits, never kept in per-thread objects: a thread that moves a BAR bumps `mappingGeneration` in the
// host's record, and every thread rebuilds its lookup table on its next access. The machine's MMIO and port buses
// see only three fixed windows (32-bit MMIO, 64-bit MMIO, I/O), so nothing is added to or removed from them at run
// time — as on a real host bridge, a BAR placed outside every window simply does not decode.
//
// INTx#: pin P of slot S drives GSI firstGsi + (S + P - 1) mod gsiCount (the classic PCI swizzle, onto IOAPIC pins
// 16-23 by default), level-triggered, asserted high as KVM's IOAPIC sees it. Functions sharing a GSI are OR-ed; a
// function's COMMAND.INTX_DISABLE keeps its pin quiet while STATUS.INTERRUPT still reports it.
import type { AccessSize, IoHandler, IoRegion, IrqLine } from '../../src/bus/types.js';
import { splitRead, splitWrite } from '../../src/bus/bus.js';
import type { MappedBar, PciFunction, PciSlot } from './types.js';
import { touches } from './config-space.js';
import * as R from './constants.js';

export interface PciWindow {
  readonly base: number;
  readonly size: number;
}

/** The host bridge's forwarding windows (plain data; the ACPI _CRS of the host bridge describes the same). */
export interface PciWindows {
  /** 32-bit MMIO below 4 GiB (the PCI hole). */
  readonly mmio32: PciWindow;
  /** 64-bit MMIO above RAM (optional). */
  readonly mmio64?: PciWindow | null;
  /** Port I/O. */
  readonly io: PciWindow;
}

/**
 * Where INTx# lands: GSIs firstGsi .. firstGsi + gsiCount - 1. Legacy PCI INTx routing: device `slot` (0-31) on
 * bus 0, interrupt pin P (1 = INTA# … 4 = INTD#, as in the INTERRUPT_PIN register) is wired to IOAPIC input
 * `firstGsi + ((slot + P - 1) mod gsiCount)`. This is the PCI-to-PCI bridge swizzle applied at the host bridge, so
 * neighbouring slots spread their INTA# over different inputs. The default uses the eight IOAPIC inputs above the
 * ISA range (GSIs 16-23), level-triggered and active-low as PCI INTx is. The bus drives the GSI `intxGsi` gives, and
 * the ACPI _PRT and the MP table (src/boot/acpi/platform.ts: pciRoutingTable, src/boot/mptable.ts) describe it.
 */
export interface PciIntxRouting {
  readonly firstGsi: number;
  readonly gsiCount: number;
}

export const DEFAULT_INTX_ROUTING: PciIntxRouting = { firstGsi: 16, gsiCount: 8 };

/** The GSI that INTx pin `pin` (1 = INTA# .. 4 = INTD#) of bus 0's `slot` drives: the swizzle above. */
export function intxGsi(slot: number, pin: number, routing: PciIntxRouting = DEFAULT_INTX_ROUTING): number {
  return routing.firstGsi + ((slot + pin - 1) % routing.gsiCount);
}

/** The part of the host's record the bus uses. */
export interface PciBusRecord {
  /** Bumped whenever any BAR mapping may have changed; per-thread lookup tables follow it. */
  mappingGeneration: number;
  /** The level last driven on each INTx GSI (bit i = firstGsi + i). */
  intxLevels: number;
}

interface Attached {
  readonly fn: PciFunction;
  readonly slot: number;
  readonly gsi: number | null;
}

interface Decode {
  readonly base: number;
  readonly end: number;
  readonly attached: Attached;
  readonly handler: IoHandler;
}

const ALL_ONES: Record<number, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff, 8: 0xffffffff };

export class PciBus {
  private readonly slots: (Attached | undefined)[] = new Array(R.PCI_SLOTS).fill(undefined);
  private mmio: Decode[] = [];
  private io: Decode[] = [];
  private seenGeneration = -1;
  readonly intxRouting: PciIntxRouting;

  constructor(
    private readonly record: PciBusRecord,
    readonly windows: PciWindows,
    private readonly irq: (gsi: number) => IrqLine,
    intxRouting: PciIntxRouting = DEFAULT_INTX_ROUTING,
  ) {
    this.intxRouting = intxRouting;
    if (intxRouting.gsiCount < 1 || intxRouting.gsiCount > 32) throw new RangeError('INTx routing: 1..32 GSIs');
  }

  /** Puts `fn` in `slot` (function 0). Every thread attaches the same functions to the same slots. */
  attach(slot: number, fn: PciFunction): PciSlot {
    if (!Number.isInteger(slot) || slot < 0 || slot >= R.PCI_SLOTS)
      throw new RangeError(`PCI slot ${slot} is not 0..31`);
    if (this.slots[slot])
      throw new Error(`PCI slot ${slot} is taken by ${this.slots[slot]!.fn.name}, cannot attach ${fn.name}`);
    const pin = fn.config.interruptPin;
    const attached: Attached = { fn, slot, gsi: pin ? intxGsi(slot, pin, this.intxRouting) : null };
    // As firmware leaves it: INTERRUPT_LINE names the IOAPIC pin the function's INTx# drives (a guest without
    // ACPI's _PRT, or a simple one, takes it from there). Part of the power-on image, so a reset restores it.
    if (attached.gsi !== null) fn.config.setImage(R.PCI_INTERRUPT_LINE, 1, attached.gsi);
    this.slots[slot] = attached;
    this.seenGeneration = -1;
    return {
      slot,
      intx: {
        set: (level) => this.setIntx(attached, level),
        pulse: () => {
          this.setIntx(attached, true);
          this.setIntx(attached, false);
        },
      },
      mappedBars: () => this.mappedBars(fn),
      configChanged: () => this.mappingChanged(attached, true),
    };
  }

  /** The function in `slot`, if any. */
  function(slot: number): PciFunction | undefined {
    return this.slots[slot]?.fn;
  }

  /** Attached functions with their slot and INTx GSI (for ACPI _PRT and diagnostics). */
  get functions(): readonly { slot: number; name: string; gsi: number | null }[] {
    return this.slots
      .filter((a): a is Attached => a !== undefined)
      .map((a) => ({ slot: a.slot, name: a.fn.name, gsi: a.gsi }));
  }

  // ---- configuration cycles ---------------------------------------------------------------------------------

  private target(bus: number, device: number, fn: number): Attached | undefined {
    if (bus !== 0 || fn !== 0 || device < 0 || device >= R.PCI_SLOTS) return undefined;
    return this.slots[device];
  }

  /** A configuration read; nobody home reads all-ones (how software finds empty slots). */
  configRead(bus: number, device: number, fn: number, offset: number, size: 1 | 2 | 4): number {
    const t = this.target(bus, device, fn);
    if (!t) return ALL_ONES[size];
    t.fn.configReading?.(offset, size);
    return t.fn.config.read(offset, size);
  }

  configWrite(bus: number, device: number, fn: number, offset: number, size: 1 | 2 | 4, value: number): void {
    const t = this.target(bus, device, fn);
    if (!t) return;
    const config = t.fn.config;
    const commandBefore = config.command;
    config.write(offset, size, value);
    const barsTouched =
      touches(offset, size, R.PCI_BASE_ADDRESS_0, 4 * R.PCI_NUM_BARS) || touches(offset, size, R.PCI_ROM_ADDRESS, 4);
    const commandTouched = touches(offset, size, R.PCI_COMMAND, 2);
    if (
      barsTouched ||
      (commandTouched && (commandBefore ^ config.command) & (R.PCI_COMMAND_IO | R.PCI_COMMAND_MEMORY))
    ) {
      this.mappingChanged(t, false);
    }
    if (commandTouched && (commandBefore ^ config.command) & R.PCI_COMMAND_INTX_DISABLE && t.gsi !== null)
      this.driveGsi(t.gsi, false);
    t.fn.configWritten?.(offset, size);
  }

  // ---- BAR decoding -----------------------------------------------------------------------------------------

  /** Where each of `fn`'s BARs decodes now (and, at index 6, its expansion ROM when it has one). */
  mappedBars(fn: PciFunction): (MappedBar | null)[] {
    const out: (MappedBar | null)[] = [];
    const command = fn.config.command;
    for (let i = 0; i < R.PCI_NUM_BARS; i++) {
      const layout = fn.config.barLayout(i);
      const address = fn.config.barAddress(i);
      if (!layout || address === null) {
        out.push(null);
        continue;
      }
      const enabled = layout.kind === 'io' ? command & R.PCI_COMMAND_IO : command & R.PCI_COMMAND_MEMORY;
      const inside = (w: PciWindow | null | undefined) =>
        !!w && address >= w.base && address + layout.size <= w.base + w.size;
      const decodes =
        enabled &&
        address !== 0 &&
        (layout.kind === 'io'
          ? inside(this.windows.io)
          : inside(this.windows.mmio32) || (layout.kind === 'mmio64' && inside(this.windows.mmio64)));
      out.push(decodes ? { index: i, kind: layout.kind, address, size: layout.size } : null);
    }
    // The expansion ROM, for functions that have one: a 32-bit memory window while enabled and MEMORY is on.
    const romSize = fn.config.romSize;
    if (romSize) {
      const address = fn.config.romAddress();
      const w = this.windows.mmio32;
      const decodes =
        command & R.PCI_COMMAND_MEMORY &&
        address !== null &&
        address !== 0 &&
        address >= w.base &&
        address + romSize <= w.base + w.size;
      out.push(decodes ? { index: R.PCI_ROM_SLOT, kind: 'mmio32', address: address!, size: romSize } : null);
    }
    return out;
  }

  private mappingChanged(t: Attached, intx: boolean): void {
    this.record.mappingGeneration = (this.record.mappingGeneration + 1) >>> 0;
    t.fn.barsMapped?.(this.mappedBars(t.fn));
    if (intx && t.gsi !== null) this.driveGsi(t.gsi, false);
  }

  private refresh(): void {
    const generation = this.record.mappingGeneration;
    if (generation === this.seenGeneration) return;
    const mmio: Decode[] = [];
    const io: Decode[] = [];
    for (const attached of this.slots) {
      if (!attached) continue;
      for (const bar of this.mappedBars(attached.fn)) {
        if (!bar) continue;
        const handler = attached.fn.bar(bar.index);
        if (!handler) continue;
        (bar.kind === 'io' ? io : mmio).push({ base: bar.address, end: bar.address + bar.size, attached, handler });
      }
    }
    // Overlapping BARs (a guest's mistake): the lower slot wins, as the sort keeps attach order for equal bases.
    mmio.sort((a, b) => a.base - b.base);
    io.sort((a, b) => a.base - b.base);
    this.mmio = mmio;
    this.io = io;
    this.seenGeneration = generation;
  }

  private find(list: readonly Decode[], address: number): Decode | undefined {
    for (const d of list) if (address >= d.base && address < d.end) return d;
    return undefined;
  }

  private access(space: 'mmio' | 'io'): IoHandler {
    const read = (address: number, size: AccessSize): number => {
      this.refresh();
      const d = this.find(space === 'io' ? this.io : this.mmio, address);
      if (!d) return ALL_ONES[size];
      // Byte by byte (at most 4: the value is a 32-bit number) when it runs off the BAR or is 8 bytes wide.
      if (address + size > d.end || size === 8) return splitRead(read, address, Math.min(size, 4));
      return d.handler.read(address - d.base, size);
    };
    const write = (address: number, size: AccessSize, value: number): void => {
      this.refresh();
      const d = this.find(space === 'io' ? this.io : this.mmio, address);
      if (!d) return;
      if (address + size > d.end || size === 8) {
        splitWrite(write, address, Math.min(size, 4), value);
        return;
      }
      d.handler.write(address - d.base, size, value);
    };
    return { read, write };
  }

  /** The windows to put on the machine's MMIO and port buses (fixed for the machine's life). */
  regions(): IoRegion[] {
    const mmio = this.access('mmio');
    const io = this.access('io');
    const at = (w: PciWindow, h: IoHandler): IoHandler => ({
      read: (offset, size) => h.read(w.base + offset, size),
      write: (offset, size, value) => h.write(w.base + offset, size, value),
    });
    const regions: IoRegion[] = [
      {
        name: 'pci-mmio32',
        space: 'mmio',
        base: this.windows.mmio32.base,
        length: this.windows.mmio32.size,
        handler: at(this.windows.mmio32, mmio),
      },
      {
        name: 'pci-io',
        space: 'pio',
        base: this.windows.io.base,
        length: this.windows.io.size,
        handler: at(this.windows.io, io),
      },
    ];
    const w64 = this.windows.mmio64;
    if (w64)
      regions.push({ name: 'pci-mmio64', space: 'mmio', base: w64.base, length: w64.size, handler: at(w64, mmio) });
    return regions;
  }

  // ---- INTx -------------------------------------------------------------------------------------------------

  private setIntx(t: Attached, level: boolean): void {
    t.fn.config.setStatusBits(R.PCI_STATUS_INTERRUPT, level);
    if (t.gsi !== null) this.driveGsi(t.gsi, false);
  }

  private gsiLevel(gsi: number): boolean {
    for (const a of this.slots) {
      if (!a || a.gsi !== gsi || a.fn.externalIntx) continue;
      const c = a.fn.config;
      if (c.u16(R.PCI_STATUS) & R.PCI_STATUS_INTERRUPT && !(c.command & R.PCI_COMMAND_INTX_DISABLE)) return true;
    }
    return false;
  }

  /** Drives `gsi` to the OR of its functions' pins (only when that changes, unless `force`). */
  private driveGsi(gsi: number, force: boolean): void {
    const bit = 1 << (gsi - this.intxRouting.firstGsi);
    const level = this.gsiLevel(gsi);
    const was = (this.record.intxLevels & bit) !== 0;
    if (!force && level === was) return;
    this.record.intxLevels = level ? (this.record.intxLevels | bit) >>> 0 : (this.record.intxLevels & ~bit) >>> 0;
    this.irq(gsi).set(level);
  }

  /** After a restore or reset: every BAR lookup rebuilt, every INTx GSI driven to what the records say. */
  restored(): void {
    this.seenGeneration = -1;
    for (let i = 0; i < this.intxRouting.gsiCount; i++) this.driveGsi(this.intxRouting.firstGsi + i, true);
  }
}
