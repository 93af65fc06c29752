// Interrupt lines into KVM's in-kernel irqchip. Any thread may drive one: KVM_IRQ_LINE on the VM fd is a plain
// ioctl, and the kernel serialises it. With the default routing a GSI below 16 drives both the PIC input and the
// IOAPIC pin of the same number, so ISA devices need nothing else.
import { ioctlPtr } from '../sys/libc.js';
import { KVM_IRQ_LINE } from '../../kvm/bindings/ioctls.js';
import { encodeIrqLevel } from '../../kvm/bindings/codec-vm.js';
import type { IrqLine } from '../bus/types.js';

export class KvmIrqLine implements IrqLine {
  // Two ready-made kvm_irq_level structs: raising or lowering allocates nothing.
  private readonly high: Uint8Array;
  private readonly low: Uint8Array;

  constructor(
    private readonly vmFd: number,
    readonly gsi: number,
  ) {
    this.high = encodeIrqLevel(gsi, 1);
    this.low = encodeIrqLevel(gsi, 0);
  }

  set(level: boolean): void {
    ioctlPtr(this.vmFd, KVM_IRQ_LINE, level ? this.high : this.low, 'KVM_IRQ_LINE');
  }

  /** An edge: raise then lower, as an ISA device's edge-triggered pulse reaches the PIC/IOAPIC. */
  pulse(): void {
    this.set(true);
    this.set(false);
  }
}

/** One line object per GSI per thread. */
export function irqLines(vmFd: number): (gsi: number) => IrqLine {
  const lines = new Map<number, IrqLine>();
  return (gsi) => {
    let line = lines.get(gsi);
    if (!line) {
      line = new KvmIrqLine(vmFd, gsi);
      lines.set(gsi, line);
    }
    return line;
  };
}
