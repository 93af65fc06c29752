// Typed options → the `tsvmm run` command line that says the same. Machine.create parses what this returns with the
// CLI's own parser (parseRunArgs, machineConfigFromArgs), so an option means exactly what its flag means and a bad
// value gets the CLI's one-line message. Values are written as given; the parser judges them.
import { UsageError } from '../cli/args.js';
import type { HostOptions, MachineOptions, MemoryOptions, SerialOption } from './options.js';

/** A value inside QEMU's `key=value,…` syntax: a comma is doubled (QemuOpts), so a path may contain one. */
const opt = (value: string | number): string => String(value).replaceAll(',', ',,');

/** QEMU reads a plain -m number as MiB but a plain size= as bytes; the options say MiB for both. */
const size = (value: number | string): string => (typeof value === 'number' ? `${value}M` : value);

const list = <T>(value: T | readonly T[] | undefined): readonly T[] =>
  value === undefined ? [] : Array.isArray(value) ? (value as readonly T[]) : [value as T];

/** The -serial values, 'stream' replaced by `streamSpec` (the chardev that reaches machine.serial). */
export function serialSpecs(serial: HostOptions['serial'], streamSpec: string | null): string[] {
  const specs: readonly SerialOption[] = serial === undefined ? ['stream'] : list(serial);
  if (specs.filter((s) => s === 'stream').length > 1) throw new UsageError("serial: only one port can be 'stream'");
  return specs.map((s) => (s === 'stream' ? (streamSpec ?? 'null') : s));
}

/** True when some serial port is the in-process stream. */
export function wantsStream(serial: HostOptions['serial']): boolean {
  return serial === undefined || list(serial).includes('stream');
}

function memoryArgs(memory: MachineOptions['memory']): string[] {
  if (memory === undefined) return [];
  if (typeof memory !== 'object') return ['-m', String(memory)];
  const m: MemoryOptions = memory;
  let object = `memory-backend-${m.backend ?? 'ram'},id=ram0,size=${opt(size(m.size))}`;
  if (m.path !== undefined) object += `,mem-path=${opt(m.path)}`;
  if (m.share !== undefined) object += `,share=${m.share ? 'on' : 'off'}`;
  if (m.hugetlb) object += ',hugetlb=on';
  if (m.prealloc) object += ',prealloc=on';
  return ['-object', object, '-machine', 'memory-backend=ram0'];
}

/** The host-side flags: serial ports, QMP, timeout, what power-off and panic do. */
export function hostArgv(o: HostOptions, streamSpec: string | null): string[] {
  const argv: string[] = [];
  for (const spec of serialSpecs(o.serial, streamSpec)) argv.push('-serial', spec);
  // A bare path is served like QEMU's `-qmp unix:PATH,server=on,wait=off`: the library's caller connects when it likes.
  for (const q of list(o.qmp)) argv.push('-qmp', q.startsWith('unix:') ? q : `unix:${opt(q)},server=on,wait=off`);
  if (o.timeout !== undefined) argv.push('--timeout', String(o.timeout));
  if (o.noShutdown) argv.push('-no-shutdown');
  if (o.panic !== undefined) argv.push('-action', `panic=${o.panic}`);
  return argv;
}

/** The whole command line for `o`; `streamSpec` is the -serial spec of machine.serial (null: no stream). */
export function argvFromOptions(o: MachineOptions, streamSpec: string | null): string[] {
  const argv: string[] = [];
  if (o.name !== undefined) argv.push('-name', o.name);
  argv.push(...memoryArgs(o.memory));
  if (o.smp !== undefined) argv.push('-smp', String(o.smp));
  if (o.cpu !== undefined) argv.push('-cpu', o.cpu);
  if (o.acpi === false) argv.push('-machine', 'acpi=off');
  if (o.kernel !== undefined) argv.push('-kernel', o.kernel);
  if (o.initrd !== undefined) argv.push('-initrd', o.initrd);
  if (o.append !== undefined) argv.push('-append', o.append);
  list(o.disks).forEach((d, i) => {
    argv.push('-drive', `file=${opt(d.file)},if=none,id=disk${i},format=raw${d.readonly ? ',readonly=on' : ''}`);
    argv.push('-device', `virtio-blk-pci,drive=disk${i}${d.serial !== undefined ? `,serial=${opt(d.serial)}` : ''}`);
  });
  list(o.nics).forEach((n, i) => {
    argv.push('-netdev', `tap,id=net${i},ifname=${opt(n.ifname)}`);
    argv.push('-device', `virtio-net-pci,netdev=net${i}${n.mac !== undefined ? `,mac=${opt(n.mac)}` : ''}`);
  });
  if (o.rng) argv.push('-device', 'virtio-rng-pci');
  if (o.debugExit) {
    const at = o.debugExit === true ? {} : o.debugExit;
    let device = 'isa-debug-exit';
    if (at.iobase !== undefined) device += `,iobase=${at.iobase}`;
    if (at.iosize !== undefined) device += `,iosize=${at.iosize}`;
    argv.push('-device', device);
  }
  if (o.noReboot) argv.push('-no-reboot');
  if (o.paused) argv.push('-S');
  argv.push(...hostArgv(o, streamSpec));
  argv.push(...(o.args ?? []));
  return argv;
}
