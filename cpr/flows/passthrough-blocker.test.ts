// A machine with a passed-through PCI function cannot be checkpointed yet (its state is in the host device and the
// IOMMU): every CPR entry point refuses it in one line naming the device, before anything stops.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MachineParts } from '../../src/machine/machine.js';
import { CprError, checkNoPassthrough } from './reboot.js';

const parts = (vfio?: { id: string; sysfsdev: string }[]) => ({ config: { vfio } }) as unknown as MachineParts;

test('cpr: a machine with a vfio-pci device is refused in one line naming it; without one nothing is said', () => {
  assert.throws(
    () => checkNoPassthrough(parts([{ id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' }])),
    (e: Error) =>
      e instanceof CprError &&
      e.message ===
        "vfio-pci device 'edu0' (/sys/bus/pci/devices/0000:00:03.0) cannot be checkpointed: tsvmm does not carry passed-through devices across CPR yet",
  );
  checkNoPassthrough(parts());
  checkNoPassthrough(parts([]));
});

test.run();
