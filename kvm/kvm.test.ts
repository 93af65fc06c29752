// Opening /dev/kvm: the one-line errors for every way it can be unusable, and the system-fd queries.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno } from '../src/sys/errno.js';
import { testIf } from '../test/support/skip.js';
import { Kvm, KvmUnavailableError, openFailure } from './kvm.js';
import { kvmMissing } from './testing/test-guest.js';
import * as K from './bindings/ioctls.js';

const noKvm = kvmMissing();

function openError(path: string): KvmUnavailableError {
  try {
    Kvm.open(path).close();
  } catch (e) {
    if (e instanceof KvmUnavailableError) return e;
    throw e;
  }
  throw new Error(`${path} opened`);
}

test('kvm: a missing device is one line that says so and suggests loading the module', () => {
  const e = openError('/nonexistent/kvm');
  assert.is(e.message, '/nonexistent/kvm: no such device — is the kvm module loaded?');
  assert.is(e.reason, 'missing');
  assert.is(e.errno, Errno.ENOENT);
  assert.is(e.name, 'KvmUnavailableError');
});

test('kvm: a file that is not a KVM device is refused with the failing request named', () => {
  const e = openError('/dev/null');
  assert.is(e.reason, 'not-kvm');
  assert.is(e.message, '/dev/null: not a KVM device (KVM_GET_API_VERSION failed: ENOTTY)');
});

test('kvm: permission and unsupported-kernel failures read as one actionable line', () => {
  // Root opens anything, so these paths are checked through the errno → message mapping Kvm.open uses.
  const denied = openFailure('/dev/kvm', Errno.EACCES);
  assert.is(denied.reason, 'permission');
  assert.match(denied.message, /^\/dev\/kvm: permission denied — /);
  const nodev = openFailure('/dev/kvm', Errno.ENXIO);
  assert.is(nodev.reason, 'unsupported');
  assert.match(nodev.message, /^\/dev\/kvm: no KVM support/);
  assert.match(openFailure('/dev/kvm', Errno.EIO).message, /cannot open: EIO$/);
  for (const e of [denied, nodev]) assert.not.match(e.message, /\n/);
});

testIf(test, noKvm, 'kvm: /dev/kvm reports API 12, user memory, an mmap size and its supported CPUID and MSRs', () => {
  const kvm = Kvm.open();
  try {
    assert.is(kvm.apiVersion, 12);
    assert.ok(kvm.checkExtension(K.KVM_CAP_USER_MEMORY) > 0);
    assert.ok(kvm.vcpuMmapSize() >= 4096);
    const cpuid = kvm.supportedCpuid();
    assert.ok(cpuid.some((e) => e.function === 0) && cpuid.some((e) => e.function === 1));
    const msrs = kvm.msrIndexList();
    assert.ok(msrs.includes(0x10), 'IA32_TSC is in the MSR list');
    if (kvm.checkExtension(K.KVM_CAP_GET_MSR_FEATURES) > 0) {
      const features = kvm.msrFeatureIndexList();
      assert.ok(features.length > 0);
      assert.ok(kvm.featureMsrs(features).length > 0, 'feature MSRs read on the system fd');
    }
  } finally {
    kvm.close();
  }
});

test.run();
