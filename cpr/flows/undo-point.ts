// What a restore needs to undo itself: the machine's state just before the first change — the in-kernel chips, the
// PIT, the clock, every vCPU's state and every device record. A restore checks everything it can beforehand
// (snapshot.ts), but KVM still judges values (an MSR's value, special registers against each other) only when they
// are set; when it refuses one half-way, this puts the VM back as it was, so a refused checkpoint never leaves a
// half-restored VM. Guest RAM is not kept: a restore writes it last, after everything that can be refused.
import type { MachineParts } from '../../src/machine/machine.js';
import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC } from '../../kvm/bindings/constants.js';
import type { IrqchipState, PitState2, VcpuState } from '../../kvm/bindings/types.js';

/** The parts of the machine a restore changes, in the order it changes them. */
export type RestoredPart = 'kvm' | 'vcpus' | 'clock' | 'ram' | 'devices';

export interface UndoPoint {
  /**
   * Puts back the parts the restore had begun to change, and only those (a device left alone is not re-driven);
   * returns what could not be put back (empty when all was).
   */
  undo(touched: ReadonlySet<RestoredPart>): string[];
}

/** Reads the state to go back to (call with the machine parked, before the restore changes anything). */
export function undoPoint(parts: MachineParts): UndoPoint {
  const vm = parts.vm;
  const chips: IrqchipState[] = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC].map((chip) =>
    vm.getIrqchip(chip),
  );
  const pit: PitState2 = vm.getPit2();
  const clock = vm.getClock().clock;
  const vcpus: VcpuState[] = parts.vcpus.map((v) => v.getState());
  const devices = parts.devices.map((d) =>
    new Uint8Array(d.state.$buffer, d.state.$offset, d.state.$layout.size).slice(),
  );
  return {
    undo(touched) {
      const problems: string[] = [];
      const attempt = (what: string, put: () => void) => {
        try {
          put();
        } catch (e) {
          problems.push(`${what}: ${(e as Error).message}`);
        }
      };
      // The PIT first: it is what raises interrupts on its own (into the chips) until it is put back.
      if (touched.has('kvm')) attempt('PIT', () => vm.setPit2(pit));
      // The vCPUs have not run: each takes its old CPUID back too (a restore may have set the checkpoint's).
      if (touched.has('vcpus'))
        for (const [i, v] of parts.vcpus.entries()) attempt(`vcpu ${i}`, () => v.setState(vcpus[i]));
      if (touched.has('clock')) attempt('clock', () => vm.setClock({ clock }));
      if (touched.has('kvm')) for (const chip of chips) attempt(`irqchip ${chip.chipId}`, () => vm.setIrqchip(chip));
      // RAM is not kept: once its load began (only an I/O error stops it, or a device after it), say the VM is not back.
      if (touched.has('ram')) problems.push('guest RAM: overwritten (wholly or in part) from the checkpoint, not kept');
      if (touched.has('devices'))
        parts.lock.with(() => {
          for (const [i, d] of parts.devices.entries())
            new Uint8Array(d.state.$buffer, d.state.$offset, d.state.$layout.size).set(devices[i]);
          for (const d of parts.devices) attempt(`device ${d.descriptor.name}`, () => d.restored());
        });
      return problems;
    },
  };
}
