// Which skipped tests make the runner run their file again in the rig: those whose reason is one the rig lifts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rigCanLift, rigNeedsVfio } from './rig-provides.js';
import { PVM_NO_USER_SPACE } from './kvm-backend.js';

test('a test skipped for a missing or unusable /dev/kvm goes to the rig', () => {
  assert.ok(rigCanLift('kvm: the VM is created: no usable /dev/kvm: /dev/kvm does not exist on this host'));
});

test('a test skipped because KVM is PVM (a stock Linux cannot reach user space) goes to the rig', () => {
  assert.ok(rigCanLift(`full boot: tsvmm boots Debian's bzImage: ${PVM_NO_USER_SPACE}`));
});

test('a test skipped for lack of huge pages goes to the rig', () => {
  assert.ok(rigCanLift('backend hugetlb: maps huge pages: no free huge pages (HugePages_Free is 0)'));
});

test('a test skipped for want of a device bound to vfio-pci goes to the rig, booted as q35 with vfio', () => {
  const skip = 'vfio: edu answers 1234:11e8: no vfio-pci device here: no 1234:11e8 (QEMU edu) bound to vfio-pci';
  assert.ok(rigCanLift(skip));
  assert.ok(rigNeedsVfio(skip));
});

test('a test skipped for /dev/kvm alone does not make the rig boot as q35', () => {
  assert.not.ok(rigNeedsVfio('kvm: the VM is created: no usable /dev/kvm: /dev/kvm does not exist on this host'));
  assert.not.ok(rigNeedsVfio('no vfio-pci device here: in the name only: no gcc on this host'));
});

test('a test skipped for what the rig lacks too stays skipped', () => {
  assert.not.ok(rigCanLift('backend devdax: maps the device shared: no /dev/dax* device on this host'));
  assert.not.ok(rigCanLift('guests: build: no gcc on this host'));
});

test("only the reason counts: the words in a test's name do not", () => {
  assert.not.ok(rigCanLift('no usable /dev/kvm: reported in one line: the CLI is not built'));
});

test.run();
