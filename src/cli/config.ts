// From `tsvmm run` flags to a MachineConfig: the meaning of each QEMU-spelled option, with one clear line for
// every mistake (UsageError), before anything is created.
import { parseQemuOpts, QemuOptsError, type QemuOpts } from '../util/qemu-opts.js';
import { UsageError, type RunArgs } from './args.js';
import { parseSmp } from './smp.js';
import { parseMemoryOptions } from '../memory/config.js';
import { parseCharSpec, charSpecFromChardev, CharSpecError, type CharSpec } from '../chardev/index.js';
import type {
  VfioDeviceConfig,
  VirtioDeviceConfig,
  BootConfig,
  DebugconConfig,
  MachineConfig,
  PanicAction,
} from '../machine/config.js';
import type { CpuMode } from '../boot/cpu-modes.js';
import type { CpuidPolicy } from '../../kvm/cpuid.js';
import { PVPANIC_DEFAULT_IOPORT } from '../../devices/pvpanic.js';

/** tsvmm's isa-debug-exit defaults: the port every test-guest suite uses (QEMU's own default is 0x501/2). */
export const DEBUG_EXIT_DEFAULT = { iobase: 0xf4, iosize: 4 };
const DEBUGCON_DEFAULT_IOBASE = 0xe9;

const CPU_MODELS: Record<string, CpuidPolicy> = { host: 'host', max: 'host', 'pvm-safe': 'pvm-safe' };
const MACHINE_TYPES = new Set(['pc', 'pc-i440fx', 'tsvmm']);

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof QemuOptsError || e instanceof CharSpecError) throw new UsageError(e.message);
    throw e;
  }
}

function parseMachine(values: readonly string[]): void {
  for (const text of values) {
    const opts = parseQemuOpts(text, { option: '-machine', impliedKey: 'type' });
    opts.checkKnown(['type', 'memory-backend', 'accel', 'kernel-irqchip', 'acpi', 'pvpanic']);
    const type = opts.implied;
    if (type !== undefined && !MACHINE_TYPES.has(type))
      throw new UsageError(`-machine: type '${type}' is not supported (tsvmm emulates a PC: use pc)`);
    if (opts.has('accel') && opts.string('accel') !== 'kvm')
      throw new UsageError(`-machine: accel=${opts.string('accel')}: only kvm is supported`);
    if (opts.has('kernel-irqchip') && !opts.bool('kernel-irqchip', true)) {
      throw new UsageError('-machine: kernel-irqchip=off is not supported (tsvmm uses the in-kernel irqchip)');
    }
  }
}

/** A -machine switch that is on unless turned off (acpi=, pvpanic=). */
function machineSwitch(values: readonly string[], key: string): boolean {
  let on = true;
  for (const text of values) {
    const opts = parseQemuOpts(text, { option: '-machine', impliedKey: 'type' });
    if (opts.has(key)) on = opts.bool(key, true);
  }
  return on;
}

/**
 * The pvpanic device: where -device pvpanic puts it; otherwise, with ACPI, at QEMU's port by default (so a Linux
 * guest with `panic=-1` and its pvpanic driver ends tsvmm with a distinct status), unless -machine pvpanic=off.
 */
function pvpanicDevice(explicit: MachineConfig['pvpanic'], acpi: boolean, wanted: boolean): MachineConfig['pvpanic'] {
  if (explicit) return explicit;
  return acpi && wanted ? { ioport: PVPANIC_DEFAULT_IOPORT } : null;
}

