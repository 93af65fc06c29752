// Test support for the config tests: a seeded generator of machine configurations and RAM backend records that
// covers every kind, every optional property present and absent, and awkward strings. Not used outside tests.
import type { VirtioDeviceConfig, VfioDeviceConfig, MachineConfig, BootConfig } from '../../src/machine/config.js';
import type { BackendSpec } from '../../src/memory/backends.js';
import type { BackendRecord } from '../../src/memory/backend.js';
import type { CharSpec } from '../../src/chardev/spec.js';
import type { SavedMachineConfig } from './machine-config.js';

/** mulberry32: a small seeded PRNG, so a failing case can be replayed from its seed. */
export function rng(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)];
  const chance = (p = 0.5) => next() < p;
  return { next, int, pick, chance };
}

export interface Random {
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p?: number): boolean;
}

const PIECES = ['vm', '/dev/shm/', 'tsvmm', 'é', '😀', ',', ' ', 'a=b', '\\', '"', 'Ω', 'x'.repeat(40)];

export function randomText(r: Random, maxPieces = 6): string {
  return Array.from({ length: r.int(0, maxPieces) }, () => r.pick(PIECES)).join('');
}

const path = (r: Random) => `/${randomText(r) || 'p'}`;
const maybe = <T>(r: Random, value: () => T): T | undefined => (r.chance() ? value() : undefined);
/** Adds `key: value` only when the value is defined (an absent optional property has no key). */
function withOptional<T extends object>(base: T, extra: Record<string, unknown>): T {
  return { ...base, ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)) };
}

export function randomCharSpec(r: Random): CharSpec {
  switch (r.pick(['stdio', 'file', 'unix', 'pipe', 'null', 'none'] as const)) {
    case 'stdio':
      return { kind: 'stdio' };
    case 'file':
      return { kind: 'file', path: path(r), append: r.chance() };
    case 'unix': {
      const server = r.chance();
      return { kind: 'unix', path: path(r), server, wait: server && r.chance() };
    }
    case 'pipe':
      return { kind: 'pipe', path: path(r) };
    case 'null':
      return { kind: 'null' };
    case 'none':
      return { kind: 'none' };
  }
}

function randomBackendSpec(r: Random, size: number): BackendSpec {
  const bool = () => maybe(r, () => r.chance());
  switch (r.pick(['anon', 'memfd', 'file', 'devdax'] as const)) {
    case 'anon':
      return withOptional(
        { kind: 'anon' as const, size },
        { share: bool(), transparentHugePages: bool(), prealloc: bool() },
      );
    case 'memfd':
      return withOptional(
        { kind: 'memfd' as const, size },
        {
          share: bool(),
          hugetlb: bool(),
          hugetlbSize: maybe(r, () => 2 ** r.int(21, 30)),
          seal: bool(),
          prealloc: bool(),
        },
      );
    case 'file':
      return withOptional(
        { kind: 'file' as const, size, path: path(r) },
        { share: bool(), offset: maybe(r, () => r.int(0, 1 << 20) * 4096), prealloc: bool() },
      );
    case 'devdax':
      return withOptional(
        { kind: 'devdax' as const, size, path: `/dev/dax${r.int(0, 9)}.${r.int(0, 9)}` },
        { offset: maybe(r, () => r.int(0, 8) * 2 ** 21), prealloc: bool() },
      );
  }
}

function randomBoot(r: Random): BootConfig | null {
  switch (r.int(0, 2)) {
    case 0:
      return null;
    case 1:
      return withOptional(
        { kind: 'kernel' as const, path: path(r), append: randomText(r, 20) },
        { initrd: maybe(r, () => path(r)) },
      );
    default:
      return withOptional(
        {
          kind: 'flat' as const,
          path: path(r),
          loadAddress: r.int(0, 2 ** 40),
          mode: r.pick(['real', 'protected', 'long'] as const),
        },
        { entry: maybe(r, () => r.int(0, Number.MAX_SAFE_INTEGER)) },
      );
  }
}

