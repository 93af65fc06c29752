// The CONFIG descriptor: any machine configuration and RAM backend record round-trips exactly (property test over
// generated configs), strings are UTF-8 with their limits checked, and a corrupt record is refused by field name.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, layoutOf, recordBytes, type Descriptor } from '../vmstate/vmstate.js';
import { encodeRecord, prepareDecode } from '../vmstate/stream.js';
import {
  machineConfigDescriptor,
  machineConfigToRecord,
  recordToMachineConfig,
  MAX_SERIAL,
  MAX_VFIO,
  type MachineConfigRecord,
} from './machine-config.js';
import { PATH_MAX } from '../kvm-state/checked.js';
import { rng, randomSaved, clone } from './config-samples.js';
import type { SavedMachineConfig } from './machine-config.js';

const CASES = 2000;

const roundTrip = (s: SavedMachineConfig, record?: MachineConfigRecord) =>
  recordToMachineConfig(machineConfigToRecord(s.config, s.ram, record));

/** A plain config as the CLI would give for `-m 512M -smp 2 -kernel … -serial stdio` with RAM on /dev/shm. */
function typical(): SavedMachineConfig {
  const size = 512 * 2 ** 20;
  return {
    config: {
      name: 'tsvmm',
      memory: {
        size,
        backend: { kind: 'file', size, path: '/dev/shm/vm0', share: true, offset: 0, prealloc: false },
        backendId: 'ram0',
      },
      cpus: 2,
      cpuModel: 'pvm-safe',
      boot: { kind: 'kernel', path: '/boot/counter.elf', append: 'console=ttyS0' },
      serial: [{ kind: 'stdio' }],
      debugcon: [{ output: { kind: 'file', path: '/tmp/dots', append: false }, iobase: 0xe9, timestamps: false }],
      debugExit: { iobase: 0xf4, iosize: 4 },
      noReboot: true,
      timeoutMs: null,
      startPaused: false,
      virtio: [],
      acpi: true,
      pvpanic: null,
    },
    ram: { kind: 'file', size, offset: 0, share: true, hugetlb: false, hugetlbSize: 0, path: '/dev/shm/vm0', fd: 17 },
  };
}

test('machine config: a typical configuration and its RAM record round-trip exactly', () => {
  const s = typical();
  assert.equal(roundTrip(s), s);
});

test(`machine config: ${CASES} generated configurations round-trip exactly, into fresh and reused records`, () => {
  const reused = newRecord(machineConfigDescriptor);
  for (let seed = 1; seed <= CASES; seed++) {
    const s = randomSaved(rng(seed));
    const want = clone(s);
    assert.equal(roundTrip(s), want, `seed ${seed}`);
    assert.equal(roundTrip(s, reused), want, `seed ${seed}, reused record`);
  }
});

