// Does a checkpoint fit this VM? Compares the configuration a checkpoint was taken with against the one a new
// process runs, and names differences in words.
//
// What must match (a difference refuses the restore):
//   - RAM size (which also fixes the layout: src/memory/x86-layout.ts derives the regions from the size alone), in
//     the configuration and in the mapped backend;
//   - the RAM backend: its kind, path, offset in the file and shared/private mapping — these decide whether the
//     new process sees the same RAM (a MAP_PRIVATE file mapping never wrote the guest's stores back to the file);
//   - the vCPU count (one vCPU section each; the RTC's CMOS and the MP/ACPI tables carry it too);
//   - the CPU model (the guest already probed CPUID; the vCPU sections carry the table, and the policy decides it
//     for any vCPU state that does not);
//   - the guest-visible device set and its ports: which COM ports exist, the isa-debugcon ports, isa-debug-exit's
//     port and size (each is a device section, and the guest's drivers know the ports), the virtio functions' kinds
//     and the passed-through (vfio-pci) functions' number and whether each shows its expansion ROM.
// What is informative only (reported, never refused):
//   - the boot configuration (kernel, initrd, command line, flat image): a restored guest does not boot again;
//     a later system_reset boots what this process was given;
//   - where character devices write (stdio, a file, a socket) and debugcon timestamps: host-side plumbing;
//   - the VM name, the backend's -object id, prealloc, huge pages (hugetlb, its page size, THP), memfd sealing:
//     host-side choices that do not change what the guest sees;
//   - -no-reboot, the timeout and -S: how this process runs the guest;
//   - which host function a vfio-pci device is (its sysfs path) and its id.
// Not compared at all: the RAM fd number (every process numbers its own fds).
import { COM_PORTS } from '../../devices/serial.js';
import { formatBytes, type BackendRecord } from '../../src/memory/backend.js';
import type { CharSpec } from '../../src/chardev/spec.js';
import type { SavedMachineConfig } from './machine-config.js';
import { hex } from '../../src/util/hex.js';

export interface ConfigDifference {
  /** What differs, in words: "RAM size differs: checkpoint 512 MiB, this VM 1 GiB". */
  readonly message: string;
  /** True when a restore must be refused; false for informative differences. */
  readonly blocksRestore: boolean;
}

/** "file /dev/shm/vm (shared)", "memfd (shared)", "file (unlinked, private) at offset 2 MiB". */
function describeBackend(b: BackendRecord): string {
  const where = b.path ?? (b.kind === 'file' ? '(unlinked)' : '');
  const offset = b.offset !== 0 ? ` at offset ${formatBytes(b.offset)}` : '';
  return `${b.kind}${where ? ` ${where}` : ''} (${b.share ? 'shared' : 'private'})${offset}`;
}

/** The COM ports a config has: index → description. `none` leaves a port out, as the machine does. */
function serialPorts(serial: SavedMachineConfig['config']['serial']): Map<number, string> {
  const ports = new Map<number, string>();
  serial.forEach((spec, i) => {
    if (i < COM_PORTS.length && spec.kind !== 'none')
      ports.set(i, `serial COM${i + 1} (port ${hex(COM_PORTS[i].base)})`);
  });
  return ports;
}

function debugconPorts(c: SavedMachineConfig['config']): Map<number, string> {
  return new Map(c.debugcon.map((d) => [d.iobase, `isa-debugcon at port ${hex(d.iobase)}`]));
}

/** Devices present on one side only, in the order checkpoint-first then this VM's. */
function deviceSetDifferences(saved: Map<number, string>, current: Map<number, string>): string[] {
  const out: string[] = [];
  for (const [key, what] of saved)
    if (!current.has(key)) out.push(`device list differs: checkpoint has ${what}, this VM does not`);
  for (const [key, what] of current)
    if (!saved.has(key)) out.push(`device list differs: this VM has ${what}, the checkpoint does not`);
  return out;
}

