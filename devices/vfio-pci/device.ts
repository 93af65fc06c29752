// The model of a passed-through PCI function (QEMU's vfio-pci): a PciFunction over the guest's virtual config space
// (config.ts), whose BARs are partly KVM memory slots over the host device's mmapped regions (windows.ts) and
// partly trapped — forwarded to the device with pread/pwrite, except the MSI-X table and PBA, which are emulated —
// and whose interrupts are VFIO eventfds that KVM injects itself:
//
// - MSI / MSI-X: vector v's eventfd is its irqfd in the machine's MSI router (a GSI routed to the message the guest
//   programmed), so a device interrupt never reaches tsvmm. A vector the guest masks (MSI-X vector control, function
//   mask, MSI mask bits) is pointed at a second eventfd the I/O thread watches: its interrupt sets the pending bit,
//   and unmasking delivers it.
// - INTx: an eventfd bound to the pin's GSI by a resampling irqfd; the guest's EOI signals the resample fd, which
//   VFIO takes as its unmask (all in the kernel).
// - VFIO delivers one kind at a time: when the guest enables MSI-X or MSI (or disables both) the model disables the
//   old kind in VFIO and enables the new one.
//
// COMMAND's IO, MEMORY, MASTER, PARITY, SERR and INTX_DISABLE go to the device (bus mastering is what lets it DMA);
// MEMORY and IO also decide whether the BARs decode, and so whether their memory slots exist — removed before the
// device stops decoding, added after it starts (VFIO makes a BAR mmap fault while decoding is off).
//
// Threads: a vCPU thread runs config and BAR accesses, the I/O thread the pending eventfds, the main thread reset and
// restore; all under the machine lock, all over the record (state.ts). VFIO and KVM calls are process-wide.
import type { IoHandler } from '../../src/bus/types.js';
import type { IoWatch, MsiVectors } from '../../src/bus/pci-types.js';
import type { PciConfigSpace } from '../pci/config-space.js';
import { touches } from '../pci/config-space.js';
import * as R from '../pci/constants.js';
import type { MappedBar, PciFunction, PciSlot } from '../pci/types.js';
import { type MsiLayout, type MsixInfo, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, virtualConfig } from './config.js';
import {
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  type VfioBarSlots,
  type VfioDeviceOps,
  type VfioPciSpec,
  vfioAdoption,
} from './host.js';
import { IRQ_INTX, IRQ_MSI, IRQ_MSIX, IRQ_NONE, VFIO_PCI_MAX_VECTORS, type VfioPciRecord } from './state.js';

/** COMMAND bits the device sees (the rest stay virtual). */
export const PASSED_COMMAND_BITS =
  R.PCI_COMMAND_IO |
  R.PCI_COMMAND_MEMORY |
  R.PCI_COMMAND_MASTER |
  R.PCI_COMMAND_PARITY |
  R.PCI_COMMAND_SERR |
  R.PCI_COMMAND_INTX_DISABLE;

const IRQ_INDEX: Record<number, number> = {
  [IRQ_INTX]: VFIO_PCI_INTX_IRQ_INDEX,
  [IRQ_MSI]: VFIO_PCI_MSI_IRQ_INDEX,
  [IRQ_MSIX]: VFIO_PCI_MSIX_IRQ_INDEX,
};

export interface VfioPciOptions {
  readonly pci: { attach(slot: number, fn: PciFunction): PciSlot };
  /** The vectors of spec.msi (null when the function has neither MSI nor MSI-X). */
  readonly msi: MsiVectors | null;
  readonly ops: VfioDeviceOps;
  readonly slots: VfioBarSlots;
  readonly log?: (line: string) => void;
}

export class VfioPciFunction implements PciFunction {
  readonly name: string;
  readonly config: PciConfigSpace;
  /** INTx goes from VFIO to KVM directly; the STATUS.INTERRUPT mirrored from the device must not drive the GSI. */
  readonly externalIntx = true;
  readonly msiCap: MsiLayout | null;
  readonly msixCap: MsixInfo | null;
  /** Vectors the irqfds cover (MSI-X's table size may exceed what the record or the router holds). */
  private readonly msixVectors: number;
  private readonly table: DataView;
  private readonly handlers: (IoHandler | undefined)[] = [];
  private readonly slot: PciSlot;
  private readonly scratch = new Uint8Array(4);