test('machine config: passed-through functions (-device vfio-pci) round-trip: id, host sysfs path, rombar=0; none has no key', () => {
  const s = typical();
  s.config.vfio = [
    { id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' }, // -device vfio-pci,host=0000:00:03.0,id=edu0
    { id: 'vfio1', sysfsdev: '/sys/devices/pci0000:00/0000:00:04.0', rombar: false }, // sysfsdev=…,rombar=0
  ];
  const back = roundTrip(s);
  assert.equal(back, s);
  assert.not.ok('rombar' in back.config.vfio![0], 'rombar=1 (the default) is no key, as the CLI gives it');
  assert.not.ok('vfio' in roundTrip(typical()).config, 'no passed-through function: no key, as the CLI gives it');
  const many = typical();
  many.config.vfio = Array.from({ length: MAX_VFIO + 1 }, (_, i) => ({ id: `v${i}`, sysfsdev: `/x/${i}` }));
  assert.throws(() => machineConfigToRecord(many.config, many.ram), /config vfio: 33 devices, at most 32/);
});

test('machine config: a version 1 record (written before vfio-pci was in it) has no passed-through function, even decoded into a record that held some', () => {
  // Version 1 is version 2's fields without those since 2; the fields before them lie where they did.
  const v1: Descriptor = {
    ...machineConfigDescriptor,
    version: 1,
    fields: machineConfigDescriptor.fields.filter((f) => (f.since ?? 1) === 1),
  };
  assert.is(machineConfigDescriptor.version, 2);
  const s = typical();
  const old = newRecord(v1, false);
  recordBytes(old).set(recordBytes(machineConfigToRecord(s.config, s.ram)).subarray(0, layoutOf(v1).size));
  const stream = encodeRecord(v1, old);
  const withEdu = clone(s);
  withEdu.config.vfio = [{ id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' }];
  const reused = machineConfigToRecord(withEdu.config, withEdu.ram);
  prepareDecode(machineConfigDescriptor, stream, 1, reused)();
  assert.equal(recordToMachineConfig(reused), s);
});

test('machine config: optional properties keep their absence (no key) and their presence (false, 0, "")', () => {
  const s = typical();
  s.config.boot = { kind: 'flat', path: '/x', loadAddress: 0, mode: 'real' }; // no entry
  s.config.memory.backend = { kind: 'memfd', size: s.config.memory.size, share: false, hugetlbSize: 0 };
  s.config.memory.backendId = '';
  s.config.name = '';
  const back = roundTrip(s);
  assert.equal(back, s);
  assert.not.ok('entry' in back.config.boot!);
  assert.not.ok('seal' in back.config.memory.backend);
  assert.is(back.config.memory.backendId, '');
});

test('machine config: a key whose value is undefined counts as absent', () => {
  const s = typical();
  s.config.boot = { kind: 'flat', path: '/x', loadAddress: 0x7c00, entry: undefined, mode: 'real' };
  assert.equal(roundTrip(s).config.boot, { kind: 'flat', path: '/x', loadAddress: 0x7c00, mode: 'real' });
});

test('machine config: strings are UTF-8 up to their limit; a longer one is refused naming the field', () => {
  const s = typical();
  const longest = `/${'é'.repeat((PATH_MAX - 2) / 2)}x`; // exactly PATH_MAX bytes of UTF-8
  assert.is(new TextEncoder().encode(longest).length, PATH_MAX);
  s.ram.path = longest;
  assert.is(roundTrip(s).ram.path, longest);
  s.ram.path = `${longest}x`;
  assert.throws(
    () => machineConfigToRecord(s.config, s.ram),
    /RAM backend record path: 4097 bytes of UTF-8 do not fit in 4096/,
  );
  const t = typical();
  t.config.serial = [{ kind: 'file', path: '😀'.repeat(1025), append: false }];
  assert.throws(() => machineConfigToRecord(t.config, t.ram), /config serial\[0\] path/);
});

test('machine config: values that do not fit their fields are refused', () => {
  const cases: Array<[(s: SavedMachineConfig) => void, RegExp]> = [
    [
      (s) => {
        s.config.serial = Array.from({ length: MAX_SERIAL + 1 }, () => ({ kind: 'null' as const }));
      },
      /5 ports, at most 4/,
    ],
    [
      (s) => {
        s.config.debugcon[0].iobase = 0x10000;
      },
      /debugcon\[0\] iobase: 65536/,
    ],
    [
      (s) => {
        s.config.debugExit = { iobase: 0xf4, iosize: 256 };
      },
      /debugExit iosize: 256/,
    ],
    [
      (s) => {
        s.config.timeoutMs = 1.5;
      },
      /timeoutMs: 1.5/,
    ],
    [
      (s) => {
        s.config.memory.size = -1;
      },
      /memory size: -1/,
    ],
    [
      (s) => {
        s.config.cpuModel = 'max' as any;
      },
      /cpuModel: 'max' is not one of host, pvm-safe/,
    ],
    [
      (s) => {
        s.ram.fd = -2;
      },
      /fd: -2/,
    ],
    [
      (s) => {
        s.config.noReboot = 'yes' as any;
      },
      /noReboot: expected true or false/,
    ],
  ];
  for (const [edit, message] of cases) {
    const s = typical();
    edit(s);
    assert.throws(() => machineConfigToRecord(s.config, s.ram), message);
  }
});

test('machine config: a corrupt record is refused with the field named, never read past its buffers', () => {
  const corrupt = (edit: (r: MachineConfigRecord) => void) => {
    const r = machineConfigToRecord(typical().config, typical().ram);
    edit(r);
    return () => recordToMachineConfig(r);
  };
  assert.throws(
    corrupt((r) => {
      r.serialCount = 5;
    }),
    /serial: count 5 exceeds the capacity of 4/,
  );
  assert.throws(
    corrupt((r) => {
      r.debugconCount = 1000;
    }),
    /debugcon: count 1000/,
  );
  assert.throws(
    corrupt((r) => {
      r.vfioCount = 33;
    }),
    /vfio: count 33 exceeds the capacity of 32/,
  );
  assert.throws(
    corrupt((r) => {
      r.nameLength = 10_000;
    }),
    /name: length 10000 is outside its buffer of 256 bytes/,
  );
  assert.throws(
    corrupt((r) => {
      r.ramBackend.path[0] = 0xff;
    }),
    /RAM backend path: the 12 bytes are not valid UTF-8/,
  );
  assert.throws(
    corrupt((r) => {
      r.ramBackend.kind.set(new TextEncoder().encode('nvme'));
    }),
    /RAM backend kind: 'nvme' is not one of anon, memfd, file, devdax/,
  );
  assert.throws(
    corrupt((r) => {
      r.memory.size = 1n << 60n;
    }),
    /memory size: 1152921504606846976 is beyond 2\^53/,
  );
  assert.throws(
    corrupt((r) => {
      r.boot.mode.set(new TextEncoder().encode('smm'));
      r.boot.kind.set(new TextEncoder().encode('flat'));
      r.boot.kindLength = 4;
      r.boot.modeLength = 3;
    }),
    /boot mode: 'smm'/,
  );
});

test('machine config: the descriptor names every part of the configuration', () => {
  const layout = layoutOf(machineConfigDescriptor);
  for (const name of [
    'name',
    'memory',
    'cpus',
    'cpuModel',
    'boot',
    'serial',
    'debugcon',
    'debugExit',
    'noReboot',
    'timeoutMs',
    'startPaused',
    'ramBackend',
    'pvpanic',
    'vfio',
  ]) {
    assert.ok(layout.byName.has(name), name);
  }
  const ram = layout.byName.get('ramBackend')!.layout!;
  for (const name of ['kind', 'size', 'offset', 'share', 'hugetlb', 'hugetlbSize', 'path', 'fd'])
    assert.ok(ram.byName.has(name), `ramBackend.${name}`);
  const vfio = layout.byName.get('vfio')!.layout!;
  for (const name of ['id', 'sysfsdev', 'romHidden']) assert.ok(vfio.byName.has(name), `vfio.${name}`);
});

test.run();