/** "file:/tmp/log", "stdio": where a character device goes. */
const describeOutput = (s: CharSpec) => ('path' in s ? `${s.kind}:${s.path}` : s.kind);

/** Plain data as JSON with sorted keys and without undefined values, so equal data compares equal in any key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)),
    );
  });
}

/** Every difference between the checkpoint's configuration and this VM's, the ones that refuse a restore first. */
export function configDifferences(saved: SavedMachineConfig, current: SavedMachineConfig): ConfigDifference[] {
  const blocking: string[] = [];
  const informative: string[] = [];
  const a = saved.config;
  const b = current.config;
  const differs = (list: string[], what: string, x: unknown, y: unknown) => {
    if (x !== y) list.push(`${what} differs: checkpoint ${String(x)}, this VM ${String(y)}`);
  };

  // RAM: size (and with it the layout), then the backend that holds it.
  if (a.memory.size !== b.memory.size) {
    blocking.push(`RAM size differs: checkpoint ${formatBytes(a.memory.size)}, this VM ${formatBytes(b.memory.size)}`);
  } else if (saved.ram.size !== current.ram.size) {
    blocking.push(
      `RAM size differs: checkpoint's backend ${formatBytes(saved.ram.size)}, this VM's ${formatBytes(current.ram.size)}`,
    );
  }
  const ra = saved.ram;
  const rb = current.ram;
  if (ra.kind !== rb.kind || ra.path !== rb.path || ra.offset !== rb.offset || ra.share !== rb.share) {
    blocking.push(`RAM backend differs: checkpoint ${describeBackend(ra)}, this VM ${describeBackend(rb)}`);
  }

  differs(blocking, 'vCPU count', a.cpus, b.cpus);
  differs(blocking, 'CPU model', a.cpuModel, b.cpuModel);

  // The guest-visible devices and their ports.
  blocking.push(...deviceSetDifferences(serialPorts(a.serial), serialPorts(b.serial)));
  blocking.push(...deviceSetDifferences(debugconPorts(a), debugconPorts(b)));
  const exitText = (d: typeof a.debugExit) =>
    d ? `isa-debug-exit at port ${hex(d.iobase)} (size ${d.iosize})` : 'no isa-debug-exit';
  if (exitText(a.debugExit) !== exitText(b.debugExit)) {
    blocking.push(`device list differs: checkpoint has ${exitText(a.debugExit)}, this VM has ${exitText(b.debugExit)}`);
  }

  const pvpanicText = (p: typeof a.pvpanic) => (p ? `pvpanic at port ${hex(p.ioport)}` : 'no pvpanic');
  if (pvpanicText(a.pvpanic) !== pvpanicText(b.pvpanic)) {
    blocking.push(
      `device list differs: checkpoint has ${pvpanicText(a.pvpanic)}, this VM has ${pvpanicText(b.pvpanic)}`,
    );
  }

  // The PCI devices: the same kinds in the same slots (device state sections follow the same order).
  const virtioText = (c: typeof a) =>
    c.virtio
      .map((v, i) => `${v.kind}${v.kind === 'blk' && v.readOnly ? ' (read-only)' : ''} in slot ${i}`)
      .join(', ') || 'no virtio devices';
  if (virtioText(a) !== virtioText(b))
    blocking.push(`virtio devices differ: checkpoint has ${virtioText(a)}, this VM has ${virtioText(b)}`);
  // Passed-through functions follow the virtio ones on bus 0 (a vfio-pci section each, in order); whether the guest
  // sees an expansion ROM (rombar=0) is part of its config space.
  const vfioText = (c: typeof a) =>
    (c.vfio ?? []).map((v) => `vfio-pci ${v.id}${v.rombar === false ? ' (rombar=0)' : ''}`).join(', ') ||
    'no vfio-pci devices';
  const vfioShape = (c: typeof a) => (c.vfio ?? []).map((v) => (v.rombar === false ? 'norom' : 'rom')).join(',');
  if (vfioShape(a) !== vfioShape(b))
    blocking.push(`vfio-pci devices differ: checkpoint has ${vfioText(a)}, this VM has ${vfioText(b)}`);
  differs(blocking, 'ACPI', a.acpi ? 'on' : 'off', b.acpi ? 'on' : 'off');

  // Informative.
  for (const [i, v] of a.virtio.entries()) {
    const w = b.virtio[i];
    if (w && w.kind === v.kind && canonical(v) !== canonical(w))
      informative.push(`virtio device ${i} options differ: checkpoint ${canonical(v)}, this VM ${canonical(w)}`);
  }
  // Which host function: in reboot mode the new process opens it afresh (reset) and the guest's driver sets it up
  // again on resume, so it may sit at another address after a host reboot; the id is a name.
  for (const [i, v] of (a.vfio ?? []).entries()) {
    const w = b.vfio?.[i];
    if (w && (v.sysfsdev !== w.sysfsdev || v.id !== w.id))
      informative.push(
        `vfio-pci device ${i} differs: checkpoint ${v.id} at ${v.sysfsdev}, this VM ${w.id} at ${w.sysfsdev}`,
      );
  }
  if (canonical(a.boot) !== canonical(b.boot)) {
    informative.push(
      `boot configuration differs (not used by a restore): checkpoint ${canonical(a.boot)}, this VM ${canonical(b.boot)}`,
    );
  }
  for (const [i, spec] of a.serial.entries()) {
    const other = b.serial[i];
    if (other && spec.kind !== 'none' && other.kind !== 'none' && canonical(spec) !== canonical(other)) {
      // The short form when it tells them apart, else every option (file append, socket server/wait).
      const show = describeOutput(spec) !== describeOutput(other) ? describeOutput : canonical;
      informative.push(`COM${i + 1} output differs: checkpoint ${show(spec)}, this VM ${show(other)}`);
    }
  }
  for (const d of a.debugcon) {
    const other = b.debugcon.find((x) => x.iobase === d.iobase);
    if (other && canonical(d) !== canonical(other)) {
      const out = (x: typeof d) => `${describeOutput(x.output)}${x.timestamps ? ' with timestamps' : ''}`;
      informative.push(
        `isa-debugcon at port ${hex(d.iobase)} output differs: checkpoint ${out(d)}, this VM ${out(other)}`,
      );
    }
  }
  differs(informative, 'VM name', a.name, b.name);
  differs(informative, 'memory backend id', a.memory.backendId, b.memory.backendId);
  if (canonical(a.memory.backend) !== canonical(b.memory.backend)) {
    informative.push(
      `memory backend options differ: checkpoint ${canonical(a.memory.backend)}, this VM ${canonical(b.memory.backend)}`,
    );
  }
  differs(
    informative,
    'RAM huge pages',
    ra.hugetlb ? `hugetlb ${formatBytes(ra.hugetlbSize)}` : 'none',
    rb.hugetlb ? `hugetlb ${formatBytes(rb.hugetlbSize)}` : 'none',
  );
  differs(informative, '-no-reboot', a.noReboot, b.noReboot);
  differs(informative, 'timeout (ms)', a.timeoutMs, b.timeoutMs);
  differs(informative, 'start paused (-S)', a.startPaused, b.startPaused);

  return [
    ...blocking.map((message) => ({ message, blocksRestore: true })),
    ...informative.map((message) => ({ message, blocksRestore: false })),
  ];
}

/**
 * The first difference that must refuse a restore, in words ("vCPU count differs: checkpoint 2, this VM 4"), or
 * null when the checkpoint fits this VM. Informative differences (configDifferences) never count.
 */
export function describeConfigDifference(saved: SavedMachineConfig, current: SavedMachineConfig): string | null {
  return configDifferences(saved, current).find((d) => d.blocksRestore)?.message ?? null;
}