  constructor(
    private readonly state: VfioPciRecord,
    private readonly spec: VfioPciSpec,
    private readonly options: VfioPciOptions,
  ) {
    this.name = spec.id;
    const built = virtualConfig(state.config, spec.config, spec.bars, new Map(spec.barAddresses), spec.romSize);
    this.config = built.config;
    this.msiCap = built.caps.msi;
    this.msixCap = built.caps.msix;
    this.msixVectors = Math.min(this.msixCap?.vectors ?? 0, VFIO_PCI_MAX_VECTORS, spec.vectorFds.length);
    this.table = new DataView(state.msixTable.buffer, state.msixTable.byteOffset, state.msixTable.byteLength);
    for (const bar of spec.bars) {
      if (!this.config.barLayout(bar.index)) continue;
      this.handlers[bar.index] = {
        read: (offset, size) => this.readBar(bar.index, bar.size, offset, size),
        write: (offset, size, value) => this.writeBar(bar.index, bar.size, offset, size, value),
      };
    }
    if (this.config.romSize) {
      const size = this.config.romSize;
      this.handlers[R.PCI_ROM_SLOT] = {
        read: (offset, bytes) => this.readBar(VFIO_PCI_ROM_REGION_INDEX, size, offset, bytes),
        write: () => {}, // read-only memory
      };
    }
    this.slot = options.pci.attach(spec.slot, this);
  }

  bar(index: number): IoHandler | undefined {
    return this.handlers[index];
  }

  // ---- trapped BAR accesses ---------------------------------------------------------------------------------

  private inTable(bar: number, offset: number): boolean {
    const m = this.msixCap;
    return !!m && bar === m.tableBar && offset >= m.tableOffset && offset < m.tableOffset + m.vectors * 16;
  }

  private inPba(bar: number, offset: number): boolean {
    const m = this.msixCap;
    return !!m && bar === m.pbaBar && offset >= m.pbaOffset && offset < m.pbaOffset + Math.ceil(m.vectors / 64) * 8;
  }

  private readBar(bar: number, barSize: number, offset: number, size: number): number {
    if (offset < 0 || size < 1 || size > 4 || offset + size > barSize) return 0xffffffff >>> (32 - 8 * size);
    if (this.inTable(bar, offset)) return this.readTable(offset - this.msixCap!.tableOffset, size);
    if (this.inPba(bar, offset)) return this.readPba(offset - this.msixCap!.pbaOffset, size);
    const into = this.scratch.subarray(0, size);
    try {
      this.options.ops.read(bar, offset, into);
    } catch (e) {
      this.options.log?.(`${this.name}: BAR ${bar} read at 0x${offset.toString(16)}: ${(e as Error).message}`);
      return 0xffffffff >>> (32 - 8 * size);
    }
    let value = 0;
    for (let i = 0; i < size; i++) value |= into[i] << (8 * i);
    return value >>> 0;
  }

  private writeBar(bar: number, barSize: number, offset: number, size: number, value: number): void {
    if (offset < 0 || size < 1 || size > 4 || offset + size > barSize) return;
    if (this.inTable(bar, offset)) {
      this.writeTable(offset - this.msixCap!.tableOffset, size, value);
      return;
    }
    if (this.inPba(bar, offset)) return; // read-only
    const bytes = this.scratch.subarray(0, size);
    for (let i = 0; i < size; i++) bytes[i] = (value >>> (8 * i)) & 0xff;
    try {
      this.options.ops.write(bar, offset, bytes);
    } catch (e) {
      this.options.log?.(`${this.name}: BAR ${bar} write at 0x${offset.toString(16)}: ${(e as Error).message}`);
    }
  }

  // ---- the MSI-X table and PBA (emulated) ---------------------------------------------------------------------

  private readTable(offset: number, size: number): number {
    if (offset + size > this.msixCap!.vectors * 16 || offset + size > this.state.msixTable.length) return 0;
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.state.msixTable[offset + i] << (8 * i);
    return value >>> 0;
  }

