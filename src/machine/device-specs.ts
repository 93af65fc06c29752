// The machine's parts list: which devices a configuration gets, where they sit and what host resources they use
// (chardevs, the MSI router and ioeventfds of the PCI functions, disk images, taps), and the platform description
// (e820, ACPI and MP tables) that tells the guest about them.
import { closeSync } from 'node:fs';
import type { CharSpec } from '../chardev/index.js';
import type { MachineRam } from '../memory/config.js';
import type { DeviceSpec } from '../runtime/device-table.js';
import { MsiRouter } from '../runtime/msi-router.js';
import { IoEventRegistry } from '../runtime/ioevent-registry.js';
import { planPlatform, COM_PORTS, type Platform } from './platform.js';
import { buildFwCfg } from './fw-cfg-content.js';
import { defaultPciHostConfig, ecamRange } from './pci-plan.js';
import { planVirtioDevices, type VirtioPlan } from './virtio-plan.js';
import type { MachineConfig } from './config.js';
import type { Teardown } from './teardown.js';

export interface DeviceSpecsHost {
  readonly vmFd: number;
  readonly ram: MachineRam;
  /** Opens a chardev and returns its id in the machine's chardev table. */
  openChardev(id: string, spec: CharSpec): Promise<string>;
  /** Taps already open, by interface name (cpr-transfer); the plan owns them from now on. */
  readonly taps?: ReadonlyMap<string, number>;
  /** Where the plan registers the release of what it opens. */
  readonly teardown: Teardown;
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

export async function deviceSpecs(config: MachineConfig, host: DeviceSpecsHost): Promise<DevicePlan> {
  const { ram, openChardev, teardown } = host;
  const specs: DeviceSpec[] = [];
  for (let i = 0; i < config.serial.length && i < COM_PORTS.length; i++) {
    if (config.serial[i].kind === 'none') continue;
    const [base, irq] = COM_PORTS[i];
    specs.push({
      kind: 'serial',
      id: `serial${i}`,
      base,
      irq,
      output: await openChardev(`serial${i}`, config.serial[i]),
    });
  }
  for (const [i, d] of config.debugcon.entries()) {
    specs.push({
      kind: 'debugcon',
      id: `debugcon${i}`,
      base: d.iobase,
      output: await openChardev(`debugcon${i}`, d.output),
      timestamps: d.timestamps,
    });
  }
  if (config.debugExit)
    specs.push({
      kind: 'debug-exit',
      id: 'debug-exit',
      base: config.debugExit.iobase,
      size: config.debugExit.iosize,
    });
  const below4G = ram.regions.filter((r) => r.gpa < 2 ** 32).reduce((n, r) => n + r.size, 0);
  specs.push({
    kind: 'rtc',
    id: 'rtc',
    memory: { ramBelow4G: below4G, ramAbove4G: config.memory.size - below4G, cpus: config.cpus },
  });
  specs.push({ kind: 'i8042', id: 'i8042' });
  specs.push({ kind: 'fw-cfg', id: 'fw-cfg', content: buildFwCfg(config) });

  // The PCI host bridge (always, as on a PC) and the virtio functions behind it.
  const ramEnd = Math.max(...ram.regions.map((r) => r.gpa + r.size));
  const pciHost = defaultPciHostConfig(ramEnd);
  const msi = MsiRouter.create(host.vmFd);
  teardown.add(() => msi.close());
  const ioEvents = IoEventRegistry.create(host.vmFd);
  teardown.add(() => ioEvents.close());
  specs.push({ kind: 'pci-host', id: 'pci-host', config: pciHost });
  const virtio = await planVirtioDevices(config.virtio, {
    msi,
    ioEvents,
    windows: pciHost.windows,
    openChardev,
    taps: host.taps,
  });
  teardown.add(() => {
    for (const fd of virtio.fds) closeSync(fd);
    for (const i of virtio.inputs) i.ring.close();
  });
  // Taps handed over that no device here uses (a configuration that differs; the restore will say so).
  for (const fd of host.taps?.values() ?? []) if (!virtio.fds.includes(fd)) closeSync(fd);
  specs.push(...virtio.specs);
  const ecam = ecamRange(pciHost);
  const platform = planPlatform(config, ram.regions, {
    windows: pciHost.windows,
    intx: pciHost.intx,
    ecam: ecam ? { base: ecam.base, endBus: ecam.endBus } : undefined,
  });
  if (platform.pm) specs.push({ kind: 'acpi-pm', id: 'acpi-pm', base: platform.pm.base, sciIrq: platform.pm.sciIrq });
  if (config.pvpanic) specs.push({ kind: 'pvpanic', id: 'pvpanic', port: config.pvpanic.ioport });
  return { specs, platform, msi, ioEvents, virtio };
}
