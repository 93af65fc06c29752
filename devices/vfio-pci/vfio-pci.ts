// The 'vfio-pci' kind of device: a host PCI function passed through to the guest (QEMU's `-device
// vfio-pci,host=0000:00:03.0`). The board plans these itself (src/machine/vfio-plan.ts: the VFIO container, group
// and device opened, guest RAM mapped for DMA, BAR windows mmapped, a PCI slot, MSI vectors, INTx eventfds), because
// they need host resources opened once; the plan reaches this registration through the machine plan's
// `vfioFunctions`. Every thread then builds the model (device.ts) over the record, with the host operations its
// environment gives (DeviceEnvironment.vfio).
import { type DeviceRegistration, pciEnvironment } from '../registration.js';
import { VfioPciFunction } from './device.js';
import type { VfioPciSpec } from './host.js';
import { type VfioPciRecord, vfioPciState } from './state.js';

export type { VfioPciSpec } from './host.js';

/** What the machine plan gives this kind: the functions it opened and placed. */
export interface VfioPciPlan {
  vfioFunctions(): Promise<readonly VfioPciSpec[]>;
}

/** One per -device vfio-pci, in command-line order. */
export const vfioPciDevice: DeviceRegistration<VfioPciSpec, VfioPciRecord, VfioPciPlan> = {
  kind: 'vfio-pci',
  descriptors: [vfioPciState],
  descriptorOf: () => vfioPciState,
  plan: ({ vfioFunctions }) => vfioFunctions(),
  create: (record, env, spec) => {
    const pci = pciEnvironment(env, spec.id);
    if (!env.vfio) throw new Error(`${spec.id}: this thread has no VFIO services`);
    const { ops, slots } = env.vfio.device(spec);
    const fn = new VfioPciFunction(record, spec, {
      pci: pci.pci,
      msi: spec.msi ? pci.msi.vectors(spec.msi) : null,
      ops,
      slots,
      log: pci.log,
    });
    return {
      regions: [], // its windows are BARs, which the bus maps
      reset: () => fn.reset(),
      restored: () => fn.restored(),
      ioWatches: () => fn.ioWatches(),
    };
  },
};
