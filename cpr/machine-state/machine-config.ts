// The vmstate descriptor of a machine's configuration (src/machine/config.ts MachineConfig) together with the
// record of the RAM backend it mapped (src/memory/backend.ts BackendRecord), and the converters both ways. This is
// the CONFIG section of a checkpoint: a new process compares it with its own (config-difference.ts) before it
// restores anything, and maps the same RAM from the backend record.
//
// Strings (names, paths, the kernel command line, enum words such as a backend kind) are vmstate `str()` fields:
// UTF-8 bytes with a length field. Enum words stay words rather than codes so that a dump is readable and a word this version does not know
// is refused by name. Optional values (`initrd?`, `share?`, a null `boot`) carry a `has…`/`…Present` flag, so
// the round trip gives back exactly the keys that were there; a key whose value is `undefined` counts as absent.
// Every descriptor here says `subsections: []`: without it cpr/vmstate/vmstate.ts's StateOf gives the record type an index
// signature, and a misspelt field name would compile.
import {
  u8,
  u16,
  u32,
  u64,
  i32,
  bool,
  str,
  struct,
  structArray,
  newRecord,
  clearRecord,
  type Descriptor,
  type StateOf,
  type StringFieldName,
} from '../vmstate/vmstate.js';
import type {
  MachineConfig,
  BootConfig,
  DebugconConfig,
  VirtioDeviceConfig,
  VfioDeviceConfig,
} from '../../src/machine/config.js';
import type { MemoryConfig } from '../../src/memory/config.js';
import type { BackendSpec } from '../../src/memory/backends.js';
import type { BackendRecord, BackendKind } from '../../src/memory/backend.js';
import type { CharSpec } from '../../src/chardev/spec.js';
import type { CpuMode } from '../../src/boot/cpu-modes.js';
import type { CpuidPolicy } from '../../kvm/cpuid.js';
import { writeText, readText, toU64, fromU64, checkedCount, oneOf, PATH_MAX } from '../kvm-state/checked.js';

/** Longest enum word (a backend kind, a CPU model, a chardev kind). */
const WORD_MAX = 32;
/** Longest VM name or backend id. */
const NAME_MAX = 256;
/** Longest kernel command line or initrd module list (multiboot has no limit of its own; Linux x86 has 2 KiB). */
const CMDLINE_MAX = 16 * 1024;
/** COM1-COM4: the CLI accepts at most four -serial. */
export const MAX_SERIAL = 4;
/** isa-debugcon devices a record holds. */
export const MAX_DEBUGCON = 16;
/** Most virtio-pci devices a configuration may have. */
export const MAX_VIRTIO = 32;
/** Most vfio-pci devices a record holds (bus 0's slots; the plan refuses more than fit after the virtio ones). */
export const MAX_VFIO = 32;

export const BACKEND_KINDS: readonly BackendKind[] = ['anon', 'memfd', 'file', 'devdax'];
export const CPU_MODELS: readonly CpuidPolicy[] = ['host', 'pvm-safe'];
const CHAR_KINDS: readonly CharSpec['kind'][] = ['stdio', 'file', 'unix', 'pipe', 'null', 'none'];
const BOOT_KINDS: readonly BootConfig['kind'][] = ['kernel', 'flat'];
const CPU_MODES: readonly CpuMode[] = ['real', 'protected', 'long'];

// ---- descriptors ------------------------------------------------------------------------------------------------

/** A character backend (CharSpec): which fields matter depends on `kind`. */
export const charSpecDescriptor = {
  name: 'char-spec',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [...str('kind', WORD_MAX), ...str('path', PATH_MAX), bool('append'), bool('server'), bool('wait')],
} as const satisfies Descriptor;

/** The RAM backend as configured (BackendSpec); each optional property has a `has…` flag. */
export const backendSpecDescriptor = {
  name: 'memory-backend-spec',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    ...str('kind', WORD_MAX),
    u64('size'),
    ...str('path', PATH_MAX), // file, devdax
    bool('hasShare'),
    bool('share'),
    bool('hasTransparentHugePages'),
    bool('transparentHugePages'),
    bool('hasPrealloc'),
    bool('prealloc'),
    bool('hasHugetlb'),
    bool('hugetlb'),
    bool('hasHugetlbSize'),
    u64('hugetlbSize'),
    bool('hasSeal'),
    bool('seal'),
    bool('hasOffset'),
    u64('offset'),
  ],
} as const satisfies Descriptor;

