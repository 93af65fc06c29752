// The machine's device table as the registered kinds plan it: which devices a configuration gets, with which ids,
// and in which order — the order of their records and checkpoint sections, which must never change.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CharSpec } from '../chardev/spec.js';
import { parseRunArgs } from '../cli/args.js';
import { machineConfigFromArgs } from '../cli/config.js';
import { x86RamLayout } from '../memory/x86-layout.js';
import { DEVICE_KINDS } from '../runtime/device-kinds.js';
import { descriptorOf } from '../runtime/device-table.js';
import { Teardown } from './teardown.js';
import { deviceSpecs } from './device-specs.js';

const MiB = 2 ** 20;

/** Plans the devices of `tsvmm run ARGV` without KVM (no virtio: nothing is allocated on a VM fd). */
async function plan(...argv: string[]) {
  const config = machineConfigFromArgs(parseRunArgs(argv));
  const opened: string[] = [];
  const teardown = new Teardown();
  const planned = await deviceSpecs(config, {
    vmFd: -1,
    ram: { regions: x86RamLayout(config.memory.size).map((r) => ({ ...r, hostAddress: 0n })) },
    openChardev: async (id: string, _spec: CharSpec) => {
      opened.push(id);
      return id;
    },
    teardown,
  });
  teardown.run();
  return { ...planned, opened };
}

test('device plan: a PC with ACPI gets its devices in the order their checkpoint sections have always had', async () => {
  const { specs, opened } = await plan(
    ...['-m', '64M', '-smp', '2', '-serial', 'null', '-serial', 'none', '-serial', 'null'],
    ...['-debugcon', 'null', '-device', 'isa-debug-exit'],
  );
  // A kind added later goes after these (src/runtime/device-kinds.ts): only a prefix is fixed.
  const known = specs.slice(0, 10);
  assert.equal(
    known.map((s) => s.id),
    ['serial0', 'serial2', 'debugcon0', 'debug-exit', 'rtc', 'i8042', 'fw-cfg', 'pci-host', 'acpi-pm', 'pvpanic'],
  );
  assert.equal(
    known.map((s) => descriptorOf(s).name),
    [
      ...['serial-16550a', 'serial-16550a', 'isa-debugcon', 'isa-debug-exit', 'mc146818rtc', 'i8042', 'fw_cfg'],
      ...['pci-host', 'acpi-pm', 'pvpanic'],
    ],
  );
  assert.equal(opened, ['serial0', 'serial2', 'debugcon0'], 'chardevs open in plan order');
  assert.equal(specs[1], { kind: 'serial', id: 'serial2', base: 0x3e8, irq: 4, output: 'serial2' }, 'COM3');
  assert.equal(specs[4], { kind: 'rtc', id: 'rtc', memory: { ramBelow4G: 64 * MiB, ramAbove4G: 0, cpus: 2 } });
  assert.equal(specs[8], { kind: 'acpi-pm', id: 'acpi-pm', base: 0x600, sciIrq: 9 });
});

test('device plan: without ACPI there is no PM block and no default pvpanic', async () => {
  const { specs, platform } = await plan('-m', '16M', '-machine', 'acpi=off');
  assert.equal(
    specs.slice(0, 5).map((s) => s.kind),
    ['serial', 'rtc', 'i8042', 'fw-cfg', 'pci-host'],
  );
  assert.not.ok(
    specs.some((s) => s.kind === 'acpi-pm' || s.kind === 'pvpanic'),
    'no PM block, no pvpanic',
  );
  assert.is(platform.pm, null);
});

test('device kinds: each kind registered once, and no two descriptors share a checkpoint section name', () => {
  const kinds = DEVICE_KINDS.map((k) => k.kind);
  assert.is(new Set(kinds).size, kinds.length, kinds.join(' '));
  const names = DEVICE_KINDS.flatMap((k) => k.descriptors.map((d) => d.name));
  assert.is(new Set(names).size, names.length, names.join(' '));
});

test.run();