/** QEMU's -action: reboot=reset|shutdown, shutdown=poweroff|pause, panic=…; later options win, as in QEMU. */
function parseActions(
  values: readonly string[],
  args: RunArgs,
): { noReboot: boolean; noShutdown: boolean; panicAction: PanicAction } {
  const out = { noReboot: args.noReboot, noShutdown: args.noShutdown, panicAction: 'exit-failure' as PanicAction };
  const choose = <T extends string>(opts: QemuOpts, key: string, allowed: readonly T[]): T | undefined => {
    if (!opts.has(key)) return undefined;
    const value = opts.string(key);
    if (!(allowed as readonly string[]).includes(value))
      throw new UsageError(`-action: ${key}=${value} must be one of ${allowed.join(', ')}`);
    return value as T;
  };
  for (const text of values) {
    const opts = parseQemuOpts(text, { option: '-action' });
    opts.checkKnown(['reboot', 'shutdown', 'panic']);
    const reboot = choose(opts, 'reboot', ['reset', 'shutdown'] as const);
    if (reboot) out.noReboot = reboot === 'shutdown';
    const shutdown = choose(opts, 'shutdown', ['poweroff', 'pause'] as const);
    if (shutdown) out.noShutdown = shutdown === 'pause';
    out.panicAction = choose(opts, 'panic', ['exit-failure', 'shutdown', 'pause', 'none'] as const) ?? out.panicAction;
  }
  return out;
}

function number(opts: QemuOpts, key: string, fallback?: number): number | undefined {
  if (!opts.has(key)) return fallback;
  const text = opts.string(key);
  const value = Number(text);
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text) || !Number.isSafeInteger(value)) {
    throw new UsageError(`${opts.label}: ${key}=${text} is not a number`);
  }
  return value;
}

interface Devices {
  debugExit: MachineConfig['debugExit'];
  pvpanic: MachineConfig['pvpanic'];
  debugcon: DebugconConfig[];
  loader: BootConfig | null;
  virtio: VirtioDeviceConfig[];
  vfio: VfioDeviceConfig[];
}

interface Drive {
  path: string;
  readOnly: boolean;
  used: boolean;
}
interface Netdev {
  ifname: string;
  used: boolean;
}

/** `-drive file=…,if=none,id=…,format=raw[,readonly=on]`; if=virtio drives become virtio-blk devices directly. */
function parseDrives(values: readonly string[]): { drives: Map<string, Drive>; implicit: VirtioDeviceConfig[] } {
  const drives = new Map<string, Drive>();
  const implicit: VirtioDeviceConfig[] = [];
  values.forEach((text, n) => {
    const opts = parseQemuOpts(text, { option: '-drive', impliedKey: 'file' });
    opts.checkKnown(['file', 'if', 'id', 'format', 'readonly', 'cache', 'aio', 'discard', 'media']);
    if (!opts.has('file')) throw new UsageError(`-drive '${text}': needs file=PATH`);
    const format = opts.string('format', 'raw');
    if (format !== 'raw') throw new UsageError(`-drive: format=${format} is not supported (tsvmm reads raw images)`);
    const iface = opts.string('if', 'none');
    const drive = { path: opts.string('file'), readOnly: opts.bool('readonly', false), used: false };
    if (iface === 'virtio') {
      implicit.push({
        kind: 'blk',
        id: opts.string('id', `virtio-disk${n}`),
        path: drive.path,
        readOnly: drive.readOnly,
        serial: null,
      });
    } else if (iface === 'none') {
      if (!opts.has('id'))
        throw new UsageError(`-drive ${drive.path}: if=none needs id=NAME (for -device virtio-blk-pci,drive=NAME)`);
      const id = opts.string('id');
      if (drives.has(id)) throw new UsageError(`-drive: id '${id}' is defined twice`);
      drives.set(id, drive);
    } else {
      throw new UsageError(
        `-drive: if=${iface} is not supported (use if=none with -device virtio-blk-pci, or if=virtio)`,
      );
    }
  });
  return { drives, implicit };
}