  private writeTable(offset: number, size: number, value: number): void {
    const table = this.state.msixTable;
    if (offset + size > this.msixCap!.vectors * 16 || offset + size > table.length) return;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      let b = (value >>> (8 * i)) & 0xff;
      // Vector control: only the mask bit is defined.
      if (at % 16 >= R.PCI_MSIX_ENTRY_VECTOR_CTRL)
        b &= at % 16 === R.PCI_MSIX_ENTRY_VECTOR_CTRL ? R.PCI_MSIX_ENTRY_CTRL_MASKBIT : 0;
      table[at] = b;
    }
    if (this.state.irqMode !== IRQ_MSIX) return;
    const first = Math.floor(offset / 16);
    const last = Math.floor((offset + size - 1) / 16);
    for (let v = first; v <= last && v < this.msixVectors; v++) this.syncVector(v);
  }

  private readPba(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size && offset + i < this.state.msixPba.length; i++)
      value |= this.state.msixPba[offset + i] << (8 * i);
    return value >>> 0;
  }

  // ---- interrupts ---------------------------------------------------------------------------------------------

  private get msixControl(): number {
    return this.msixCap ? this.config.u16(this.msixCap.offset + R.PCI_MSIX_FLAGS) : 0;
  }

  private get msiControl(): number {
    return this.msiCap ? this.config.u16(this.msiCap.offset + PCI_MSI_FLAGS) : 0;
  }

  /** The interrupt kind the guest's config asks for now. */
  private wantedMode(): number {
    if (this.msixVectors > 0 && this.msixControl & R.PCI_MSIX_FLAGS_ENABLE) return IRQ_MSIX;
    if (this.msiCap && this.spec.vectorFds.length > 0 && this.msiControl & PCI_MSI_FLAGS_ENABLE) return IRQ_MSI;
    return this.spec.intx && this.config.interruptPin ? IRQ_INTX : IRQ_NONE;
  }

  /** MSI vectors the guest enabled (2^MME, within what the function and the router have). */
  private msiVectors(): number {
    const mme = (this.msiControl >> 4) & 7;
    return Math.min(1 << Math.min(mme, 5), this.msiCap?.vectors ?? 0, this.spec.vectorFds.length);
  }

  private vectorCount(mode: number): number {
    return mode === IRQ_MSIX ? this.msixVectors : mode === IRQ_MSI ? this.msiVectors() : 0;
  }

  /** The message vector v sends now (MSI: the data's low bits carry the vector number). */
  message(v: number): { address: bigint; data: number } {
    if (this.state.irqMode === IRQ_MSIX) {
      const at = v * 16;
      const lo = this.table.getUint32(at + R.PCI_MSIX_ENTRY_LOWER_ADDR, true);
      const hi = this.table.getUint32(at + R.PCI_MSIX_ENTRY_UPPER_ADDR, true);
      return {
        address: (BigInt(hi) << 32n) | BigInt(lo),
        data: this.table.getUint32(at + R.PCI_MSIX_ENTRY_DATA, true),
      };
    }
    const m = this.msiCap!;
    const lo = this.config.u32(m.addressLo);
    const hi = m.addressHi !== null ? this.config.u32(m.addressHi) : 0;
    const n = this.msiVectors();
    const data = (this.config.u16(m.data) & ~(n - 1)) | v;
    return { address: (BigInt(hi) << 32n) | BigInt(lo), data };
  }

  /** Whether the guest lets vector v interrupt now. */
  private unmasked(v: number): boolean {
    if (this.state.irqMode === IRQ_MSIX) {
      if (this.msixControl & R.PCI_MSIX_FLAGS_MASKALL) return false;
      return (this.table.getUint32(v * 16 + R.PCI_MSIX_ENTRY_VECTOR_CTRL, true) & R.PCI_MSIX_ENTRY_CTRL_MASKBIT) === 0;
    }
    const m = this.msiCap!;
    return m.mask === null || (this.config.u32(m.mask) & (1 << v)) === 0;
  }

  private isLive(v: number): boolean {
    return (this.state.vectorLive[v >> 3] & (1 << (v & 7))) !== 0;
  }

  private setLive(v: number, on: boolean): void {
    if (on) this.state.vectorLive[v >> 3] |= 1 << (v & 7);
    else this.state.vectorLive[v >> 3] &= ~(1 << (v & 7));
  }

  pending(v: number): boolean {
    if (this.state.irqMode === IRQ_MSIX) return (this.state.msixPba[v >> 3] & (1 << (v & 7))) !== 0;
    return (this.state.msiPending & (1 << v)) !== 0;
  }

  private setPending(v: number, on: boolean): void {
    if (this.state.irqMode === IRQ_MSIX) {
      if (on) this.state.msixPba[v >> 3] |= 1 << (v & 7);
      else this.state.msixPba[v >> 3] &= ~(1 << (v & 7));
      return;
    }
    const bits = on ? this.state.msiPending | (1 << v) : this.state.msiPending & ~(1 << v);
    this.state.msiPending = bits >>> 0;
    const at = this.msiCap?.pending;
    if (at != null) for (let i = 0; i < 4; i++) this.config.bytes[at + i] = (bits >>> (8 * i)) & 0xff;
  }

  /** Points VFIO's vector v at its irqfd (unmasked: routed to its message) or at its pending eventfd (masked). */
  private syncVector(v: number): void {
    const msi = this.options.msi;
    if (!msi) return;
    const live = this.unmasked(v);
    if (live) {
      const { address, data } = this.message(v);
      msi.route(v, address, data);
    }
    if (live !== this.isLive(v)) {
      const fd = live ? this.spec.vectorFds[v] : this.spec.pendingFds[v];
      this.setIrqs(IRQ_INDEX[this.state.irqMode], v, [fd]);
      this.setLive(v, live);
    }
    if (live && this.pending(v)) {
      this.setPending(v, false);
      msi.fire(v);
    }
  }

  private setIrqs(index: number, start: number, fds: readonly number[]): void {
    try {
      this.options.ops.setIrqs(index, start, fds);
    } catch (e) {
      this.options.log?.(`${this.name}: VFIO_DEVICE_SET_IRQS ${index} ${start}+${fds.length}: ${(e as Error).message}`);
    }
  }

  private disable(mode: number): void {
    if (mode === IRQ_NONE) return;
    try {
      this.options.ops.disableIrqs(IRQ_INDEX[mode]);
    } catch (e) {
      this.options.log?.(`${this.name}: disabling VFIO interrupt index ${IRQ_INDEX[mode]}: ${(e as Error).message}`);
    }
  }

  /**
   * Follows the guest's MSI / MSI-X / INTx choice: a change of kind (or of MSI's vector count) disables the old one
   * in VFIO and enables the new one, every vector pointed at the eventfd its mask says; otherwise each vector's
   * route and mask are brought up to date.
   */
  private updateInterrupts(): void {
    const mode = this.wantedMode();
    const count = this.vectorCount(mode);
    if (mode !== this.state.irqMode || count !== this.state.irqVectors) {
      this.disable(this.state.irqMode);
      this.state.irqMode = mode;
      this.state.irqVectors = count;
      this.state.vectorLive.fill(0);
      if (mode === IRQ_INTX) {
        const intx = this.spec.intx!;
        this.setIrqs(VFIO_PCI_INTX_IRQ_INDEX, 0, [intx.trigger]);
        try {
          this.options.ops.setIntxResample(intx.resample);
        } catch (e) {
          this.options.log?.(`${this.name}: INTx unmask eventfd: ${(e as Error).message}`);
        }
        return;
      }
      if (mode === IRQ_NONE) return;
      const fds: number[] = [];
      for (let v = 0; v < count; v++) {
        const live = this.unmasked(v);
        fds.push(live ? this.spec.vectorFds[v] : this.spec.pendingFds[v]);
        this.setLive(v, live);
        if (live) {
          const { address, data } = this.message(v);
          this.options.msi?.route(v, address, data);
        }
      }
      this.setIrqs(IRQ_INDEX[mode], 0, fds);
    }
    if (mode === IRQ_MSI || mode === IRQ_MSIX) for (let v = 0; v < count; v++) this.syncVector(v);
  }

  /** I/O thread: masked vector v interrupted (its pending eventfd fired). */
  private maskedInterrupt(v: number): void {
    if (v >= this.state.irqVectors) return;
    if (this.unmasked(v))
      this.options.msi?.fire(v); // unmasked since VFIO was told: deliver
    else this.setPending(v, true);
  }

  // ---- config space side effects ------------------------------------------------------------------------------

  private pushCommand(): void {
    // Adopted and not restored yet: the device serves the guest in the old process as that one set it.
    if (vfioAdoption.phase === 'inherited') return;
    const value = this.config.command & PASSED_COMMAND_BITS;
    try {
      this.options.ops.write(VFIO_PCI_CONFIG_REGION_INDEX, R.PCI_COMMAND, Uint8Array.of(value & 0xff, value >>> 8));
    } catch (e) {
      this.options.log?.(`${this.name}: COMMAND write to the device: ${(e as Error).message}`);
    }
  }

  /** STATUS.INTERRUPT is the device's: whether it asserts INTx# now (even while INTX_DISABLE holds it back). */
  configReading(offset: number, size: number): void {
    if (!touches(offset, size, R.PCI_STATUS, 2) || !this.config.interruptPin) return;
    const status = this.scratch.subarray(0, 2);
    try {
      this.options.ops.read(VFIO_PCI_CONFIG_REGION_INDEX, R.PCI_STATUS, status);
    } catch {
      return;
    }
    this.config.setStatusBits(R.PCI_STATUS_INTERRUPT, (status[0] & R.PCI_STATUS_INTERRUPT) !== 0);
  }

  configWritten(offset: number, size: number): void {
    if (touches(offset, size, R.PCI_COMMAND, 2)) this.pushCommand();
    const msix = this.msixCap;
    const msi = this.msiCap;
    if (
      (msix && touches(offset, size, msix.offset, R.PCI_CAP_MSIX_SIZEOF)) ||
      (msi && touches(offset, size, msi.offset, (msi.pending ?? msi.data) + 4 - msi.offset))
    ) {
      this.updateInterrupts();
    }
  }

  /**
   * BARs moved or decoding changed: memory slots that go are removed first, then the device is told COMMAND, then
   * the new ones are placed (a window whose slot KVM refuses — over RAM, say — stays trapped and still works).
   */
  barsMapped(bars: readonly (MappedBar | null)[]): void {
    const want = this.spec.windows.map((w) => {
      const bar = bars[w.bar];
      return bar && bar.kind !== 'io' ? bar.address + w.offset : 0;
    });
    for (const [k, gpa] of want.entries()) {
      const now = Number(this.state.windowGpa[k]);
      if (now !== 0 && now !== gpa) {
        this.options.slots.unmap(k);
        this.state.windowGpa[k] = 0n;
      }
    }
    this.pushCommand();
    for (const [k, gpa] of want.entries()) {
      if (gpa === 0 || Number(this.state.windowGpa[k]) === gpa) continue;
      try {
        this.options.slots.map(k, gpa);
        this.state.windowGpa[k] = BigInt(gpa);
      } catch (e) {
        this.options.log?.(
          `${this.name}: BAR ${this.spec.windows[k].bar} at 0x${gpa.toString(16)} stays trapped: ${(e as Error).message}`,
        );
      }
    }
  }

  // ---- life cycle -----------------------------------------------------------------------------------------------

  /** Power-on (main thread, vCPUs parked): device reset through VFIO, interrupts off, the config space's image. */
  reset(): void {
    for (let k = 0; k < this.spec.windows.length; k++) {
      if (this.state.windowGpa[k] !== 0n) this.options.slots.unmap(k);
      this.state.windowGpa[k] = 0n;
    }
    // Adopted from an old process (CPR): the device runs on as it is; only the virtual state starts over, until the
    // old process's state is restored.
    const adopted = vfioAdoption.phase !== 'none';
    if (!adopted) this.disable(this.state.irqMode);
    this.state.irqMode = IRQ_NONE;
    this.state.irqVectors = 0;
    if (this.spec.canReset && !adopted) {
      try {
        this.options.ops.reset();
      } catch (e) {
        this.options.log?.(`${this.name}: VFIO_DEVICE_RESET: ${(e as Error).message}`);
      }
    }
    this.config.reset();
    this.state.msixTable.fill(0);
    for (let v = 0; v < this.msixVectors; v++) this.state.msixTable[v * 16 + R.PCI_MSIX_ENTRY_VECTOR_CTRL] = 1;
    this.state.msixPba.fill(0);
    this.state.vectorLive.fill(0);
    this.state.msiPending = 0;
    this.slot.configChanged();
  }

  /**
   * After a reset or a checkpoint load (main thread): what VFIO and KVM were told is not trusted (a new process has
   * none of it), so every interrupt index is disabled and set again from the record, and every window placed again.
   */
  restored(): void {
    for (let k = 0; k < this.spec.windows.length; k++) this.state.windowGpa[k] = 0n;
    if (vfioAdoption.phase === 'inherited') {
      // A warm-up or power-on restore in a process that adopted a running device: VFIO is not touched.
      this.slot.configChanged();
      return;
    }
    if (vfioAdoption.phase === 'rewire') {
      this.rewire();
      this.slot.configChanged();
      return;
    }
    // What VFIO has enabled is not necessarily the record's kind any more (a load replaced the record; the power-on
    // restore enabled INTx): every kind is disabled, those not enabled refuse quietly (EINVAL).
    for (const mode of [IRQ_INTX, IRQ_MSI, IRQ_MSIX]) {
      try {
        this.options.ops.disableIrqs(IRQ_INDEX[mode]);
      } catch {
        /* not enabled */
      }
    }
    this.state.irqMode = IRQ_NONE;
    this.state.irqVectors = 0;
    this.updateInterrupts();
    this.slot.configChanged();
  }

  /**
   * CPR: the device, adopted from the old process, still delivers what the record says (irqMode, irqVectors,
   * vectorLive) but to the old process's eventfds. VFIO_DEVICE_SET_IRQS on the enabled index swaps each vector's
   * eventfd without disabling it (vfio_msi_set_block), so the device never sees its interrupts switched off. A vector
   * the device raised during the pause went to the old VM: each unmasked vector is delivered once (a spurious
   * interrupt is harmless to a driver, a lost one stalls it).
   */
  private rewire(): void {
    const mode = this.state.irqMode;
    if (mode === IRQ_INTX) {
      const intx = this.spec.intx!;
      this.setIrqs(VFIO_PCI_INTX_IRQ_INDEX, 0, [intx.trigger]);
      try {
        // VFIO holds one unmask eventfd per INTx enable and refuses another (EBUSY): the old process's, signalled by
        // the old VM's resampler, goes first. Nothing is lost in between: the guest is paused, so no EOI comes.
        this.options.ops.setIntxResample(-1);
        this.options.ops.setIntxResample(intx.resample);
      } catch (e) {
        this.options.log?.(`${this.name}: INTx unmask eventfd: ${(e as Error).message}`);
      }
      return;
    }
    if (mode !== IRQ_MSI && mode !== IRQ_MSIX) return;
    const count = this.state.irqVectors;
    const fds: number[] = [];
    for (let v = 0; v < count; v++) {
      const live = this.isLive(v);
      fds.push(live ? this.spec.vectorFds[v] : this.spec.pendingFds[v]);
      if (live) {
        const { address, data } = this.message(v);
        this.options.msi?.route(v, address, data);
      }
    }
    if (count > 0) this.setIrqs(IRQ_INDEX[mode], 0, fds);
    for (let v = 0; v < count; v++) if (this.isLive(v)) this.options.msi?.fire(v);
  }

  /** I/O thread: the pending eventfds of masked vectors. */
  ioWatches(): IoWatch[] {
    return this.spec.pendingFds.map((fd, v) => ({
      name: `${this.name} vector ${v} (masked)`,
      fd,
      kind: 'eventfd' as const,
      group: this.name,
      ready: () => this.maskedInterrupt(v),
    }));
  }
}
