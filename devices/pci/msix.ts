// MSI-X (PCI Local Bus 3.0 §6.8.2): the capability in config space, the vector table and the pending-bit array
// (PBA) in a BAR, and delivery through the machine's MsiVectors (a KVM route + irqfd per vector).
//
// A vector delivers only when MSI-X is enabled, the function is not masked, its own mask bit is clear and the
// function may master the bus (MSI is a memory write); a masked vector's interrupt sets its PBA bit instead, and
// unmasking delivers it. The table and PBA bytes live in the function's record; the capability's control word in
// its config space.
import { bytes } from '../../cpr/vmstate/vmstate.js';
import type { IoHandler } from '../../src/bus/types.js';
import type { MsiVectors } from '../../src/bus/pci-types.js';
import type { PciConfigSpace } from './config-space.js';
import { PciConfigError, touches } from './config-space.js';
import * as R from './constants.js';

export interface MsixLayout {
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** The record fields MSI-X needs for up to `maxVectors` vectors: table (16 bytes each) and PBA (u64 words). */
export const msixFields = (maxVectors: number) =>
  [bytes('msixTable', maxVectors * R.PCI_MSIX_ENTRY_SIZE), bytes('msixPba', pbaBytes(maxVectors))] as const;

/** Bytes of a PBA for `vectors` vectors (whole u64 words). */
export function pbaBytes(vectors: number): number {
  return Math.ceil(vectors / 64) * 8;
}

/** The low end of the LAPIC window: an MSI is a write into 0xfee00000-0xfeefffff. */
const MSI_ADDRESS_BASE = 0xfee00000n;
const MSI_ADDRESS_MASK = 0xfff00000n;

export class MsixCapability {
  /** Offset of the capability in config space. */
  readonly offset: number;
  readonly vectors: number;
  private readonly view: DataView;

  constructor(
    private readonly config: PciConfigSpace,
    readonly layout: MsixLayout,
    private readonly table: Uint8Array,
    private readonly pba: Uint8Array,
    private readonly sink: MsiVectors,
  ) {
    const n = layout.vectors;
    if (!Number.isInteger(n) || n < 1 || n > R.PCI_MSIX_MAX_VECTORS) throw new PciConfigError(`MSI-X: ${n} vectors`);
    if (table.length < n * R.PCI_MSIX_ENTRY_SIZE || pba.length < pbaBytes(n))
      throw new PciConfigError('MSI-X: record too small for the table');
    if (sink.count < n) throw new PciConfigError(`MSI-X: ${n} vectors but only ${sink.count} routes`);
    if (layout.tableOffset & 7 || layout.pbaOffset & 7)
      throw new PciConfigError('MSI-X: table and PBA offsets must be 8-byte aligned');
    this.vectors = n;
    this.view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    this.offset = config.addCapability(R.PCI_CAP_ID_MSIX, R.PCI_CAP_MSIX_SIZEOF);
    config.setImage(this.offset + R.PCI_MSIX_FLAGS, 2, n - 1);
    config.setWritable(this.offset + R.PCI_MSIX_FLAGS, 2, R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL);
    config.setImage(this.offset + R.PCI_MSIX_TABLE, 4, (layout.tableOffset | layout.tableBar) >>> 0);
    config.setImage(this.offset + R.PCI_MSIX_PBA, 4, (layout.pbaOffset | layout.pbaBar) >>> 0);
  }

  /** Bytes the table and the PBA occupy in their BAR(s). */
  get tableSize(): number {
    return this.vectors * R.PCI_MSIX_ENTRY_SIZE;
  }

  get pbaSize(): number {
    return pbaBytes(this.vectors);
  }

  private get control(): number {
    return this.config.u16(this.offset + R.PCI_MSIX_FLAGS);
  }

  get enabled(): boolean {
    return (this.control & R.PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.control & R.PCI_MSIX_FLAGS_MASKALL) !== 0;
  }

  vectorMasked(v: number): boolean {
    return (
      (this.view.getUint32(v * R.PCI_MSIX_ENTRY_SIZE + R.PCI_MSIX_ENTRY_VECTOR_CTRL, true) &
        R.PCI_MSIX_ENTRY_CTRL_MASKBIT) !==
      0
    );
  }

  pending(v: number): boolean {
    return (this.pba[v >> 3] & (1 << (v & 7))) !== 0;
  }

  private setPending(v: number, on: boolean): void {
    if (on) this.pba[v >> 3] |= 1 << (v & 7);
    else this.pba[v >> 3] &= ~(1 << (v & 7));
  }

  /** The message vector v would write now. */
  message(v: number): { address: bigint; data: number } {
    const at = v * R.PCI_MSIX_ENTRY_SIZE;
    const lo = this.view.getUint32(at + R.PCI_MSIX_ENTRY_LOWER_ADDR, true);
    const hi = this.view.getUint32(at + R.PCI_MSIX_ENTRY_UPPER_ADDR, true);
    return { address: (BigInt(hi) << 32n) | BigInt(lo), data: this.view.getUint32(at + R.PCI_MSIX_ENTRY_DATA, true) };
  }