/** MemoryConfig: RAM size, its backend spec and the -object id that named it. */
export const memoryConfigDescriptor = {
  name: 'memory-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    u64('size'),
    struct('backend', backendSpecDescriptor),
    bool('backendIdPresent'),
    ...str('backendId', NAME_MAX),
  ],
} as const satisfies Descriptor;

/** BootConfig or null: a multiboot kernel or a flat binary. */
export const bootConfigDescriptor = {
  name: 'boot-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    bool('present'),
    ...str('kind', WORD_MAX),
    ...str('path', PATH_MAX),
    bool('hasInitrd'),
    ...str('initrd', CMDLINE_MAX),
    ...str('append', CMDLINE_MAX), // kernel
    u64('loadAddress'),
    bool('hasEntry'),
    u64('entry'),
    ...str('mode', WORD_MAX), // flat
  ],
} as const satisfies Descriptor;

export const debugconConfigDescriptor = {
  name: 'debugcon-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [struct('output', charSpecDescriptor), u16('iobase'), bool('timestamps')],
} as const satisfies Descriptor;

export const debugExitConfigDescriptor = {
  name: 'debug-exit-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [bool('present'), u16('iobase'), u8('iosize')],
} as const satisfies Descriptor;

/** QEMU's pvpanic ISA device (-device pvpanic) or none. */
export const pvpanicConfigDescriptor = {
  name: 'pvpanic-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [bool('present'), u16('ioport')],
} as const satisfies Descriptor;

/** A virtio-pci device (VirtioDeviceConfig): which fields matter depends on `kind`. */
export const virtioDeviceConfigDescriptor = {
  name: 'virtio-device-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    ...str('kind', WORD_MAX),
    ...str('id', NAME_MAX),
    ...str('path', PATH_MAX),
    bool('readOnly'),
    bool('hasSerial'),
    ...str('serial', NAME_MAX), // blk
    ...str('ifname', NAME_MAX),
    ...str('mac', WORD_MAX), // net
    struct('output', charSpecDescriptor), // console
  ],
} as const satisfies Descriptor;

/**
 * A passed-through PCI function (VfioDeviceConfig, `-device vfio-pci,host=…|sysfsdev=…[,id=…][,rombar=0]`): host=
 * is spelled into sysfsdev by the CLI, so the sysfs path is the whole address. A reboot-mode restore from the file
 * alone (Machine.restore) opens the function afresh from it.
 */
export const vfioDeviceConfigDescriptor = {
  name: 'vfio-device-config',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [...str('id', NAME_MAX), ...str('sysfsdev', PATH_MAX), bool('romHidden')],
} as const satisfies Descriptor;

/** BackendRecord: what a new process needs to map the same RAM again. */
export const ramBackendRecordDescriptor = {
  name: 'ram-backend',
  version: 1,
  minVersion: 1,
  subsections: [],
  fields: [
    ...str('kind', WORD_MAX),
    u64('size'),
    u64('offset'),
    bool('share'),
    bool('hugetlb'),
    u64('hugetlbSize'),
    bool('pathPresent'),
    ...str('path', PATH_MAX),
    i32('fd'), // in the process that wrote it; informative
  ],
} as const satisfies Descriptor;

/**
 * The CONFIG section: the whole MachineConfig and the RAM backend record. Version 2 added the vfio-pci devices; a
 * version 1 stream (written before) has none.
 */
