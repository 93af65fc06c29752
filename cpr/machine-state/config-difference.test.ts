// Whether a checkpoint fits this VM: every kind of difference that refuses a restore is named in words, the first
// one wins, informative differences never refuse, and (property test) the answer is "fits" exactly when the parts
// that must match are equal.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeConfigDifference, configDifferences } from './config-difference.js';
import { rng, randomSaved, randomCharSpec, clone } from './config-samples.js';
import type { SavedMachineConfig } from './machine-config.js';

const MiB = 2 ** 20;

function typical(): SavedMachineConfig {
  const size = 512 * MiB;
  return {
    config: {
      name: 'tsvmm',
      memory: { size, backend: { kind: 'file', size, path: '/dev/shm/a', share: true }, backendId: 'ram0' },
      cpus: 2,
      cpuModel: 'pvm-safe',
      boot: { kind: 'kernel', path: '/boot/counter.elf', append: '' },
      serial: [{ kind: 'stdio' }],
      debugcon: [{ output: { kind: 'null' }, iobase: 0xe9, timestamps: false }],
      debugExit: { iobase: 0xf4, iosize: 4 },
      noReboot: false,
      timeoutMs: null,
      startPaused: false,
      virtio: [],
      acpi: true,
      pvpanic: null,
    },
    ram: { kind: 'file', size, offset: 0, share: true, hugetlb: false, hugetlbSize: 0, path: '/dev/shm/a', fd: 12 },
  };
}

/** The difference after `edit` changes a copy of the typical config (the copy is "this VM"). */
function differenceAfter(edit: (s: SavedMachineConfig) => void): string | null {
  const current = typical();
  edit(current);
  return describeConfigDifference(typical(), current);
}

test('config difference: the same configuration fits', () => {
  assert.is(describeConfigDifference(typical(), typical()), null);
  assert.equal(configDifferences(typical(), typical()), []);
});

test('config difference: RAM size is named with both sizes', () => {
  assert.is(
    differenceAfter((s) => {
      s.config.memory.size = s.ram.size = s.config.memory.backend.size = 1024 * MiB;
    }),
    'RAM size differs: checkpoint 512 MiB, this VM 1 GiB',
  );
  assert.is(
    differenceAfter((s) => {
      s.ram.size = 256 * MiB;
    }),
    "RAM size differs: checkpoint's backend 512 MiB, this VM's 256 MiB",
  );
});

test('config difference: RAM backend kind, path, offset and sharing are named', () => {
  assert.is(
    differenceAfter((s) => {
      s.ram = { ...s.ram, kind: 'memfd', path: null };
    }),
    'RAM backend differs: checkpoint file /dev/shm/a (shared), this VM memfd (shared)',
  );
  assert.is(
    differenceAfter((s) => {
      s.ram.path = '/dev/shm/b';
    }),
    'RAM backend differs: checkpoint file /dev/shm/a (shared), this VM file /dev/shm/b (shared)',
  );
  assert.is(
    differenceAfter((s) => {
      s.ram.share = false;
    }),
    'RAM backend differs: checkpoint file /dev/shm/a (shared), this VM file /dev/shm/a (private)',
  );
  assert.is(
    differenceAfter((s) => {
      s.ram.offset = 2 * MiB;
    }),
    'RAM backend differs: checkpoint file /dev/shm/a (shared), this VM file /dev/shm/a (shared) at offset 2 MiB',
  );
  assert.is(
    differenceAfter((s) => {
      s.ram.path = null;
    }),
    'RAM backend differs: checkpoint file /dev/shm/a (shared), this VM file (unlinked) (shared)',
  );
});

test('config difference: vCPU count and CPU model are named', () => {
  assert.is(
    differenceAfter((s) => {
      s.config.cpus = 4;
    }),
    'vCPU count differs: checkpoint 2, this VM 4',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.cpuModel = 'host';
    }),
    'CPU model differs: checkpoint pvm-safe, this VM host',
  );
});

test('config difference: the device set and its ports are named (serial, debugcon, debug-exit)', () => {
  assert.is(
    differenceAfter((s) => {
      s.config.serial.push({ kind: 'null' });
    }),
    'device list differs: this VM has serial COM2 (port 0x2f8), the checkpoint does not',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.serial = [];
    }),
    'device list differs: checkpoint has serial COM1 (port 0x3f8), this VM does not',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.debugcon[0].iobase = 0x402;
    }),
    'device list differs: checkpoint has isa-debugcon at port 0xe9, this VM does not',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.debugcon.push({ output: { kind: 'stdio' }, iobase: 0x402, timestamps: true });
    }),
    'device list differs: this VM has isa-debugcon at port 0x402, the checkpoint does not',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.debugExit = null;
    }),
    'device list differs: checkpoint has isa-debug-exit at port 0xf4 (size 4), this VM has no isa-debug-exit',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.debugExit = { iobase: 0x501, iosize: 2 };
    }),
    'device list differs: checkpoint has isa-debug-exit at port 0xf4 (size 4), this VM has isa-debug-exit at port 0x501 (size 2)',
  );
  assert.is(
    differenceAfter((s) => {
      s.config.pvpanic = { ioport: 0x505 };
    }),
    'device list differs: checkpoint has no pvpanic, this VM has pvpanic at port 0x505',
  );
});