/** `-netdev tap,id=…,ifname=…[,script=no,downscript=no]`. */
function parseNetdevs(values: readonly string[]): Map<string, Netdev> {
  const map = new Map<string, Netdev>();
  for (const text of values) {
    const opts = parseQemuOpts(text, { option: '-netdev', impliedKey: 'type' });
    if (opts.implied !== 'tap') throw new UsageError(`-netdev ${opts.implied ?? text}: only tap is supported`);
    opts.checkKnown(['type', 'id', 'ifname', 'script', 'downscript', 'vhost', 'queues']);
    if (!opts.has('id') || !opts.has('ifname')) throw new UsageError('-netdev tap: needs id=NAME and ifname=TAP');
    for (const key of ['script', 'downscript']) {
      if (opts.has(key) && opts.string(key) !== 'no')
        throw new UsageError(`-netdev tap: ${key}= is not supported (use ${key}=no and set the tap up yourself)`);
    }
    if (opts.has('vhost') && opts.bool('vhost', false)) throw new UsageError('-netdev tap: vhost=on is not supported');
    const id = opts.string('id');
    if (map.has(id)) throw new UsageError(`-netdev: id '${id}' is defined twice`);
    map.set(id, { ifname: opts.string('ifname'), used: false });
  }
  return map;
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;

/** A PCI address as QEMU's host= takes it: [domain:]bus:slot.function, hex, e.g. 0000:00:03.0 or 00:03.0. */
const PCI_ADDRESS = /^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i;

/** `host=` spelled as sysfs names the function (0000:00:03.0), or null when it is not a PCI address. */
export function canonicalPciAddress(text: string): string | null {
  const m = PCI_ADDRESS.exec(text);
  if (!m) return null;
  const [, domain = '0', bus, slot, fn] = m;
  if (Number.parseInt(slot, 16) > 0x1f) return null;
  return `${domain.padStart(4, '0')}:${bus.padStart(2, '0')}:${slot.padStart(2, '0')}.${fn}`.toLowerCase();
}

const SYSFS_PCI_DEVICES = '/sys/bus/pci/devices';

/** `-device vfio-pci,host=…|sysfsdev=…`: QEMU's options and error text. */
function parseVfioPci(opts: QemuOpts, index: number): VfioDeviceConfig {
  opts.checkKnown(['driver', 'id', 'host', 'sysfsdev', 'addr', 'bus', 'rombar', 'multifunction']);
  const hasHost = opts.has('host');
  const hasSysfs = opts.has('sysfsdev');
  if (!hasHost && !hasSysfs)
    throw new UsageError(
      '-device vfio-pci: No provided host device - Use -device vfio-pci,host=DDDD:BB:DD.F or -device vfio-pci,sysfsdev=PATH_TO_DEVICE',
    );
  if (hasHost && hasSysfs) throw new UsageError('-device vfio-pci: give host= or sysfsdev=, not both');
  const rombar = opts.has('rombar') ? opts.string('rombar') : '1';
  if (rombar !== '0' && rombar !== '1') throw new UsageError(`-device vfio-pci: rombar=${rombar} must be 0 or 1`);
  let sysfsdev: string;
  if (hasHost) {
    const host = opts.string('host');
    const bdf = canonicalPciAddress(host);
    if (!bdf)
      throw new UsageError(
        `-device vfio-pci: host=${host} is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hex, e.g. 0000:00:03.0)`,
      );
    sysfsdev = `${SYSFS_PCI_DEVICES}/${bdf}`;
  } else {
    sysfsdev = opts.string('sysfsdev').replace(/\/+$/, '');
    if (!sysfsdev.startsWith('/'))
      throw new UsageError(`-device vfio-pci: sysfsdev=${sysfsdev} must be an absolute path`);
  }
  return { id: opts.string('id', `vfio${index}`), sysfsdev, ...(rombar === '0' ? { rombar: false as const } : {}) };
}

function parseDevices(args: RunArgs, chardevs: Map<string, CharSpec>): Devices {
  const { drives, implicit } = parseDrives(args.drive);
  const netdevs = parseNetdevs(args.netdev);
  const out: Devices = {
    debugExit: null,
    pvpanic: null,
    debugcon: [],
    loader: null,
    virtio: [...implicit],
    vfio: [],
  };
  const virtioId = (opts: QemuOpts, kind: string) => opts.string('id', `${kind}${out.virtio.length}`);
  // Accepted for QEMU compatibility: tsvmm's virtio devices are modern-only and PCI placement is automatic.
  const pciCompat = [
    'driver',
    'id',
    'disable-legacy',
    'disable-modern',
    'addr',
    'bus',
    'vectors',
    'romfile',
    'ioeventfd',
  ];
  // QEMU's ioeventfd=off: notifications exit to the VMM (kept only when off, the default being on).
  const notifications = (opts: QemuOpts) => (opts.bool('ioeventfd', true) ? {} : { ioeventfd: false as const });
  const checkModern = (opts: QemuOpts) => {
    if (opts.has('disable-modern') && opts.bool('disable-modern', false))
      throw new UsageError(`${opts.label}: disable-modern=on: tsvmm's virtio devices are modern (virtio 1.x) only`);
  };
  const used = new Set<string>();
  const chardev = (opts: QemuOpts): CharSpec => {
    const id = opts.string('chardev');
    const spec = chardevs.get(id);
    if (!spec) throw new UsageError(`${opts.label}: chardev '${id}' is not defined (add -chardev …,id=${id})`);
    if (used.has(id)) throw new UsageError(`${opts.label}: chardev '${id}' is already used by another device`);
    used.add(id);
    return spec;
  };
  for (const text of args.device) {
    const opts = parseQemuOpts(text, { option: '-device', impliedKey: 'driver' });
    switch (opts.implied) {
      case 'isa-debug-exit': {
        opts.checkKnown(['driver', 'iobase', 'iosize']);
        if (out.debugExit) throw new UsageError('-device isa-debug-exit: given more than once');
        const iobase = number(opts, 'iobase', DEBUG_EXIT_DEFAULT.iobase)!;
        const iosize = number(opts, 'iosize', DEBUG_EXIT_DEFAULT.iosize)!;
        if (![1, 2, 4].includes(iosize))
          throw new UsageError(`-device isa-debug-exit: iosize=${iosize} must be 1, 2 or 4`);
        if (iobase < 0 || iobase + iosize > 0x10000)
          throw new UsageError(`-device isa-debug-exit: iobase=0x${iobase.toString(16)} is outside the I/O space`);
        out.debugExit = { iobase, iosize };
        break;
      }
      case 'pvpanic': {
        opts.checkKnown(['driver', 'id', 'ioport']);
        if (out.pvpanic) throw new UsageError('-device pvpanic: given more than once');
        const ioport = number(opts, 'ioport', PVPANIC_DEFAULT_IOPORT)!;
        if (ioport >= 0x10000)
          throw new UsageError(`-device pvpanic: ioport=0x${ioport.toString(16)} is outside the I/O space`);
        out.pvpanic = { ioport };
        break;
      }
      case 'isa-debugcon': {
        opts.checkKnown(['driver', 'iobase', 'chardev', 'timestamps']);
        const iobase = number(opts, 'iobase', DEBUGCON_DEFAULT_IOBASE)!;
        if (iobase < 0 || iobase >= 0x10000)
          throw new UsageError(`-device isa-debugcon: iobase=0x${iobase.toString(16)} is outside the I/O space`);
        out.debugcon.push({ output: chardev(opts), iobase, timestamps: opts.bool('timestamps', false) });
        break;
      }
      case 'loader': {
        opts.checkKnown(['driver', 'file', 'addr', 'entry', 'mode', 'cpu-num', 'force-raw']);
        if (out.loader) throw new UsageError('-device loader: only one loader image is supported');
        if (!opts.has('file') || !opts.has('addr'))
          throw new UsageError('-device loader: needs file=PATH and addr=ADDRESS');
        if ((number(opts, 'cpu-num', 0) ?? 0) !== 0)
          throw new UsageError('-device loader: only cpu-num=0 (the boot vCPU) can be started');
        const mode = opts.string('mode', 'real');
        if (mode !== 'real' && mode !== 'protected' && mode !== 'long')
          throw new UsageError(`-device loader: mode=${mode} must be real, protected or long`);
        out.loader = {
          kind: 'flat',
          path: opts.string('file'),
          loadAddress: number(opts, 'addr')!,
          entry: number(opts, 'entry'),
          mode: mode as CpuMode,
        };
        break;
      }
      case 'virtio-blk-pci': {
        opts.checkKnown([...pciCompat, 'drive', 'serial', 'num-queues', 'queue-size']);
        checkModern(opts);
        if (!opts.has('drive'))
          throw new UsageError(
            "-device virtio-blk-pci: parameter 'drive' is missing (add -drive file=…,if=none,id=NAME,format=raw and drive=NAME)",
          );
        const name = opts.string('drive');
        const drive = drives.get(name);
        if (!drive)
          throw new UsageError(
            `-device virtio-blk-pci: drive '${name}' is not defined (add -drive file=…,if=none,id=${name},format=raw)`,
          );
        if (drive.used) throw new UsageError(`-device virtio-blk-pci: drive '${name}' is already used`);
        drive.used = true;
        const serial = opts.has('serial') ? opts.string('serial') : null;
        if (serial !== null && serial.length > 20)
          throw new UsageError('-device virtio-blk-pci: serial is longer than 20 characters');
        out.virtio.push({
          kind: 'blk',
          id: virtioId(opts, 'virtio-blk'),
          path: drive.path,
          readOnly: drive.readOnly,
          serial,
          ...notifications(opts),
        });
        break;
      }
      case 'virtio-net-pci': {
        opts.checkKnown([...pciCompat, 'netdev', 'mac', 'mq']);
        checkModern(opts);
        const name = opts.string('netdev', '');
        const netdev = netdevs.get(name);
        if (!netdev)
          throw new UsageError(
            `-device virtio-net-pci: netdev '${name}' is not defined (add -netdev tap,id=${name || 'NAME'},ifname=TAP,script=no,downscript=no)`,
          );
        if (netdev.used) throw new UsageError(`-device virtio-net-pci: netdev '${name}' is already used`);
        netdev.used = true;
        // QEMU's default MACs start 52:54:00:12:34:56 and count up.
        const mac = opts.string(
          'mac',
          `52:54:00:12:34:${(0x56 + out.virtio.filter((v) => v.kind === 'net').length).toString(16).padStart(2, '0')}`,
        );
        if (!MAC.test(mac)) throw new UsageError(`-device virtio-net-pci: mac=${mac} is not a MAC address`);
        out.virtio.push({
          kind: 'net',
          id: virtioId(opts, 'virtio-net'),
          ifname: netdev.ifname,
          mac: mac.toLowerCase(),
          ...notifications(opts),
        });
        break;
      }
      case 'virtio-rng-pci':
        opts.checkKnown([...pciCompat, 'rng', 'max-bytes', 'period']);
        checkModern(opts);
        out.virtio.push({ kind: 'rng', id: virtioId(opts, 'virtio-rng'), ...notifications(opts) });
        break;
      case 'virtio-serial-pci':
        // QEMU's container for virtconsole ports: tsvmm's virtconsole is a device of its own.
        opts.checkKnown([...pciCompat, 'max_ports']);
        break;
      case 'virtconsole':
        opts.checkKnown(['driver', 'id', 'chardev', 'name', 'nr', 'bus']);
        out.virtio.push({ kind: 'console', id: virtioId(opts, 'virtio-console'), output: chardev(opts) });
        break;
      case 'vfio-pci': {
        const vfio = parseVfioPci(opts, out.vfio.length);
        const twice = out.vfio.find((v) => v.sysfsdev === vfio.sysfsdev);
        if (twice) throw new UsageError(`-device vfio-pci: ${vfio.sysfsdev} is already passed through (${twice.id})`);
        out.vfio.push(vfio);
        break;
      }
      case undefined:
        throw new UsageError(`-device '${text}': no driver name`);
      default:
        throw new UsageError(
          `-device ${opts.implied}: unknown device (tsvmm has isa-debug-exit, isa-debugcon, pvpanic, loader, virtio-blk-pci, virtio-net-pci, virtio-rng-pci, virtconsole, vfio-pci)`,
        );
    }
  }
  const unused = [...chardevs.keys()].filter((id) => !used.has(id));
  if (unused.length) throw new UsageError(`-chardev ${unused[0]}: defined but no device uses it`);
  const unusedDrive = [...drives].find(([, d]) => !d.used);
  if (unusedDrive) throw new UsageError(`-drive ${unusedDrive[0]}: defined but no device uses it`);
  const unusedNet = [...netdevs].find(([, n]) => !n.used);
  if (unusedNet) throw new UsageError(`-netdev ${unusedNet[0]}: defined but no device uses it`);
  return out;
}

function parseChardevs(values: readonly string[]): Map<string, CharSpec> {
  const map = new Map<string, CharSpec>();
  for (const text of values) {
    const opts = parseQemuOpts(text, { option: '-chardev', impliedKey: 'backend' });
    const backend = opts.implied;
    if (!backend) throw new UsageError(`-chardev '${text}': no backend (stdio, file, socket, pipe, null)`);
    if (!opts.has('id')) throw new UsageError(`-chardev ${backend}: needs id=NAME`);
    const id = opts.string('id');
    if (map.has(id)) throw new UsageError(`-chardev: id '${id}' is defined twice`);
    const rest = Object.fromEntries(opts.entries().filter(([k]) => k !== 'backend' && k !== 'id'));
    map.set(id, charSpecFromChardev(backend, rest));
  }
  return map;
}

/** Everything `tsvmm run` was told, checked, as a machine configuration. */
export function machineConfigFromArgs(args: RunArgs): MachineConfig {
  return wrap(() => {
    parseMachine(args.machine);
    const memory = parseMemoryOptions({
      m: args.m,
      object: args.objects,
      machine: args.machine,
      memPath: args.memPath,
      memPrealloc: args.memPrealloc,
    });
    const cpuModel = CPU_MODELS[args.cpu ?? 'host'];
    if (!cpuModel) throw new UsageError(`-cpu ${args.cpu}: unknown model (tsvmm has host, max and pvm-safe)`);
    const chardevs = parseChardevs(args.chardev);
    const devices = parseDevices(args, chardevs);

    let boot: BootConfig | null = devices.loader;
    const kernel = args.kernel;
    if (kernel !== undefined) {
      if (boot) throw new UsageError('-kernel and -device loader cannot both start the guest');
      boot = { kind: 'kernel', path: kernel, initrd: args.initrd, append: args.append ?? '' };
    } else if (args.initrd !== undefined || args.append !== undefined) {
      throw new UsageError(`${args.initrd !== undefined ? '-initrd' : '-append'} needs -kernel`);
    }

    const serial = (args.serial.length ? args.serial : ['stdio']).map(parseCharSpec);
    if (serial.length > 4) throw new UsageError('-serial: at most 4 serial ports (COM1-COM4)');
    const debugcon = [
      ...args.debugcon.map((text) => ({
        output: parseCharSpec(text),
        iobase: DEBUGCON_DEFAULT_IOBASE,
        timestamps: false,
      })),
      ...devices.debugcon,
    ];
    const ports = new Set<number>();
    for (const d of debugcon) {
      if (ports.has(d.iobase)) throw new UsageError(`isa-debugcon: two devices at port 0x${d.iobase.toString(16)}`);
      ports.add(d.iobase);
    }

    const acpi = machineSwitch(args.machine, 'acpi');
    return {
      name: args.name ?? 'tsvmm',
      memory,
      cpus: parseSmp(args.smp),
      cpuModel,
      boot,
      serial,
      debugcon,
      debugExit: devices.debugExit,
      pvpanic: pvpanicDevice(devices.pvpanic, acpi, machineSwitch(args.machine, 'pvpanic')),
      virtio: devices.virtio,
      ...(devices.vfio.length ? { vfio: devices.vfio } : {}),
      acpi,
      ...parseActions(args.action, args),
      timeoutMs: args.timeoutSeconds === undefined ? null : Math.round(args.timeoutSeconds * 1000),
      startPaused: args.startPaused,
    };
  });
}
