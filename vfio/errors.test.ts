// Opening VFIO where it is missing or is not VFIO: one line each, saying what to do. (These need no VFIO at all.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno } from '../src/sys/errno.js';
import { VfioContainer } from './container.js';
import { openFailure, VfioError } from './errors.js';
import { VfioGroup } from './group.js';
import { iommufdMissing } from './iommufd.js';

const vfioError = (f: () => unknown): VfioError => {
  try {
    f();
  } catch (e) {
    assert.instance(e, VfioError);
    assert.not.match((e as Error).message, /\n/);
    return e as VfioError;
  }
  throw new Error('no error');
};

test('vfio: no container node means the module is not loaded, and says how to load it', () => {
  const e = vfioError(() => VfioContainer.open('/nonexistent/vfio'));
  assert.is(e.reason, 'no-vfio');
  assert.is(e.message, 'vfio: /nonexistent/vfio does not exist — is the vfio module loaded? (modprobe vfio-pci)');
  assert.is(e.errno, Errno.ENOENT);
});

test('vfio: a file that is not a VFIO container is refused with the failing request named', () => {
  const e = vfioError(() => VfioContainer.open('/dev/null'));
  assert.is(e.message, 'vfio: /dev/null is not a VFIO container (VFIO_GET_API_VERSION: ENOTTY)');
});

test('vfio: a missing group node says no device of the group is bound to vfio-pci', () => {
  const e = vfioError(() => VfioGroup.open(3, { devDir: '/nonexistent/vfio' }));
  assert.is(e.reason, 'no-group');
  assert.is(e.message, 'vfio: /nonexistent/vfio/3 does not exist: no device of IOMMU group 3 is bound to vfio-pci');
  assert.is(vfioError(() => VfioGroup.open(-1)).reason, 'no-group');
});

test('vfio: permission and a busy group read as one actionable line', () => {
  const missing = () => new VfioError('no-group', 'unused');
  assert.match(
    openFailure('/dev/vfio/3', Errno.EACCES, missing).message,
    /^vfio: \/dev\/vfio\/3: permission denied — /,
  );
  const busy = openFailure('/dev/vfio/3', Errno.EBUSY, missing);
  assert.is(busy.reason, 'busy');
  assert.is(busy.message, 'vfio: /dev/vfio/3 is busy: another process (a VMM?) has the group open');
});

test('vfio: iommufd is detected by /dev/iommu, with the reason when absent', () => {
  assert.is(
    iommufdMissing('/nonexistent'),
    'no /nonexistent/iommu: this kernel has no iommufd (Linux 6.2+, CONFIG_IOMMUFD)',
  );
  const here = iommufdMissing();
  assert.ok(here === null || here.startsWith('no /dev/'), String(here));
});

test.run();
