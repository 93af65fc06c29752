// The header check: a C program generated from tsvmm's own tables prints, as the system's <linux/kvm.h> defines
// them, every ioctl number, every constant, every struct size and alignment, every field offset and size and the
// IOAPIC bitfield positions that kvm/ uses; each must equal the TypeScript value. Nothing is listed by hand here,
// so a field added to kvm/bindings/structs.ts or a constant added to kvm/bindings/constants.ts is checked automatically.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { abiMismatches, headerValues, layoutChecks, type AbiCheck } from '../../test/support/abi-check.js';
import { testIf } from '../../test/support/skip.js';
import * as ioctls from './ioctls.js';
import { IOCTLS } from './ioctls.js';
import { LAYOUTS, IOAPIC_REDIR_FIELDS } from './structs.js';

const header = '/usr/include/linux/kvm.h';
const noHeader = existsSync(header) ? null : `${header} is not installed (linux-libc-dev)`;

/** Every `KVM_*` number exported by kvm/bindings/ioctls.ts (ioctl numbers and the re-exported constants), plus KVMIO. */
function exportedNumbers(): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, value] of Object.entries(ioctls)) {
    if ((name.startsWith('KVM_') || name === 'KVMIO') && typeof value === 'number') out.set(name, value);
  }
  return out;
}

function checks(): AbiCheck[] {
  const list: AbiCheck[] = [];
  for (const [name, value] of exportedNumbers()) {
    list.push({ key: `const ${name}`, expected: BigInt(value), c: name, guard: name });
  }
  for (const d of IOCTLS) list.push({ key: `ioctl ${d.name}`, expected: BigInt(d.number), c: d.name, guard: d.name });
  return [...list, ...layoutChecks(Object.values(LAYOUTS))];
}

/** The header's values for `list`, and the IOAPIC redirection-table bitfields: each set to all ones, the 64-bit view. */
function kvmHeaderValues(list: readonly AbiCheck[]): Map<string, string> {
  const extra = ['  struct kvm_ioapic_state s;'];
  for (const [name, [, width]] of Object.entries(IOAPIC_REDIR_FIELDS)) {
    extra.push(`  memset(&s, 0, sizeof s); s.redirtbl[0].fields.${name} = ${2 ** width - 1}u;`);
    extra.push(`  P("redir ${name}", s.redirtbl[0].bits);`);
  }
  return headerValues({
    name: 'kvm-abi',
    preamble: ['#include <string.h>', '#include <linux/kvm.h>'],
    checks: list,
    extra,
  });
}

testIf(
  test,
  noHeader,
  'abi: every ioctl number, constant, struct size, alignment and field offset matches <linux/kvm.h>',
  () => {
    const list = checks();
    const wrong = abiMismatches(list, kvmHeaderValues(list));
    assert.equal(wrong, [], `mismatches:\n${wrong.join('\n')}`);
    // A sanity floor so a broken generator cannot pass by checking nothing.
    assert.ok(list.length > 400, `only ${list.length} checks generated`);
  },
);

testIf(test, noHeader, 'abi: the IOAPIC redirection-entry bitfields sit where IOAPIC_REDIR_FIELDS says', () => {
  const values = kvmHeaderValues(checks());
  for (const [name, [lo, width]] of Object.entries(IOAPIC_REDIR_FIELDS)) {
    const expected = ((1n << BigInt(width)) - 1n) << BigInt(lo);
    assert.is(BigInt(values.get(`redir ${name}`) ?? -1), expected, name);
  }
});

test('abi: ioctl numbers follow the _IO/_IOR/_IOW/_IOWR encoding', () => {
  // Values from the kernel's documentation and a measured spike, independent of the header check above.
  assert.is(ioctls.KVM_RUN, 0xae80);
  assert.is(ioctls.KVM_CREATE_VM, 0xae01);
  assert.is(ioctls.KVM_SET_USER_MEMORY_REGION, 0x4020ae46);
  assert.is(ioctls.KVM_GET_SREGS, 0x8138ae83);
  assert.is(ioctls.KVM_SET_REGS, 0x4090ae82);
  assert.is(ioctls.KVM_GET_MSR_INDEX_LIST, 0xc004ae02);
  for (const d of IOCTLS) {
    assert.is(d.number >>> 30, { none: 0, w: 1, r: 2, rw: 3 }[d.dir], `${d.name} direction`);
    assert.is((d.number >>> 8) & 0xff, 0xae, `${d.name} type`);
    assert.is(d.number & 0xff, d.nr, `${d.name} nr`);
  }
});

test('abi: the table covers every ioctl tsvmm issues', () => {
  const names = new Set(IOCTLS.map((d) => d.name));
  const required = [
    'KVM_GET_API_VERSION',
    'KVM_CREATE_VM',
    'KVM_GET_MSR_INDEX_LIST',
    'KVM_GET_MSR_FEATURE_INDEX_LIST',
    'KVM_CHECK_EXTENSION',
    'KVM_GET_VCPU_MMAP_SIZE',
    'KVM_GET_SUPPORTED_CPUID',
    'KVM_CREATE_VCPU',
    'KVM_SET_USER_MEMORY_REGION',
    'KVM_SET_TSS_ADDR',
    'KVM_SET_IDENTITY_MAP_ADDR',
    'KVM_CREATE_IRQCHIP',
    'KVM_IRQ_LINE',
    'KVM_IRQ_LINE_STATUS',
    'KVM_GET_IRQCHIP',
    'KVM_SET_IRQCHIP',
    'KVM_CREATE_PIT2',
    'KVM_GET_PIT2',
    'KVM_SET_PIT2',
    'KVM_GET_CLOCK',
    'KVM_SET_CLOCK',
    'KVM_SET_GSI_ROUTING',
    'KVM_IRQFD',
    'KVM_IOEVENTFD',
    'KVM_SIGNAL_MSI',
    'KVM_ENABLE_CAP',
    'KVM_RUN',
    'KVM_GET_REGS',
    'KVM_SET_REGS',
    'KVM_GET_SREGS',
    'KVM_SET_SREGS',
    'KVM_GET_FPU',
    'KVM_SET_FPU',
    'KVM_GET_MSRS',
    'KVM_SET_MSRS',
    'KVM_SET_CPUID2',
    'KVM_GET_CPUID2',
    'KVM_GET_LAPIC',
    'KVM_SET_LAPIC',
    'KVM_GET_XSAVE',
    'KVM_SET_XSAVE',
    'KVM_GET_XSAVE2',
    'KVM_GET_XCRS',
    'KVM_SET_XCRS',
    'KVM_GET_VCPU_EVENTS',
    'KVM_SET_VCPU_EVENTS',
    'KVM_GET_MP_STATE',
    'KVM_SET_MP_STATE',
    'KVM_GET_DEBUGREGS',
    'KVM_SET_DEBUGREGS',
    'KVM_SET_SIGNAL_MASK',
    'KVM_KVMCLOCK_CTRL',
    'KVM_GET_TSC_KHZ',
    'KVM_SET_TSC_KHZ',
    'KVM_SET_BOOT_CPU_ID',
    'KVM_GET_DIRTY_LOG',
  ];
  assert.equal(
    required.filter((n) => !names.has(n)),
    [],
  );
});

test.run();
