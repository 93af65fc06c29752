// The PCI host bridge: configuration access for bus 0 through the PC's type-1 mechanism (CONFIG_ADDRESS at 0xcf8,
// CONFIG_DATA at 0xcfc-0xcff, any width at any offset) and through ECAM (PCI Express "enhanced configuration access
// mechanism": 4 KiB of MMIO per function at base + (bus << 20 | device << 15 | function << 12)), the bridge's own
// function at 00:00.0, the BAR windows of the bus (see bus.ts), and Intel's reset control register at 0xcf9
// (Linux's reboot=pci writes 0x06 there).
//
// ECAM's base and bus count are parameters: the machine places it (QEMU's q35 uses 0xb0000000) and describes it in
// the ACPI MCFG table. Only bus 0 has devices; the other buses of the ECAM window read all-ones.
import { u8, u32, bytes } from '../../cpr/vmstate/vmstate.js';
import type { StateArena, StateOf } from '../../cpr/vmstate/vmstate.js';
import type { IoHandler, IoRegion, IrqLine, MachineControl } from '../../src/bus/types.js';
import { pciEnvironment, singleRecordDevice } from '../registration.js';
import { PciConfigSpace } from './config-space.js';
import { PciBus, type PciWindows, type PciIntxRouting } from './bus.js';
import type { PciFunction } from './types.js';
import * as R from './constants.js';

/** The host bridge's record: the type-1 address latch, the bus's shared words, and 00:00.0's config space. */
export const pciHostState = {
  name: 'pci-host',
  version: 1,
  minVersion: 1,
  fields: [
    u32('configAddress'),
    u8('resetControl'),
    u32('mappingGeneration'),
    u32('intxLevels'),
    bytes('config', R.PCIE_CONFIG_SPACE_SIZE),
  ],
} as const;

export type PciHostRecord = StateOf<typeof pciHostState>;

/** Where the host bridge is and what it forwards: plain data (it crosses to every thread in the device table). */
export interface PciHostConfig {
  readonly windows: PciWindows;
  /** ECAM window (bus 0 .. buses-1), or null for the type-1 mechanism only. */
  readonly ecam: { readonly base: number; readonly buses: number } | null;
  readonly intx?: PciIntxRouting;
}

/** MMIO bytes ECAM needs for `buses` buses. */
export const ecamSize = (buses: number): number => buses * (1 << 20);

export class PciHostBridge implements PciFunction {
  readonly name = 'pci-host-bridge';
  readonly config: PciConfigSpace;

  constructor(
    private readonly state: PciHostRecord,
    private readonly settings: PciHostConfig,
    readonly bus: PciBus,
    private readonly machine?: MachineControl,
  ) {
    const ecam = settings.ecam;
    if (
      ecam &&
      (!Number.isInteger(ecam.buses) || ecam.buses < 1 || ecam.buses > 256 || ecam.base % ecamSize(ecam.buses) !== 0)
    ) {
      throw new RangeError(
        `ECAM: ${ecam.buses} buses at 0x${ecam.base.toString(16)} (1..256 buses, base aligned to the window)`,
      );
    }
    this.config = new PciConfigSpace(state.config, {
      vendorId: R.PCI_VENDOR_ID_REDHAT,
      deviceId: R.PCI_DEVICE_ID_REDHAT_PCIE_HOST,
      revision: 0,
      classCode: R.PCI_CLASS_BRIDGE_HOST,
      subsystemVendorId: R.PCI_VENDOR_ID_REDHAT,
      subsystemId: 0x1100,
    });
    bus.attach(0, this);
  }

  bar(): IoHandler | undefined {
    return undefined;
  }

  // ---- type-1 mechanism ---------------------------------------------------------------------------------------

  /** 0xcf8-0xcfb: CONFIG_ADDRESS (dword accesses only) and the reset control register (byte at 0xcf9). */
  private readonly addressPort: IoHandler = {
    read: (offset, size) => {
      if (offset === 0 && size === 4) return this.state.configAddress;
      if (offset === 1 && size === 1) return this.state.resetControl;
      return 0xffffffff;
    },
    write: (offset, size, value) => {
      if (offset === 0 && size === 4) {
        // Bits 1:0 are reserved and read as zero.
        this.state.configAddress = (value & ~3) >>> 0;
      } else if (offset === 1 && size === 1) {
        const start = (value & R.RCR_RST_CPU) !== 0 && (this.state.resetControl & R.RCR_RST_CPU) === 0;
        this.state.resetControl = value & (R.RCR_SYS_RST | R.RCR_RST_CPU | 0x08);
        if (start) {
          this.state.resetControl = 0;
          this.machine?.reset('PCI reset control register (0xcf9)');
        }
      }
    },
  };

