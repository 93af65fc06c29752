// Guest RAM configuration from QEMU's flags, as plain data, and the step that turns it into mapped RAM.
//
//   -m 512M | -m size=1G             RAM size (a plain number is MiB, as in QEMU; default 128 MiB)
//   -object memory-backend-ram,id=ram0,size=1G[,share=on][,prealloc=on]
//   -object memory-backend-memfd,id=ram0,size=1G[,share=on][,hugetlb=on[,hugetlbsize=2M]][,seal=on]
//   -object memory-backend-file,id=ram0,size=1G,mem-path=/dev/shm/vm0[,share=on][,offset=…][,prealloc=on]
//           (mem-path=/dev/daxX.Y selects device DAX)
//   -machine memory-backend=ram0     which backend is the machine's RAM
//   -mem-path PATH                   QEMU's shorthand for a file backend (a directory gets an unlinked temp file)
//   -mem-prealloc                    every memory backend preallocates unless it says prealloc=off
//
// The rules are QEMU's: the backend named by memory-backend= must exist, -m (if given) must equal its size,
// -mem-path cannot be combined with memory-backend=, and (our addition, since nothing else here consumes one) a
// memory backend that the machine does not use is an error rather than silently wasted RAM.
import { parseQemuOpts, parseSize, QemuOptsError, formatSize, type QemuOpts } from '../util/qemu-opts.js';
import {
  openBackend,
  openBackendFromRecord,
  isDevdaxPath,
  type BackendRecord,
  type BackendSpec,
  type RamBackend,
} from './backends.js';
import { DEVDAX_ALIGN, checkDevdaxAlignment } from './devdax-backend.js';
import { PAGE_SIZE, RamBackendError } from './backend.js';
import { x86RamLayout } from './x86-layout.js';
import { GuestRam, type GuestRamOptions, type RamRegion } from './guest-ram.js';
import { isPowerOfTwo } from '../util/power-of-two.js';
import { MiB } from '../util/sizes.js';
import { alignUp } from '../util/align.js';

/** QEMU's default RAM size for an x86 PC. */
export const DEFAULT_RAM_SIZE = 128 * MiB;
/** QEMU rounds -m up to a multiple of 8 KiB. */
export const RAM_SIZE_ALIGN = 8192;

/** The raw values of the memory flags, as the CLI collected them (each flag may repeat; later keys win). */
export interface MemoryOptionValues {
  m?: string | readonly string[];
  object?: string | readonly string[];
  machine?: string | readonly string[];
  memPath?: string;
  memPrealloc?: boolean;
}

export interface MemoryConfig {
  /** Guest RAM in bytes. */
  size: number;
  /** What holds it. Its size equals `size`. */
  backend: BackendSpec;
  /** The -object id of the backend, or null when -m / -mem-path implied it. */
  backendId: string | null;
}

const BACKEND_TYPES = ['memory-backend-ram', 'memory-backend-memfd', 'memory-backend-file'] as const;
type BackendType = (typeof BACKEND_TYPES)[number];

/** Properties every QEMU memory backend has. merge/dump/prealloc-threads tune the host only and are accepted as no-ops. */
const COMMON_KEYS = ['id', 'size', 'share', 'prealloc', 'merge', 'dump', 'prealloc-threads'];
const TYPE_KEYS: Record<BackendType, string[]> = {
  'memory-backend-ram': [],
  'memory-backend-memfd': ['hugetlb', 'hugetlbsize', 'seal'],
  'memory-backend-file': ['mem-path', 'offset', 'align', 'pmem', 'discard-data'],
};

interface DefinedBackend {
  id: string;
  label: string;
  spec: BackendSpec;
}

