// What the power and reset lines and the firmware do to a machine: return the in-kernel chips, vCPUs and devices to
// power-on, boot the guest, resume it from S3 at its waking vector, press the ACPI power button.
//
// The guest image is loaded when the VM first runs, not when it is created — as firmware loads it at boot — so a VM
// created to receive a checkpoint (-S / -incoming) never has its restored RAM overwritten by the image.
import type { Vm } from '../../kvm/vm.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC } from '../../kvm/bindings/constants.js';
import type { IrqchipState, PitState2, VcpuState } from '../../kvm/bindings/types.js';
import { readWakingVector } from '../boot/acpi/facs.js';
import type { WakeReason } from '../../devices/acpi-pm.js';
import type { WakeEventSource } from '../bus/types.js';
import type { MachineRam } from '../memory/config.js';
import type { MachineLock } from '../sync/lock.js';
import type { MachineDevice } from '../runtime/device-table.js';
import { loadBoot, type LoadedImages } from './boot.js';
import { writePlatformTables, type Platform } from './platform.js';
import type { MachineConfig } from './config.js';

/** Power-on state of the in-kernel chips and vCPUs, to return to on a reset. */
export interface PowerOnState {
  readonly vcpus: VcpuState[];
  readonly irqchips: IrqchipState[];
  readonly pit: PitState2;
}

/** Reads the power-on state of a VM just created (before any vCPU ran). */
export function readPowerOnState(vm: Vm, vcpus: readonly Vcpu[]): PowerOnState {
  return {
    vcpus: vcpus.map((v) => v.getState()),
    irqchips: [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC].map((chip) => vm.getIrqchip(chip)),
    pit: vm.getPit2(),
  };
}

export interface PowerParts {
  readonly config: MachineConfig;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly memory: MachineRam['ram'];
  readonly devices: readonly MachineDevice[];
  readonly lock: MachineLock;
  /** The e820 map, MP/ACPI tables and PM block the guest is told about. */
  readonly platform: Platform;
  readonly images: LoadedImages | null;
  readonly powerOn: PowerOnState;
  readonly log: (line: string) => void;
}

/** Every method expects the vCPUs (and the I/O thread) parked. */
export class PowerControl {
  /** True once the guest has been booted or restored: the image must not be loaded (again) on the next run. */
  private booted = false;

  constructor(private readonly p: PowerParts) {}

  get powerOn(): PowerOnState {
    return this.p.powerOn;
  }

  /** Devices to their power-on state, or for a guest reset to what survives one. */
  resetDevices(kind: 'power-on' | 'system'): void {
    this.p.lock.with(() => {
      for (const d of this.p.devices) {
        if (kind === 'system' && d.systemReset) d.systemReset();
        else d.reset();
        d.restored();
      }
    });
  }

  /** The reset button: chips, vCPUs and devices as at power-on; the guest boots again when it next runs. */
  systemReset(): void {
    this.resetPlatform();
    this.booted = false;
  }

  /** Boots the guest unless it has booted or been restored since the last reset; true if it booted now. */
  bootOnce(): boolean {
    if (this.booted) return false;
    this.boot();
    return true;
  }

  /** Writes the guest image into RAM and points the boot vCPU at it. */
  boot(): void {
    this.booted = true;
    // The MP and ACPI tables, as firmware leaves them: written at every boot (a guest may reuse the memory).
    writePlatformTables(this.p.platform, this.p.memory);
    const { config, images } = this.p;
    if (!config.boot || !images) return;
    const boot = loadBoot(config.boot, images, this.p.memory, this.p.platform);
    const bsp = this.p.vcpus[0];
    bsp.setSregs({ ...bsp.getSregs(), ...boot.sregs });
    bsp.setRegs({ ...bsp.getRegs(), ...boot.regs });
  }

  /** RAM and vCPUs hold a guest restored from a checkpoint: the image is not loaded when the vCPUs next run. */
  markRestored(): void {
    this.booted = true;
  }

  /**
   * Wakes a suspended guest as firmware does on an S3 resume: the platform is reset (in-kernel chips and vCPUs to
   * power-on, devices as after a reset; RAM untouched) and the boot vCPU starts in real mode at the waking vector
   * the guest left in its FACS. Without a usable vector the guest boots again.
   */
  resumeFromS3(reason: WakeReason): void {
    this.resetPlatform();
    const pm = this.p.devices.find((d) => d.wake);
    this.p.lock.with(() => pm?.wake?.(reason));
    const facs = this.p.platform.facsAddress;
    const vector = facs === null ? null : readWakingVector(this.p.memory, facs);
    if (vector?.kind === 'real') {
      // The boot CPU enters the waking vector in real mode, CS:IP from the FACS.
      const bsp = this.p.vcpus[0];
      const sregs = bsp.getSregs();
      bsp.setSregs({ ...sregs, cs: { ...sregs.cs, selector: vector.cs, base: BigInt(vector.cs << 4) } });
      bsp.setRegs({ ...bsp.getRegs(), rip: BigInt(vector.ip) });
      this.booted = true;
      return;
    }
    if (vector && vector.kind !== 'none') {
      const why = vector.kind === 'invalid' ? vector.reason : `a ${vector.kind} waking vector is not supported`;
      this.p.log(`S3 resume: ${why}; booting again`);
    }
    this.booted = false;
  }

  /** True if the guest enabled wake-ups from `source` (ACPI PM1_EN), as the chipset checks. */
  wakeEnabled(source: WakeEventSource): boolean {
    const pm = this.p.devices.find((d) => d.wakeEnabled);
    return this.p.lock.with(() => pm?.wakeEnabled?.(source) ?? false);
  }

  /** The ACPI power button; nothing reaches a guest without ACPI or one that has not enabled the button. */
  pressPowerButton(): void {
    const pm = this.p.devices.find((d) => d.powerButton);
    this.p.lock.with(() => pm?.powerButton?.());
  }

  private resetPlatform(): void {
    for (const chip of this.p.powerOn.irqchips) this.p.vm.setIrqchip(chip);
    this.p.vm.setPit2(this.p.powerOn.pit);
    // Registers, MSRs, LAPIC and events back to power-on; the CPUID table stays (set once at creation, as in QEMU:
    // KVM refuses to change it on a vCPU that has run).
    for (const [i, v] of this.p.vcpus.entries()) v.setState(this.p.powerOn.vcpus[i], { cpuid: false });
    this.resetDevices('system');
  }
}
