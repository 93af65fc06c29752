// The header check: a C program generated from tsvmm's own tables prints, as the system's <linux/vfio.h> defines
// them, every ioctl number, every constant, every struct size and alignment and every field offset and size that
// vfio/ uses; each must equal the TypeScript value. Nothing is listed by hand here, so a field added to
// vfio/bindings/structs.ts or a constant added to vfio/bindings/constants.ts is checked automatically.
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { abiMismatches, headerValues, layoutChecks, type AbiCheck } from '../../test/support/abi-check.js';
import { testIf } from '../../test/support/skip.js';
import * as ioctls from './ioctls.js';
import { IOCTLS, VFIO_ENUMERATORS } from './ioctls.js';
import { LAYOUTS } from './structs.js';

const header = '/usr/include/linux/vfio.h';
const noHeader = existsSync(header) ? null : `${header} is not installed (linux-libc-dev)`;

function checks(): AbiCheck[] {
  const list: AbiCheck[] = [];
  const enumerators = new Set(VFIO_ENUMERATORS);
  for (const [name, value] of Object.entries(ioctls)) {
    if (!name.startsWith('VFIO_') || typeof value !== 'number') continue;
    list.push({
      key: `const ${name}`,
      expected: BigInt(value),
      c: name,
      guard: enumerators.has(name) ? undefined : name,
    });
  }
  return [...list, ...layoutChecks(Object.values(LAYOUTS))];
}

testIf(
  test,
  noHeader,
  'abi: every VFIO ioctl number, constant, struct size, alignment and field offset matches <linux/vfio.h>',
  () => {
    const list = checks();
    const wrong = abiMismatches(
      list,
      headerValues({ name: 'vfio-abi', preamble: ['#include <linux/vfio.h>'], checks: list }),
    );
    assert.equal(wrong, [], `mismatches:\n${wrong.join('\n')}`);
    // A floor so a broken generator cannot pass by checking nothing.
    assert.ok(list.length > 150, `only ${list.length} checks generated`);
  },
);

test("abi: every VFIO request is _IO(';', 100 + n): no direction, no size", () => {
  // From the header's comments, independent of the check above.
  assert.is(ioctls.VFIO_GET_API_VERSION, 0x3b64);
  assert.is(ioctls.VFIO_IOMMU_MAP_DMA, 0x3b71);
  assert.is(ioctls.VFIO_DEVICE_RESET, 0x3b6f);
  for (const d of IOCTLS) assert.is(d.number, (0x3b << 8) | (100 + d.nr), d.name);
});

test('abi: the table covers every request vfio/ issues', () => {
  assert.equal(IOCTLS.map((d) => d.name).sort(), [
    'VFIO_CHECK_EXTENSION',
    'VFIO_DEVICE_GET_INFO',
    'VFIO_DEVICE_GET_IRQ_INFO',
    'VFIO_DEVICE_GET_REGION_INFO',
    'VFIO_DEVICE_RESET',
    'VFIO_DEVICE_SET_IRQS',
    'VFIO_GET_API_VERSION',
    'VFIO_GROUP_GET_DEVICE_FD',
    'VFIO_GROUP_GET_STATUS',
    'VFIO_GROUP_SET_CONTAINER',
    'VFIO_GROUP_UNSET_CONTAINER',
    'VFIO_IOMMU_GET_INFO',
    'VFIO_IOMMU_MAP_DMA',
    'VFIO_IOMMU_UNMAP_DMA',
    'VFIO_SET_IOMMU',
  ]);
});

test.run();