function list(v: string | readonly string[] | undefined): readonly string[] {
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

/** Reads the memory flags into a MemoryConfig. Throws QemuOptsError (one line, naming the flag) on any mistake. */
export function parseMemoryOptions(values: MemoryOptionValues): MemoryConfig {
  const prealloc = values.memPrealloc ?? false;
  const mSize = parseMachineSize(list(values.m));

  let backendId: string | null = null;
  for (const text of list(values.machine)) {
    const opts = parseQemuOpts(text, { option: '-machine', impliedKey: 'type' });
    if (opts.has('memory-backend')) backendId = opts.string('memory-backend');
  }
  if (backendId === '') throw new QemuOptsError('-machine', 'memory-backend= needs the id of a memory backend');

  const backends = new Map<string, DefinedBackend>();
  for (const text of list(values.object)) {
    const opts = parseQemuOpts(text, { option: '-object', impliedKey: 'qom-type' });
    const type = opts.implied;
    if (type === undefined) throw new QemuOptsError('-object', `parameter 'qom-type' is missing in '${text}'`);
    if (!type.startsWith('memory-backend-')) continue; // other objects belong to other parts
    if (!(BACKEND_TYPES as readonly string[]).includes(type)) {
      throw new QemuOptsError(`-object ${type}`, `unsupported memory backend type (use ${BACKEND_TYPES.join(', ')})`);
    }
    const defined = parseBackendObject(opts, type as BackendType, prealloc);
    if (backends.has(defined.id)) throw new QemuOptsError(defined.label, `duplicate ID '${defined.id}' for object`);
    backends.set(defined.id, defined);
  }

  if (backendId !== null) {
    if (values.memPath !== undefined)
      throw new QemuOptsError('-mem-path', `cannot be used together with -machine memory-backend=${backendId}`);
    const chosen = backends.get(backendId);
    if (chosen === undefined) {
      throw new QemuOptsError(
        '-machine',
        `memory-backend=${backendId}: no -object memory-backend-* has id=${backendId}`,
      );
    }
    const size = chosen.spec.size;
    if (mSize !== null && mSize !== size) {
      throw new QemuOptsError(
        '-m',
        `${formatSize(mSize)} does not match the size of memory backend '${backendId}' (${formatSize(size)}): give both the same size, or leave out -m`,
      );
    }
    for (const other of backends.values()) {
      if (other !== chosen) throw unused(other);
    }
    return { size, backend: chosen.spec, backendId };
  }

  const first = backends.values().next();
  if (!first.done) throw unused(first.value);

  const size = mSize ?? DEFAULT_RAM_SIZE;
  if (values.memPath !== undefined) {
    const path = values.memPath;
    if (path === '') throw new QemuOptsError('-mem-path', 'empty path');
    if (isDevdaxPath(path)) {
      try {
        checkDevdaxAlignment(path, size, 0);
      } catch (e) {
        throw new QemuOptsError('-mem-path', (e as Error).message);
      }
      return { size, backend: { kind: 'devdax', size, path, prealloc }, backendId: null };
    }
    // QEMU maps -mem-path privately unless told otherwise.
    return { size, backend: { kind: 'file', size, path, share: false, prealloc }, backendId: null };
  }
  return { size, backend: { kind: 'anon', size, prealloc }, backendId: null };
}

function unused(b: DefinedBackend): QemuOptsError {
  return new QemuOptsError(b.label, `memory backend '${b.id}' is never used (add -machine memory-backend=${b.id})`);
}

/** -m [size=]N[,slots=…,maxmem=…]; several -m flags merge, later keys winning (as QEMU does). */
function parseMachineSize(values: readonly string[]): number | null {
  let text: string | undefined;
  for (const v of values) {
    const opts = parseQemuOpts(v, { option: '-m', impliedKey: 'size' });
    opts.checkKnown(['size', 'slots', 'maxmem']);
    for (const key of ['slots', 'maxmem']) {
      if (opts.has(key))
        throw new QemuOptsError('-m', `${key}=${opts.get(key)}: memory hotplug (slots, maxmem) is not supported`);
    }
    if (opts.has('size')) text = opts.string('size');
  }
  if (text === undefined) return values.length ? missing('-m', 'size') : null;
  let size: number;
  try {
    size = parseSize(text, MiB);
  } catch (e) {
    throw new QemuOptsError('-m', (e as Error).message);
  }
  if (size === 0) throw new QemuOptsError('-m', `'${text}': the RAM size must be greater than 0`);
  return alignUp(size, RAM_SIZE_ALIGN);
}

function missing(option: string, key: string): never {
  throw new QemuOptsError(option, `parameter '${key}' is missing`);
}

function parseBackendObject(opts: QemuOpts, type: BackendType, memPrealloc: boolean): DefinedBackend {
  const label = `-object ${type}`;
  if (!opts.has('id')) throw new QemuOptsError(label, "parameter 'id' is missing");
  const id = opts.string('id');
  const where = `${label},id=${id}`;
  const fail = (detail: string): never => {
    throw new QemuOptsError(where, detail);
  };
  opts.checkKnown([...COMMON_KEYS, ...TYPE_KEYS[type]]);
  // Accepted for QEMU compatibility, but still checked so that a typo is not silently ignored.
  opts.bool('merge', true);
  opts.bool('dump', true);
  opts.bool('discard-data', false);
  opts.uint('prealloc-threads', 1);

  if (!opts.has('size')) fail("parameter 'size' is missing");
  const size = opts.size('size');
  if (size === 0) fail("can't create backend with size 0");
  if (size % PAGE_SIZE !== 0) fail(`size=${opts.get('size')} is not a multiple of the ${PAGE_SIZE}-byte page size`);
  const prealloc = opts.bool('prealloc', memPrealloc);

  switch (type) {
    case 'memory-backend-ram':
      return { id, label, spec: { kind: 'anon', size, share: opts.bool('share', false), prealloc } };
    case 'memory-backend-memfd': {
      const hugetlb = opts.bool('hugetlb', false);
      let hugetlbSize: number | undefined;
      if (opts.has('hugetlbsize')) {
        if (!hugetlb) fail(`hugetlbsize=${opts.get('hugetlbsize')} needs hugetlb=on`);
        hugetlbSize = opts.size('hugetlbsize');
        if (!isPowerOfTwo(hugetlbSize)) fail(`hugetlbsize=${opts.get('hugetlbsize')} is not a power of two`);
        if (size % hugetlbSize !== 0)
          fail(`size=${opts.get('size')} is not a multiple of hugetlbsize=${opts.get('hugetlbsize')}`);
      }
      // memfd RAM is shared by default in QEMU: that is what makes its fd useful.
      const share = opts.bool('share', true);
      const seal = opts.bool('seal', true);
      return {
        id,
        label,
        spec: {
          kind: 'memfd',
          size,
          share,
          hugetlb,
          ...(hugetlbSize === undefined ? {} : { hugetlbSize }),
          seal,
          prealloc,
        },
      };
    }
    case 'memory-backend-file': {
      if (!opts.has('mem-path')) fail("parameter 'mem-path' is missing");
      const path = opts.string('mem-path');
      if (path === '') fail('mem-path is empty');
      const offset = opts.size('offset', 0);
      const share = opts.bool('share', false);
      opts.bool('pmem', false);
      const align = opts.size('align', 0);
      if (align !== 0 && !isPowerOfTwo(align)) fail(`align=${opts.get('align')} is not a power of two`);
      if (isDevdaxPath(path)) {
        if (!share) fail(`device DAX (${path}) can only be mapped shared: add share=on`);
        try {
          checkDevdaxAlignment(path, size, offset, Math.max(align, DEVDAX_ALIGN));
        } catch (e) {
          fail((e as Error).message);
        }
        return { id, label, spec: { kind: 'devdax', size, path, offset, prealloc } };
      }
      if (offset % PAGE_SIZE !== 0)
        fail(`offset=${opts.get('offset')} is not a multiple of the ${PAGE_SIZE}-byte page size`);
      if (align > 2 * MiB) fail(`align=${opts.get('align')}: alignments above 2 MiB are only supported for device DAX`);
      return { id, label, spec: { kind: 'file', size, path, share, offset, prealloc } };
    }
  }
}

/** Guest RAM ready for a machine: the backend, a GuestRam over it, and the regions (for KVM memslots). */
export interface MachineRam {
  readonly backend: RamBackend;
  readonly ram: GuestRam;
  /** The x86 layout placed at the backend's mapping: gpa, size, hostAddress, and offset into the backend. */
  readonly regions: ReadonlyArray<RamRegion & { readonly offset: number }>;
  /**
   * Releases this thread's views, then unmaps the RAM and closes the fd. Every other thread's GuestRam over these
   * regions must have been released before.
   */
  close(): void;
}

/** Maps the RAM a MemoryConfig asks for and lays it out as an x86 PC's. */
export function createGuestRam(config: MemoryConfig, options?: GuestRamOptions): MachineRam {
  if (config.backend.size !== config.size) {
    throw new RamBackendError(
      `memory config: backend size ${config.backend.size} differs from RAM size ${config.size}`,
    );
  }
  return attachGuestRam(openBackend(config.backend), options);
}

/** Maps the RAM a checkpoint record describes (see openBackendFromRecord) and lays it out the same way. */
export function openGuestRamFromRecord(
  record: BackendRecord,
  fds: { fd?: number } = {},
  options?: GuestRamOptions,
): MachineRam {
  return attachGuestRam(openBackendFromRecord(record, fds), options);
}

/** The x86 layout over an already-mapped backend. Takes ownership: closes the backend if this fails. */
export function attachGuestRam(backend: RamBackend, options?: GuestRamOptions): MachineRam {
  try {
    const regions = x86RamLayout(backend.size).map((l) =>
      Object.freeze({
        gpa: l.gpa,
        size: l.size,
        offset: l.offset,
        hostAddress: backend.hostAddress + BigInt(l.offset),
      }),
    );
    const ram = new GuestRam(regions, options);
    return {
      backend,
      ram,
      regions,
      close() {
        ram.release();
        backend.close();
      },
    };
  } catch (e) {
    backend.close();
    throw e;
  }
}