  private deliverable(v: number): boolean {
    return this.enabled && !this.functionMasked && !this.vectorMasked(v);
  }

  /**
   * Interrupt on vector `v`. Returns false when MSI-X is disabled (the device uses INTx instead). A masked vector
   * becomes pending; out-of-range vectors and a function that may not master the bus deliver nothing.
   */
  notify(v: number): boolean {
    if (!this.enabled) return false;
    if (!Number.isInteger(v) || v < 0 || v >= this.vectors) return true;
    if ((this.config.command & R.PCI_COMMAND_MASTER) === 0) return true;
    if (this.deliverable(v)) this.deliver(v);
    else this.setPending(v, true);
    return true;
  }

  private deliver(v: number): void {
    const { address, data } = this.message(v);
    if ((address & MSI_ADDRESS_MASK) !== MSI_ADDRESS_BASE) return; // not an interrupt: a DMA write we do not model
    this.sink.route(v, address, data);
    this.sink.fire(v);
  }

  /** Delivers every pending vector that may now be delivered (after an unmask or enable). */
  private flushPending(first = 0, last = this.vectors - 1): void {
    if (!this.enabled || this.functionMasked) return;
    for (let v = first; v <= last; v++) {
      if (this.pending(v) && !this.vectorMasked(v)) {
        this.setPending(v, false);
        if ((this.config.command & R.PCI_COMMAND_MASTER) !== 0) this.deliver(v);
      }
    }
  }

  /** After a config write: an enable or function-unmask releases pending vectors. */
  configWritten(offset: number, size: number): void {
    if (touches(offset, size, this.offset + R.PCI_MSIX_FLAGS, 2)) this.flushPending();
  }

  // ---- the table and PBA in their BAR -------------------------------------------------------------------------

  readTable(offset: number, size: number): number {
    if (offset < 0 || offset + size > this.tableSize) return 0;
    let value = 0;
    for (let i = 0; i < size && i < 4; i++) value |= this.table[offset + i] << (8 * i);
    return value >>> 0;
  }

  writeTable(offset: number, size: number, value: number): void {
    if (offset < 0 || offset + size > this.tableSize || size > 4) return;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      // Vector control: only the mask bit is defined; the rest stays zero.
      const ctrl = at % R.PCI_MSIX_ENTRY_SIZE >= R.PCI_MSIX_ENTRY_VECTOR_CTRL;
      let b = (value >>> (8 * i)) & 0xff;
      if (ctrl) b &= at % R.PCI_MSIX_ENTRY_SIZE === R.PCI_MSIX_ENTRY_VECTOR_CTRL ? R.PCI_MSIX_ENTRY_CTRL_MASKBIT : 0;
      this.table[at] = b;
    }
    const first = Math.floor(offset / R.PCI_MSIX_ENTRY_SIZE);
    const last = Math.floor((offset + size - 1) / R.PCI_MSIX_ENTRY_SIZE);
    // An unmasked vector whose message changed takes the new message from its next interrupt (route() compares).
    this.flushPending(first, last);
  }

  readPba(offset: number, size: number): number {
    if (offset < 0 || offset + size > this.pbaSize) return 0;
    let value = 0;
    for (let i = 0; i < size && i < 4; i++) value |= this.pba[offset + i] << (8 * i);
    return value >>> 0;
  }

  /** A handler for a BAR that holds the table at layout.tableOffset and the PBA at layout.pbaOffset. */
  barHandler(bar: number): IoHandler {
    const { tableBar, tableOffset, pbaBar, pbaOffset } = this.layout;
    return {
      read: (offset, size) => {
        if (bar === tableBar && offset >= tableOffset && offset < tableOffset + this.tableSize)
          return this.readTable(offset - tableOffset, size);
        if (bar === pbaBar && offset >= pbaOffset && offset < pbaOffset + this.pbaSize)
          return this.readPba(offset - pbaOffset, size);
        return 0;
      },
      write: (offset, size, value) => {
        if (bar === tableBar && offset >= tableOffset && offset < tableOffset + this.tableSize)
          this.writeTable(offset - tableOffset, size, value);
        // The PBA is read-only.
      },
    };
  }

  // ---- life cycle -------------------------------------------------------------------------------------------

  /** Power-on: every vector masked, nothing pending (config space is reset by its owner). */
  reset(): void {
    this.table.fill(0, 0, this.tableSize);
    for (let v = 0; v < this.vectors; v++) {
      this.table[v * R.PCI_MSIX_ENTRY_SIZE + R.PCI_MSIX_ENTRY_VECTOR_CTRL] = R.PCI_MSIX_ENTRY_CTRL_MASKBIT;
    }
    this.pba.fill(0, 0, this.pbaSize);
  }

  /** After a restore: program the routes of deliverable vectors now rather than at their first interrupt. */
  restored(): void {
    for (let v = 0; v < this.vectors; v++) {
      if (!this.deliverable(v)) continue;
      const { address, data } = this.message(v);
      if ((address & MSI_ADDRESS_MASK) === MSI_ADDRESS_BASE) this.sink.route(v, address, data);
    }
  }
}
