// The machine's parts list: which devices a configuration gets, where they sit and what host resources they use
// (chardevs, the MSI router and ioeventfds of the PCI functions, disk images, taps), and the platform description
// (e820, ACPI and MP tables) that tells the guest about them.
//
// The board decides what only it can (where the PCI host bridge forwards, what fw_cfg serves, where the ACPI PM block
// sits, which PCI slot, MSI vectors and host resources each virtio function gets) and hands those decisions with the
// configuration to every registered kind of device (src/runtime/device-kinds.ts), in list order; what they return is
// the device table. Each kind reads only its own part of the context (its registration's `plan` parameter says which).
import { closeSync } from 'node:fs';
import type { FwCfgBlob } from '../../devices/fw-cfg.js';
import type { PciHostConfig } from '../../devices/pci/host-bridge.js';
import type { OpenChardev } from '../../devices/registration.js';
import type { VirtioPciSpec } from '../../devices/virtio/virtio-pci.js';
import type { VfioPciSpec } from '../../devices/vfio-pci/host.js';
import { DEFAULT_INTX_ROUTING } from '../../devices/pci/bus.js';
import type { MachineRam } from '../memory/config.js';
import { DEVICE_KINDS, type DeviceSpec } from '../runtime/device-kinds.js';
import { MsiRouter } from '../runtime/msi-router.js';
import { IoEventRegistry } from '../runtime/ioevent-registry.js';
import { planPlatform, type Platform } from './platform.js';
import { buildFwCfg } from './fw-cfg-content.js';
import { defaultPciHostConfig, ecamRange } from './pci-plan.js';
import { planVirtioDevices, type VirtioPlan } from './virtio-plan.js';
import { planVfioDevices } from './vfio-plan.js';
import { forgetAcrossExec, takeInheritedFd } from '../sys/exec-fds.js';
import { hostVfioApi } from './vfio-api.js';
import { vmRoutingOps } from '../runtime/msi-router.js';
import type { MachineConfig } from './config.js';
import type { Teardown } from './teardown.js';

export interface DeviceSpecsHost {
  readonly vmFd: number;
  readonly ram: Pick<MachineRam, 'regions'>;
  readonly log?: (line: string) => void;
  /** Opens a chardev and returns its id in the machine's chardev table. */
  readonly openChardev: OpenChardev;
  /** Taps already open, by interface name (cpr-transfer); the plan owns them from now on. */
  readonly taps?: ReadonlyMap<string, number>;
  /** Where the plan registers the release of what it opens. */
  readonly teardown: Pick<Teardown, 'add'>;
}

export interface DevicePlan {
  readonly specs: DeviceSpec[];
  readonly platform: Platform;
  /** MSI vectors (GSI routes + irqfds) and queue-notification eventfds of the PCI devices. */
  readonly msi: MsiRouter;
  readonly ioEvents: IoEventRegistry;
  /** The virtio functions' host fds, taps and console inputs. */
  readonly virtio: VirtioPlan;
}

/** Everything a kind of device may read when it plans its devices (each reads a slice; see its `plan`). */
export interface DevicePlanContext {
  readonly config: MachineConfig;
  /** Guest RAM as mapped. */
  readonly ram: readonly { readonly gpa: number; readonly size: number }[];
  readonly openChardev: OpenChardev;
  /** What fw_cfg serves (QEMU's pc items, built from the configuration). */
  fwCfg(): FwCfgBlob;
  readonly pciHost: PciHostConfig;
  /** Opens the virtio functions' host resources (images, taps, consoles' chardevs) and places them on bus 0. */
  virtioFunctions(): Promise<readonly VirtioPciSpec[]>;
  /** Opens the passed-through functions (VFIO container, groups, devices; DMA map) and places them after virtio's. */
  vfioFunctions(): Promise<readonly VfioPciSpec[]>;
  /** The ACPI PM block the tables describe, or null without ACPI. */
  readonly acpiPm: { readonly base: number; readonly sciIrq: number } | null;
}

export async function deviceSpecs(config: MachineConfig, host: DeviceSpecsHost): Promise<DevicePlan> {
  const { ram, openChardev, teardown } = host;
  // The PCI host bridge (always, as on a PC) and the plumbing of the functions behind it.
  const ramEnd = Math.max(...ram.regions.map((r) => r.gpa + r.size));
  const pciHost = defaultPciHostConfig(ramEnd);
  const msi = MsiRouter.create(host.vmFd);
  teardown.add(() => msi.close());
  const ioEvents = IoEventRegistry.create(host.vmFd);
  teardown.add(() => ioEvents.close());
  const ecam = ecamRange(pciHost);
  const platform = planPlatform(config, ram.regions, {
    windows: pciHost.windows,
    intx: pciHost.intx,
    ecam: ecam ? { base: ecam.base, endBus: ecam.endBus } : undefined,
  });

  let virtio: VirtioPlan = { specs: [], fds: [], inputs: [], taps: [], kept: [], images: [] };
  const context: DevicePlanContext = {
    config,
    ram: ram.regions,
    openChardev,
    fwCfg: () => buildFwCfg(config),
    pciHost,
    async virtioFunctions() {
      const planned = await planVirtioDevices(config.virtio, {
        msi,
        ioEvents,
        windows: pciHost.windows,
        openChardev,
        taps: host.taps,
      });
      virtio = planned;
      teardown.add(() => {
        for (const name of planned.kept) forgetAcrossExec(name);
        for (const fd of planned.fds) closeSync(fd);
        for (const i of planned.inputs) i.ring.close();
      });
      // Taps handed over that no device here uses (a configuration that differs; the restore will say so).
      for (const fd of host.taps?.values() ?? []) if (!planned.fds.includes(fd)) closeSync(fd);
      return planned.specs;
    },
    async vfioFunctions() {
      return planVfioDevices(config.vfio ?? [], {
        api: hostVfioApi(),
        msi,
        windows: pciHost.windows,
        intx: pciHost.intx ?? DEFAULT_INTX_ROUTING,
        ram: ram.regions,
        virtioCount: config.virtio.length,
        irqfd: (f) => vmRoutingOps(host.vmFd).irqfd(f),
        teardown,
        inherited: takeInheritedFd,
        log: host.log,
      });
    },
    acpiPm: platform.pm,
  };

  // Kind by kind, in the list's order: the order of the records and of their checkpoint sections.
  const specs: DeviceSpec[] = [];
  for (const kind of DEVICE_KINDS) specs.push(...(await kind.plan(context)));
  return { specs, platform, msi, ioEvents, virtio };
}
