// The header check: a C program generated from tsvmm's own tables prints, as the system's <linux/vfio.h> defines
// them, every ioctl number, every constant, every struct size and alignment and every field offset and size that
// vfio/ uses; each must equal the TypeScript value. Nothing is listed by hand here, so a field added to
// vfio/bindings/structs.ts or a constant added to vfio/bindings/constants.ts is checked automatically.
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileC, runC } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';
import * as ioctls from './ioctls.js';
import { IOCTLS, VFIO_ENUMERATORS } from './ioctls.js';
import { LAYOUTS } from './structs.js';

const header = '/usr/include/linux/vfio.h';
const noHeader = existsSync(header) ? null : `${header} is not installed (linux-libc-dev)`;

interface Check {
  key: string;
  expected: bigint;
  c: string;
  /** A macro to test with #ifdef; C enumerators have none. */
  guard?: string;
}

function checks(): Check[] {
  const list: Check[] = [];
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
  for (const layout of Object.values(LAYOUTS)) {
    const t = `struct ${layout.name}`;
    list.push({ key: `sizeof ${layout.name}`, expected: BigInt(layout.size), c: `sizeof(${t})` });
    list.push({ key: `alignof ${layout.name}`, expected: BigInt(layout.align), c: `_Alignof(${t})` });
    for (const [path, f] of Object.entries(layout.fields)) {
      list.push({ key: `offsetof ${layout.name}.${path}`, expected: BigInt(f.offset), c: `offsetof(${t}, ${path})` });
      const member = `((${t} *)0)->${path}`;
      if (f.length !== 0)
        list.push({ key: `sizeof ${layout.name}.${path}`, expected: BigInt(f.size), c: `sizeof(${member})` });
      if (f.elementSize !== undefined)
        list.push({
          key: `sizeof ${layout.name}.${path}[0]`,
          expected: BigInt(f.elementSize),
          c: `sizeof(${member}[0])`,
        });
    }
  }
  return list;
}

function program(list: readonly Check[]): string {
  const lines = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <linux/vfio.h>',
    '',
    '#define P(key, value) printf("%s %llu\\n", key, (unsigned long long)(value))',
    '',
    'int main(void) {',
  ];
  for (const c of list) {
    if (c.guard) lines.push(`#ifdef ${c.guard}`);
    lines.push(`  P(${JSON.stringify(c.key)}, ${c.c});`);
    if (c.guard) lines.push('#else', `  printf("%s MISSING\\n", ${JSON.stringify(c.key)});`, '#endif');
  }
  lines.push('  return 0;', '}', '');
  return lines.join('\n');
}

testIf(
  test,
  noHeader,
  'abi: every VFIO ioctl number, constant, struct size, alignment and field offset matches <linux/vfio.h>',
  () => {
    const list = checks();
    const exe = compileC(program(list), { name: 'vfio-abi' });
    const values = new Map<string, string>();
    for (const line of runC(exe).trim().split('\n')) {
      const at = line.lastIndexOf(' ');
      values.set(line.slice(0, at), line.slice(at + 1));
    }
    const wrong: string[] = [];
    for (const c of list) {
      const got = values.get(c.key);
      if (got === undefined) wrong.push(`${c.key}: not printed`);
      else if (got === 'MISSING') wrong.push(`${c.key}: not defined by the header`);
      else if (BigInt(got) !== c.expected) wrong.push(`${c.key}: tsvmm ${c.expected}, header ${got}`);
    }
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