  /** 0xcfc-0xcff: CONFIG_DATA; the byte offset selects the byte lanes of the dword CONFIG_ADDRESS names. */
  private readonly dataPort: IoHandler = {
    read: (offset, size) => {
      const a = this.state.configAddress;
      if (!(a & R.PCI_CONFIG_ADDRESS_ENABLE) || size === 8) return 0xffffffff;
      return this.bus.configRead((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + offset, size);
    },
    write: (offset, size, value) => {
      const a = this.state.configAddress;
      if (!(a & R.PCI_CONFIG_ADDRESS_ENABLE) || size === 8) return;
      this.bus.configWrite((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + offset, size, value);
    },
  };

  // ---- ECAM -------------------------------------------------------------------------------------------------

  private readonly ecamHandler: IoHandler = {
    read: (offset, size) => {
      if (size === 8) return 0xffffffff;
      return this.bus.configRead(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, size);
    },
    write: (offset, size, value) => {
      if (size === 8) return;
      this.bus.configWrite(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, size, value);
    },
  };

  /** The ports, the ECAM window and the BAR windows. */
  regions(): IoRegion[] {
    const regions: IoRegion[] = [
      {
        name: 'pci-config-address',
        space: 'pio',
        base: R.PCI_CONFIG_ADDRESS_PORT,
        length: 4,
        handler: this.addressPort,
      },
      { name: 'pci-config-data', space: 'pio', base: R.PCI_CONFIG_DATA_PORT, length: 4, handler: this.dataPort },
    ];
    const ecam = this.settings.ecam;
    if (ecam)
      regions.push({
        name: 'pci-ecam',
        space: 'mmio',
        base: ecam.base,
        length: ecamSize(ecam.buses),
        handler: this.ecamHandler,
      });
    return [...regions, ...this.bus.regions()];
  }

  /** Power-on: no address latched, the bridge's config space as built. (Functions reset themselves.) */
  reset(): void {
    this.state.configAddress = 0;
    this.state.resetControl = 0;
    this.state.intxLevels = 0;
    this.state.mappingGeneration = (this.state.mappingGeneration + 1) >>> 0;
    this.config.reset();
  }

  /** After a restore (or reset): INTx lines driven as recorded, BAR lookups rebuilt in this thread. */
  restored(): void {
    this.bus.restored();
  }
}

/** The device table's spec of the host bridge. */
export interface PciHostSpec {
  readonly kind: 'pci-host';
  readonly id: string;
  readonly config: PciHostConfig;
}

/**
 * Always present, as on a PC. Every thread builds its PciBus over the bridge's record first (pciBusFor) and passes
 * it in its DeviceEnvironment; the bridge then puts itself in slot 0, each PCI function in its spec's slot.
 */
export const pciHostDevice = singleRecordDevice({
  kind: 'pci-host',
  descriptor: pciHostState,
  plan: ({ pciHost }: { pciHost: PciHostConfig }): PciHostSpec[] => [
    { kind: 'pci-host', id: 'pci-host', config: pciHost },
  ],
  create: (state, env, spec: PciHostSpec) => {
    const host = new PciHostBridge(state, spec.config, pciEnvironment(env, spec.id).pci, env.machine);
    return { regions: host.regions(), reset: () => host.reset(), restored: () => host.restored() };
  },
});

/** This thread's PCI bus over the host bridge's record, or null when the machine has no 'pci-host' device. */
export function pciBusFor(
  entries: readonly { readonly spec: { readonly kind: string }; readonly stateOffset: number }[],
  arena: StateArena,
  irq: (gsi: number) => IrqLine,
): PciBus | null {
  const host = entries.find((e) => e.spec.kind === 'pci-host');
  if (!host) return null;
  const { config } = host.spec as PciHostSpec;
  return new PciBus(arena.record(pciHostState, host.stateOffset), config.windows, irq, config.intx);
}
