// Reboot mode and a passed-through PCI function, as QEMU has it: refused with QEMU's text unless the guest is
// suspended (ACPI S3).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MachineParts } from '../../src/machine/machine.js';
import { CprError, checkNoPassthrough, VFIO_REBOOT_NOT_SUSPENDED } from './reboot.js';

const parts = (vfio?: { id: string; sysfsdev: string }[]) => ({ config: { vfio } }) as unknown as MachineParts;
const edu = parts([{ id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' }]);

test("cpr-reboot with a vfio-pci device: QEMU's refusal unless the guest is suspended; accepted in S3", () => {
  for (const state of ['running', 'paused', 'prelaunch'])
    assert.throws(
      () => checkNoPassthrough(edu, state),
      (e: Error) => e instanceof CprError && e.message === VFIO_REBOOT_NOT_SUSPENDED,
      state,
    );
  assert.is(VFIO_REBOOT_NOT_SUSPENDED, 'VFIO device only supports cpr-reboot for runstate suspended');
  checkNoPassthrough(edu, 'suspended');
});

test('cpr-reboot without a vfio-pci device: nothing said', () => {
  checkNoPassthrough(parts(), 'running');
  checkNoPassthrough(parts([]), 'running');
});

test.run();
