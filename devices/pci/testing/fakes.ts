// Test doubles for the machine's PCI plumbing: interrupt lines, MSI vectors and notification slots that record
// what a device did with them. They implement the same interfaces the KVM-backed ones do (src/bus/pci-types.ts,
// src/bus/types.ts), so device tests exercise the device, not the fake. Not used outside tests.
import type { IrqLine } from '../../../src/bus/types.js';
import type { IoEventAddress, IoEventSlots, MsiVectors } from '../../../src/bus/pci-types.js';

/** GSI lines that remember their level and count edges. */
export class FakeIrqLines {
  readonly levels = new Map<number, boolean>();
  readonly sets: [number, boolean][] = [];
  line = (gsi: number): IrqLine => ({
    set: (level) => {
      this.levels.set(gsi, level);
      this.sets.push([gsi, level]);
    },
    pulse: () => {
      this.sets.push([gsi, true], [gsi, false]);
    },
  });
  level(gsi: number): boolean {
    return this.levels.get(gsi) ?? false;
  }
}

/** MSI vectors that record routes and deliveries. */
export class FakeMsi implements MsiVectors {
  readonly routes = new Map<number, { address: bigint; data: number }>();
  readonly fired: number[] = [];
  constructor(readonly count: number) {}
  route(vector: number, address: bigint, data: number): void {
    this.routes.set(vector, { address, data });
  }
  fire(vector: number): void {
    this.fired.push(vector);
  }
}

/** Notification slots: bindings kept, signals queued for the test to run as the I/O thread would. */
export class FakeIoEvents implements IoEventSlots {
  readonly bindings = new Map<number, IoEventAddress>();
  readonly signalled: number[] = [];
  constructor(readonly count: number) {}
  fd(index: number): number {
    return 1000 + index;
  }
  bind(index: number, at: IoEventAddress): void {
    this.bindings.set(index, at);
  }
  unbind(index: number): void {
    this.bindings.delete(index);
  }
  signal(index: number): void {
    this.signalled.push(index);
  }
  /** Takes the queued signals (each at most once, as an eventfd counter collapses repeats). */
  take(): number[] {
    const out = [...new Set(this.signalled)];
    this.signalled.length = 0;
    return out;
  }
}