export function randomRamRecord(r: Random, size: number): BackendRecord {
  const hugetlb = r.chance(0.3);
  return {
    kind: r.pick(['anon', 'memfd', 'file', 'devdax'] as const),
    size,
    offset: r.chance() ? 0 : r.int(1, 1 << 20) * 4096,
    share: r.chance(),
    hugetlb,
    hugetlbSize: hugetlb ? 2 ** r.int(21, 30) : 0,
    path: r.chance(0.3) ? null : path(r),
    fd: r.int(-1, 1000),
  };
}

function randomVirtio(r: Random, i: number): VirtioDeviceConfig {
  const id = `dev${i}-${randomText(r, 2)}`;
  switch (r.pick(['blk', 'net', 'rng', 'console'] as const)) {
    case 'blk':
      return {
        kind: 'blk',
        id,
        path: `/images/${randomText(r, 3)}.img`,
        readOnly: r.chance(),
        serial: r.chance() ? null : `S${r.int(0, 99999)}`,
      };
    case 'net':
      return {
        kind: 'net',
        id,
        ifname: `tap${r.int(0, 99)}`,
        mac: `52:54:00:12:34:${r.int(0, 255).toString(16).padStart(2, '0')}`,
      };
    case 'rng':
      return { kind: 'rng', id };
    case 'console':
      return { kind: 'console', id, output: randomCharSpec(r) };
  }
}

/** A passed-through function as the CLI gives it: host= spelled into its sysfs path, rombar=0 or no key. */
export function randomVfio(r: Random, i: number): VfioDeviceConfig {
  const bdf = `0000:${r.int(0, 255).toString(16).padStart(2, '0')}:${r.int(0, 31).toString(16).padStart(2, '0')}.${r.int(0, 7)}`;
  const sysfsdev = r.chance(0.8) ? `/sys/bus/pci/devices/${bdf}` : path(r);
  return withOptional({ id: `vfio${i}${randomText(r, 2)}`, sysfsdev }, { rombar: maybe(r, () => false as const) });
}

export function randomSaved(r: Random): SavedMachineConfig {
  const size = r.int(1, 2 ** 23) * 8192; // up to 64 GiB, QEMU's 8 KiB granularity
  const ports = new Set<number>();
  const debugcon = Array.from({ length: r.int(0, 3) }, () => {
    let iobase: number;
    do iobase = r.int(0, 0xffff);
    while (ports.has(iobase));
    ports.add(iobase);
    return { output: randomCharSpec(r), iobase, timestamps: r.chance() };
  });
  const config: MachineConfig = {
    name: randomText(r),
    memory: { size, backend: randomBackendSpec(r, size), backendId: r.chance() ? null : randomText(r) },
    cpus: r.int(1, 255),
    cpuModel: r.pick(['host', 'pvm-safe'] as const),
    boot: randomBoot(r),
    serial: Array.from({ length: r.int(0, 4) }, () => randomCharSpec(r)),
    debugcon,
    debugExit: r.chance() ? null : { iobase: r.int(0, 0xffff), iosize: r.pick([1, 2, 4]) },
    noReboot: r.chance(),
    timeoutMs: r.chance() ? null : r.int(0, 2 ** 40),
    startPaused: r.chance(),
    acpi: r.chance(),
    virtio: Array.from({ length: r.int(0, 4) }, (_, i) => randomVirtio(r, i)),
    pvpanic: r.chance() ? null : { ioport: r.int(0, 0xffff) },
  };
  const ram = randomRamRecord(r, size);
  // Drawn last, so every earlier part is what the same seed gave before vfio-pci was in the record. None: no key.
  const vfio = Array.from({ length: r.chance() ? 0 : r.int(1, 3) }, (_, i) => randomVfio(r, i));
  if (vfio.length) config.vfio = vfio;
  return { config, ram };
}

/** A deep copy of plain data (structuredClone keeps exactly the keys that are there). */
export const clone = <T>(x: T): T => structuredClone(x);