export const machineConfigDescriptor = {
  name: 'machine-config',
  version: 2,
  minVersion: 1,
  subsections: [],
  // The decoder leaves fields a stream does not have as the record held them, and records are reused (a warm-up
  // decodes this VM's own configuration first): a version 1 stream must not inherit another's devices.
  postLoad: (state: { vfioCount: number }, streamVersion: number) => {
    if (streamVersion < 2) state.vfioCount = 0;
  },
  fields: [
    ...str('name', NAME_MAX),
    struct('memory', memoryConfigDescriptor),
    u32('cpus'),
    ...str('cpuModel', WORD_MAX),
    struct('boot', bootConfigDescriptor),
    u32('serialCount'),
    structArray('serial', charSpecDescriptor, MAX_SERIAL, { lengthField: 'serialCount' }),
    u32('debugconCount'),
    structArray('debugcon', debugconConfigDescriptor, MAX_DEBUGCON, { lengthField: 'debugconCount' }),
    struct('debugExit', debugExitConfigDescriptor),
    bool('noReboot'),
    bool('hasTimeout'),
    u64('timeoutMs'),
    bool('startPaused'),
    struct('ramBackend', ramBackendRecordDescriptor),
    bool('acpi'),
    u32('virtioCount'),
    structArray('virtio', virtioDeviceConfigDescriptor, MAX_VIRTIO, { lengthField: 'virtioCount' }),
    struct('pvpanic', pvpanicConfigDescriptor),
    u32('vfioCount', { since: 2 }),
    structArray('vfio', vfioDeviceConfigDescriptor, MAX_VFIO, { lengthField: 'vfioCount', since: 2 }),
  ],
} as const satisfies Descriptor;

export type MachineConfigRecord = StateOf<typeof machineConfigDescriptor>;
type CharSpecRecord = StateOf<typeof charSpecDescriptor>;
type BackendSpecRecord = StateOf<typeof backendSpecDescriptor>;
type MemoryRecord = StateOf<typeof memoryConfigDescriptor>;
type BootRecord = StateOf<typeof bootConfigDescriptor>;
type DebugconRecord = StateOf<typeof debugconConfigDescriptor>;
type DebugExitRecord = StateOf<typeof debugExitConfigDescriptor>;
type RamBackendRecord = StateOf<typeof ramBackendRecordDescriptor>;
type VirtioRecord = StateOf<typeof virtioDeviceConfigDescriptor>;
type VfioRecord = StateOf<typeof vfioDeviceConfigDescriptor>;

/** What the CONFIG section holds: the configuration and the RAM it mapped. */
export interface SavedMachineConfig {
  config: MachineConfig;
  ram: BackendRecord;
}

// ---- helpers ----------------------------------------------------------------------------------------------------

/** Sets a str() field, with an error that names the config field. */
function setText<R extends object>(r: R, name: StringFieldName<R>, value: string, what: string): void {
  const fields = r as Record<string, unknown>;
  fields[`${name}Length`] = writeText(fields[name] as Uint8Array, value, what);
}

/** Reads a str() field, checking length and UTF-8, with an error that names the config field. */
function getText<R extends object>(r: R, name: StringFieldName<R>, what: string): string {
  const fields = r as Record<string, unknown>;
  return readText(fields[name] as Uint8Array, fields[`${name}Length`] as number, what);
}

/** An integer that must fit the field it goes into. */
function int(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max)
    throw new RangeError(`${what}: ${value} is not an integer in 0..${max}`);
  return value;
}