test('config difference: passed-through functions must match in number and ROM; which host function is informative', () => {
  const edu = { id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' };
  const withEdu = (s: SavedMachineConfig) => {
    s.config.vfio = [{ ...edu }];
  };
  assert.is(
    differenceAfter(withEdu),
    'vfio-pci devices differ: checkpoint has no vfio-pci devices, this VM has vfio-pci edu0',
  );
  const saved = typical();
  withEdu(saved);
  assert.is(
    describeConfigDifference(saved, typical()),
    'vfio-pci devices differ: checkpoint has vfio-pci edu0, this VM has no vfio-pci devices',
  );
  const noRom = typical();
  noRom.config.vfio = [{ ...edu, rombar: false }];
  assert.is(
    describeConfigDifference(saved, noRom),
    'vfio-pci devices differ: checkpoint has vfio-pci edu0, this VM has vfio-pci edu0 (rombar=0)',
  );
  const moved = typical();
  moved.config.vfio = [{ id: 'nic0', sysfsdev: '/sys/bus/pci/devices/0000:00:05.0' }];
  assert.is(describeConfigDifference(saved, moved), null, 'another host address (a host reboot may move it)');
  assert.equal(configDifferences(saved, moved), [
    {
      message:
        'vfio-pci device 0 differs: checkpoint edu0 at /sys/bus/pci/devices/0000:00:03.0, this VM nic0 at /sys/bus/pci/devices/0000:00:05.0',
      blocksRestore: false,
    },
  ]);
});

test('config difference: `none` leaves a COM port out, so it equals having no entry', () => {
  assert.is(
    differenceAfter((s) => {
      s.config.serial.push({ kind: 'none' });
    }),
    null,
  );
  assert.is(
    differenceAfter((s) => {
      s.config.serial = [{ kind: 'none' }];
    }),
    'device list differs: checkpoint has serial COM1 (port 0x3f8), this VM does not',
  );
});

test('config difference: the first difference that refuses is the one named (RAM before vCPUs before devices)', () => {
  const message = differenceAfter((s) => {
    s.config.debugExit = null;
    s.config.cpus = 8;
    s.config.memory.size = s.ram.size = 64 * MiB;
  });
  assert.is(message, 'RAM size differs: checkpoint 512 MiB, this VM 64 MiB');
  assert.is(
    differenceAfter((s) => {
      s.config.debugExit = null;
      s.config.cpus = 8;
    }),
    'vCPU count differs: checkpoint 2, this VM 8',
  );
});

test('config difference: boot, outputs, names, host-side RAM options and run flags are informative only', () => {
  const informative: Array<[string, (s: SavedMachineConfig) => void, RegExp]> = [
    [
      'boot',
      (s) => {
        s.config.boot = { kind: 'flat', path: '/other.bin', loadAddress: 0x7c00, mode: 'real' };
      },
      /^boot configuration differs \(not used by a restore\)/,
    ],
    [
      'no boot',
      (s) => {
        s.config.boot = null;
      },
      /^boot configuration differs/,
    ],
    [
      'serial output',
      (s) => {
        s.config.serial = [{ kind: 'file', path: '/tmp/com1', append: true }];
      },
      /^COM1 output differs: checkpoint stdio, this VM file:\/tmp\/com1$/,
    ],
    [
      'debugcon output',
      (s) => {
        s.config.debugcon[0].output = { kind: 'stdio' };
        s.config.debugcon[0].timestamps = true;
      },
      /^isa-debugcon at port 0xe9 output differs: checkpoint null, this VM stdio with timestamps$/,
    ],
    [
      'name',
      (s) => {
        s.config.name = 'restored';
      },
      /^VM name differs: checkpoint tsvmm, this VM restored$/,
    ],
    [
      'backend id',
      (s) => {
        s.config.memory.backendId = null;
      },
      /^memory backend id differs: checkpoint ram0, this VM null$/,
    ],
    [
      'prealloc',
      (s) => {
        s.config.memory.backend = { ...s.config.memory.backend, prealloc: true };
      },
      /^memory backend options differ/,
    ],
    [
      'huge pages',
      (s) => {
        s.ram.hugetlb = true;
        s.ram.hugetlbSize = 2 * MiB;
      },
      /^RAM huge pages differs: checkpoint none, this VM hugetlb 2 MiB$/,
    ],
    [
      'fd number (not compared)',
      (s) => {
        s.ram.fd = 40;
      },
      /^$/,
    ],
    [
      'no-reboot',
      (s) => {
        s.config.noReboot = true;
      },
      /^-no-reboot differs/,
    ],
    [
      'timeout',
      (s) => {
        s.config.timeoutMs = 5000;
      },
      /^timeout \(ms\) differs: checkpoint null, this VM 5000$/,
    ],
    [
      '-S',
      (s) => {
        s.config.startPaused = true;
      },
      /^start paused \(-S\) differs/,
    ],
  ];
  for (const [what, edit, message] of informative) {
    const current = typical();
    edit(current);
    assert.is(describeConfigDifference(typical(), current), null, `${what} must not refuse a restore`);
    const notes = configDifferences(typical(), current);
    assert.ok(
      notes.every((d) => !d.blocksRestore),
      what,
    );
    assert.match(notes.map((d) => d.message).join('\n'), message, what);
  }
});

// ---- property test ----------------------------------------------------------------------------------------------

/** What must match, written down independently of the implementation. */
function mustMatch(s: SavedMachineConfig): string {
  const c = s.config;
  return JSON.stringify([
    c.memory.size,
    s.ram.size,
    s.ram.kind,
    s.ram.path,
    s.ram.offset,
    s.ram.share,
    c.cpus,
    c.cpuModel,
    c.serial.flatMap((spec, i) => (i < 4 && spec.kind !== 'none' ? [i] : [])),
    c.debugcon.map((d) => d.iobase).sort((x, y) => x - y),
    c.debugExit && [c.debugExit.iobase, c.debugExit.iosize],
    c.pvpanic?.ioport,
    (c.vfio ?? []).map((v) => v.rombar ?? true),
  ]);
}

/** `base` with a random few parts taken from another random configuration (often equal, often not). */
function mutate(base: SavedMachineConfig, seed: number): SavedMachineConfig {
  const r = rng(seed);
  const other = randomSaved(rng(seed + 1_000_000));
  const s = clone(base);
  const edits: Array<() => void> = [
    () => {
      s.config.memory = clone(other.config.memory);
      s.ram.size = s.config.memory.size;
    },
    () => {
      s.ram = { ...clone(other.ram), size: s.ram.size };
    },
    () => {
      s.ram.fd = other.ram.fd;
      s.ram.hugetlb = other.ram.hugetlb;
      s.ram.hugetlbSize = other.ram.hugetlbSize;
    },
    () => {
      s.config.cpus = r.chance() ? other.config.cpus : s.config.cpus;
    },
    () => {
      s.config.cpuModel = other.config.cpuModel;
    },
    () => {
      s.config.serial = clone(other.config.serial);
    },
    () => {
      s.config.serial = s.config.serial
        .map((spec) => (spec.kind === 'none' ? spec : randomCharSpec(r)))
        .filter((x) => x.kind !== 'none' || r.chance());
    },
    () => {
      s.config.debugcon = clone(other.config.debugcon);
    },
    () => {
      s.config.debugcon = s.config.debugcon.map((d) => ({ ...d, timestamps: !d.timestamps })).reverse();
    },
    () => {
      s.config.debugExit = clone(other.config.debugExit);
    },
    () => {
      s.config.pvpanic = clone(other.config.pvpanic);
    },
    () => {
      s.config.vfio = clone(other.config.vfio);
    },
    () => {
      s.config.boot = clone(other.config.boot);
      s.config.name = other.config.name;
    },
    () => {
      s.config.noReboot = other.config.noReboot;
      s.config.timeoutMs = other.config.timeoutMs;
      s.config.startPaused = other.config.startPaused;
    },
  ];
  for (const edit of edits) if (r.chance(0.15)) edit();
  return s;
}

test('config difference: over 3000 generated pairs, a restore is refused exactly when a part that must match differs', () => {
  let fits = 0;
  let refused = 0;
  for (let seed = 1; seed <= 3000; seed++) {
    const saved = randomSaved(rng(seed));
    const current = mutate(saved, seed);
    const message = describeConfigDifference(saved, current);
    const shouldFit = mustMatch(saved) === mustMatch(current);
    assert.is(message === null, shouldFit, `seed ${seed}: ${message}`);
    if (message === null) fits++;
    else {
      refused++;
      assert.match(
        message,
        /^(RAM size|RAM backend|vCPU count|CPU model|device list) differs: |^vfio-pci devices differ: /,
        `seed ${seed}`,
      );
    }
    assert.is(describeConfigDifference(saved, clone(saved)), null, `seed ${seed}: a config fits itself`);
  }
  assert.ok(fits > 300 && refused > 300, `both outcomes exercised: ${fits} fit, ${refused} refused`);
});

test.run();
