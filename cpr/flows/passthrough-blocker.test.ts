// Reboot mode and a passed-through PCI function: QEMU's text while the guest is not suspended; while it is, tsvmm
// still refuses (it does not reopen the device from a checkpoint), in one line naming the device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MachineParts } from '../../src/machine/machine.js';
import { CprError, checkNoPassthrough, VFIO_REBOOT_NOT_SUSPENDED } from './reboot.js';

const parts = (vfio?: { id: string; sysfsdev: string }[]) => ({ config: { vfio } }) as unknown as MachineParts;
const edu = parts([{ id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' }]);

test("cpr-reboot with a vfio-pci device: QEMU's refusal unless the guest is suspended", () => {
  for (const state of ['running', 'paused', 'prelaunch'])
    assert.throws(
      () => checkNoPassthrough(edu, state),
      (e: Error) => e instanceof CprError && e.message === VFIO_REBOOT_NOT_SUSPENDED,
      state,
    );
  assert.is(VFIO_REBOOT_NOT_SUSPENDED, 'VFIO device only supports cpr-reboot for runstate suspended');
});

test('cpr-reboot with a vfio-pci device, suspended: still refused, in one line naming the device; none: nothing said', () => {
  assert.throws(
    () => checkNoPassthrough(edu, 'suspended'),
    (e: Error) =>
      e instanceof CprError &&
      e.message ===
        "vfio-pci device 'edu0' (/sys/bus/pci/devices/0000:00:03.0) cannot be saved in reboot mode yet: tsvmm does not reopen a passed-through device from a checkpoint (cpr-transfer and cpr-exec carry it)",
  );
  checkNoPassthrough(parts(), 'running');
  checkNoPassthrough(parts([]), 'suspended');
});

test.run();