function flag(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${what}: expected true or false, got ${String(value)}`);
  return value;
}

// ---- config → record --------------------------------------------------------------------------------------------

/**
 * Writes a configuration and its RAM backend record into `record` (a fresh one if none is given). Every string
 * length, count and number range is checked, naming the field that does not fit.
 */
export function machineConfigToRecord(
  config: MachineConfig,
  ram: BackendRecord,
  record?: MachineConfigRecord,
): MachineConfigRecord {
  const r = record ?? newRecord(machineConfigDescriptor);
  if (record) clearRecord(record);
  setText(r, 'name', config.name, 'config name');
  memoryToRecord(config.memory, r.memory);
  r.cpus = int(config.cpus, 0xffff_ffff, 'config cpus');
  setText(r, 'cpuModel', oneOf(config.cpuModel, CPU_MODELS, 'config cpuModel'), 'config cpuModel');
  bootToRecord(config.boot, r.boot);
  if (config.serial.length > MAX_SERIAL)
    throw new RangeError(`config serial: ${config.serial.length} ports, at most ${MAX_SERIAL}`);
  r.serialCount = config.serial.length;
  for (const [i, spec] of config.serial.entries()) charSpecToRecord(spec, r.serial[i], `config serial[${i}]`);
  if (config.debugcon.length > MAX_DEBUGCON)
    throw new RangeError(`config debugcon: ${config.debugcon.length} devices, at most ${MAX_DEBUGCON}`);
  r.debugconCount = config.debugcon.length;
  for (const [i, d] of config.debugcon.entries()) debugconToRecord(d, r.debugcon[i], `config debugcon[${i}]`);
  debugExitToRecord(config.debugExit, r.debugExit);
  r.noReboot = flag(config.noReboot, 'config noReboot');
  r.hasTimeout = config.timeoutMs !== null;
  if (config.timeoutMs !== null) r.timeoutMs = toU64(config.timeoutMs, 'config timeoutMs');
  r.startPaused = flag(config.startPaused, 'config startPaused');
  ramBackendToRecord(ram, r.ramBackend);
  r.acpi = flag(config.acpi, 'config acpi');
  if (config.virtio.length > MAX_VIRTIO)
    throw new RangeError(`config virtio: ${config.virtio.length} devices, at most ${MAX_VIRTIO}`);
  r.virtioCount = config.virtio.length;
  for (const [i, v] of config.virtio.entries()) virtioToRecord(v, r.virtio[i], `config virtio[${i}]`);
  r.pvpanic.present = config.pvpanic !== null;
  if (config.pvpanic !== null) r.pvpanic.ioport = int(config.pvpanic.ioport, 0xffff, 'config pvpanic ioport');
  const vfio = config.vfio ?? [];
  if (vfio.length > MAX_VFIO) throw new RangeError(`config vfio: ${vfio.length} devices, at most ${MAX_VFIO}`);
  r.vfioCount = vfio.length;
  for (const [i, v] of vfio.entries()) vfioToRecord(v, r.vfio[i], `config vfio[${i}]`);
  return r;
}

function vfioToRecord(v: VfioDeviceConfig, r: VfioRecord, what: string): void {
  setText(r, 'id', v.id, `${what} id`);
  setText(r, 'sysfsdev', v.sysfsdev, `${what} sysfsdev`);
  if (v.rombar !== undefined && v.rombar !== false)
    throw new TypeError(`${what} rombar: expected false or absent, got ${String(v.rombar)}`);
  r.romHidden = v.rombar === false;
}

function recordToVfio(r: VfioRecord, what: string): VfioDeviceConfig {
  return {
    id: getText(r, 'id', `${what} id`),
    sysfsdev: getText(r, 'sysfsdev', `${what} sysfsdev`),
    ...(r.romHidden ? { rombar: false as const } : {}),
  };
}

const VIRTIO_KINDS = ['blk', 'net', 'rng', 'console'] as const;

function virtioToRecord(v: VirtioDeviceConfig, r: VirtioRecord, what: string): void {
  setText(r, 'kind', oneOf(v.kind, VIRTIO_KINDS, `${what} kind`), `${what} kind`);
  setText(r, 'id', v.id, `${what} id`);
  switch (v.kind) {
    case 'blk':
      setText(r, 'path', v.path, `${what} path`);
      r.readOnly = flag(v.readOnly, `${what} readOnly`);
      r.hasSerial = v.serial !== null;
      if (v.serial !== null) setText(r, 'serial', v.serial, `${what} serial`);
      break;
    case 'net':
      setText(r, 'ifname', v.ifname, `${what} ifname`);
      setText(r, 'mac', v.mac, `${what} mac`);
      break;
    case 'console':
      charSpecToRecord(v.output, r.output, `${what} output`);
      break;
    case 'rng':
      break;
  }
}

function recordToVirtio(r: VirtioRecord, what: string): VirtioDeviceConfig {
  const kind = oneOf(getText(r, 'kind', `${what} kind`), VIRTIO_KINDS, `${what} kind`);
  const id = getText(r, 'id', `${what} id`);
  switch (kind) {
    case 'blk':
      return {
        kind,
        id,
        path: getText(r, 'path', `${what} path`),
        readOnly: r.readOnly,
        serial: r.hasSerial ? getText(r, 'serial', `${what} serial`) : null,
      };
    case 'net':
      return { kind, id, ifname: getText(r, 'ifname', `${what} ifname`), mac: getText(r, 'mac', `${what} mac`) };
    case 'console':
      return { kind, id, output: recordToCharSpec(r.output, `${what} output`) };
    case 'rng':
      return { kind, id };
  }
}

function charSpecToRecord(s: CharSpec, r: CharSpecRecord, what: string): void {
  setText(r, 'kind', oneOf(s.kind, CHAR_KINDS, `${what} kind`), `${what} kind`);
  switch (s.kind) {
    case 'file':
      setText(r, 'path', s.path, `${what} path`);
      r.append = flag(s.append, `${what} append`);
      break;
    case 'unix':
      setText(r, 'path', s.path, `${what} path`);
      r.server = flag(s.server, `${what} server`);
      r.wait = flag(s.wait, `${what} wait`);
      break;
    case 'pipe':
      setText(r, 'path', s.path, `${what} path`);
      break;
    default:
      break; // stdio, null, none: the kind is everything
  }
}

function backendSpecToRecord(s: BackendSpec, r: BackendSpecRecord): void {
  const what = 'config memory backend';
  setText(r, 'kind', oneOf(s.kind, BACKEND_KINDS, `${what} kind`), `${what} kind`);
  r.size = toU64(s.size, `${what} size`);
  if (s.kind === 'file' || s.kind === 'devdax') setText(r, 'path', s.path, `${what} path`);
  // Each optional property of the spec's kinds: present → flag + value.
  const o = s as {
    share?: boolean;
    transparentHugePages?: boolean;
    prealloc?: boolean;
    hugetlb?: boolean;
    hugetlbSize?: number;
    seal?: boolean;
    offset?: number;
  };
  r.hasShare = o.share !== undefined;
  if (o.share !== undefined) r.share = flag(o.share, `${what} share`);
  r.hasTransparentHugePages = o.transparentHugePages !== undefined;
  if (o.transparentHugePages !== undefined)
    r.transparentHugePages = flag(o.transparentHugePages, `${what} transparentHugePages`);
  r.hasPrealloc = o.prealloc !== undefined;
  if (o.prealloc !== undefined) r.prealloc = flag(o.prealloc, `${what} prealloc`);
  r.hasHugetlb = o.hugetlb !== undefined;
  if (o.hugetlb !== undefined) r.hugetlb = flag(o.hugetlb, `${what} hugetlb`);
  r.hasHugetlbSize = o.hugetlbSize !== undefined;
  if (o.hugetlbSize !== undefined) r.hugetlbSize = toU64(o.hugetlbSize, `${what} hugetlbSize`);
  r.hasSeal = o.seal !== undefined;
  if (o.seal !== undefined) r.seal = flag(o.seal, `${what} seal`);
  r.hasOffset = o.offset !== undefined;
  if (o.offset !== undefined) r.offset = toU64(o.offset, `${what} offset`);
}

function memoryToRecord(m: MemoryConfig, r: MemoryRecord): void {
  r.size = toU64(m.size, 'config memory size');
  backendSpecToRecord(m.backend, r.backend);
  r.backendIdPresent = m.backendId !== null;
  if (m.backendId !== null) setText(r, 'backendId', m.backendId, 'config memory backendId');
}

function bootToRecord(b: BootConfig | null, r: BootRecord): void {
  r.present = b !== null;
  if (b === null) return;
  setText(r, 'kind', oneOf(b.kind, BOOT_KINDS, 'config boot kind'), 'config boot kind');
  setText(r, 'path', b.path, 'config boot path');
  if (b.kind === 'kernel') {
    r.hasInitrd = b.initrd !== undefined;
    if (b.initrd !== undefined) setText(r, 'initrd', b.initrd, 'config boot initrd');
    setText(r, 'append', b.append, 'config boot append');
  } else {
    r.loadAddress = toU64(b.loadAddress, 'config boot loadAddress');
    r.hasEntry = b.entry !== undefined;
    if (b.entry !== undefined) r.entry = toU64(b.entry, 'config boot entry');
    setText(r, 'mode', oneOf(b.mode, CPU_MODES, 'config boot mode'), 'config boot mode');
  }
}

function debugconToRecord(d: DebugconConfig, r: DebugconRecord, what: string): void {
  charSpecToRecord(d.output, r.output, `${what} output`);
  r.iobase = int(d.iobase, 0xffff, `${what} iobase`);
  r.timestamps = flag(d.timestamps, `${what} timestamps`);
}

function debugExitToRecord(d: MachineConfig['debugExit'], r: DebugExitRecord): void {
  r.present = d !== null;
  if (d === null) return;
  r.iobase = int(d.iobase, 0xffff, 'config debugExit iobase');
  r.iosize = int(d.iosize, 0xff, 'config debugExit iosize');
}

function ramBackendToRecord(b: BackendRecord, r: RamBackendRecord): void {
  const what = 'RAM backend record';
  setText(r, 'kind', oneOf(b.kind, BACKEND_KINDS, `${what} kind`), `${what} kind`);
  r.size = toU64(b.size, `${what} size`);
  r.offset = toU64(b.offset, `${what} offset`);
  r.share = flag(b.share, `${what} share`);
  r.hugetlb = flag(b.hugetlb, `${what} hugetlb`);
  r.hugetlbSize = toU64(b.hugetlbSize, `${what} hugetlbSize`);
  r.pathPresent = b.path !== null;
  if (b.path !== null) setText(r, 'path', b.path, `${what} path`);
  if (!Number.isInteger(b.fd) || b.fd < -1 || b.fd > 0x7fff_ffff)
    throw new RangeError(`${what} fd: ${b.fd} is not -1 or an fd number`);
  r.fd = b.fd;
}

// ---- record → config --------------------------------------------------------------------------------------------

/** The configuration and RAM backend record a CONFIG record holds; every length, count and word is checked. */
export function recordToMachineConfig(r: MachineConfigRecord): SavedMachineConfig {
  const serialCount = checkedCount(r.serialCount, MAX_SERIAL, 'config record serial');
  const debugconCount = checkedCount(r.debugconCount, MAX_DEBUGCON, 'config record debugcon');
  const config: MachineConfig = {
    name: getText(r, 'name', 'config record name'),
    memory: recordToMemory(r.memory),
    cpus: r.cpus,
    cpuModel: oneOf(getText(r, 'cpuModel', 'config record cpuModel'), CPU_MODELS, 'config record cpuModel'),
    boot: recordToBoot(r.boot),
    serial: r.serial.slice(0, serialCount).map((s, i) => recordToCharSpec(s, `config record serial[${i}]`)),
    debugcon: r.debugcon.slice(0, debugconCount).map((d, i) => recordToDebugcon(d, `config record debugcon[${i}]`)),
    debugExit: r.debugExit.present ? { iobase: r.debugExit.iobase, iosize: r.debugExit.iosize } : null,
    noReboot: r.noReboot,
    timeoutMs: r.hasTimeout ? fromU64(r.timeoutMs, 'config record timeoutMs') : null,
    startPaused: r.startPaused,
    acpi: r.acpi,
    virtio: r.virtio
      .slice(0, checkedCount(r.virtioCount, MAX_VIRTIO, 'config record virtio'))
      .map((v, i) => recordToVirtio(v, `config record virtio[${i}]`)),
    pvpanic: r.pvpanic.present ? { ioport: r.pvpanic.ioport } : null,
  };
  // As the CLI gives it: no key when there is no passed-through function.
  const vfio = r.vfio
    .slice(0, checkedCount(r.vfioCount, MAX_VFIO, 'config record vfio'))
    .map((v, i) => recordToVfio(v, `config record vfio[${i}]`));
  if (vfio.length) config.vfio = vfio;
  return { config, ram: recordToRamBackend(r.ramBackend) };
}

function recordToCharSpec(r: CharSpecRecord, what: string): CharSpec {
  const kind = oneOf(getText(r, 'kind', `${what} kind`), CHAR_KINDS, `${what} kind`);
  const path = () => getText(r, 'path', `${what} path`);
  switch (kind) {
    case 'file':
      return { kind, path: path(), append: r.append };
    case 'unix':
      return { kind, path: path(), server: r.server, wait: r.wait };
    case 'pipe':
      return { kind, path: path() };
    default:
      return { kind };
  }
}

function recordToBackendSpec(r: BackendSpecRecord): BackendSpec {
  const what = 'config record memory backend';
  const kind = oneOf(getText(r, 'kind', `${what} kind`), BACKEND_KINDS, `${what} kind`);
  const size = fromU64(r.size, `${what} size`);
  const share = r.hasShare ? { share: r.share } : {};
  const prealloc = r.hasPrealloc ? { prealloc: r.prealloc } : {};
  const offset = r.hasOffset ? { offset: fromU64(r.offset, `${what} offset`) } : {};
  switch (kind) {
    case 'anon':
      return {
        kind,
        size,
        ...share,
        ...(r.hasTransparentHugePages ? { transparentHugePages: r.transparentHugePages } : {}),
        ...prealloc,
      };
    case 'memfd':
      return {
        kind,
        size,
        ...share,
        ...(r.hasHugetlb ? { hugetlb: r.hugetlb } : {}),
        ...(r.hasHugetlbSize ? { hugetlbSize: fromU64(r.hugetlbSize, `${what} hugetlbSize`) } : {}),
        ...(r.hasSeal ? { seal: r.seal } : {}),
        ...prealloc,
      };
    case 'file':
      return { kind, size, path: getText(r, 'path', `${what} path`), ...share, ...offset, ...prealloc };
    case 'devdax':
      return { kind, size, path: getText(r, 'path', `${what} path`), ...offset, ...prealloc };
  }
}

function recordToMemory(r: MemoryRecord): MemoryConfig {
  return {
    size: fromU64(r.size, 'config record memory size'),
    backend: recordToBackendSpec(r.backend),
    backendId: r.backendIdPresent ? getText(r, 'backendId', 'config record memory backendId') : null,
  };
}

function recordToBoot(r: BootRecord): BootConfig | null {
  if (!r.present) return null;
  const kind = oneOf(getText(r, 'kind', 'config record boot kind'), BOOT_KINDS, 'config record boot kind');
  const path = getText(r, 'path', 'config record boot path');
  if (kind === 'kernel') {
    return {
      kind,
      path,
      ...(r.hasInitrd ? { initrd: getText(r, 'initrd', 'config record boot initrd') } : {}),
      append: getText(r, 'append', 'config record boot append'),
    };
  }
  return {
    kind,
    path,
    loadAddress: fromU64(r.loadAddress, 'config record boot loadAddress'),
    ...(r.hasEntry ? { entry: fromU64(r.entry, 'config record boot entry') } : {}),
    mode: oneOf(getText(r, 'mode', 'config record boot mode'), CPU_MODES, 'config record boot mode'),
  };
}

function recordToDebugcon(r: DebugconRecord, what: string): DebugconConfig {
  return { output: recordToCharSpec(r.output, `${what} output`), iobase: r.iobase, timestamps: r.timestamps };
}

function recordToRamBackend(r: RamBackendRecord): BackendRecord {
  const what = 'config record RAM backend';
  return {
    kind: oneOf(getText(r, 'kind', `${what} kind`), BACKEND_KINDS, `${what} kind`),
    size: fromU64(r.size, `${what} size`),
    offset: fromU64(r.offset, `${what} offset`),
    share: r.share,
    hugetlb: r.hugetlb,
    hugetlbSize: fromU64(r.hugetlbSize, `${what} hugetlbSize`),
    path: r.pathPresent ? getText(r, 'path', `${what} path`) : null,
    fd: r.fd,
  };
}
