// Builds the test guests from source with the system toolchain (gcc, as, ld, objcopy) into <repo>/build/guests/.
// Outputs are cached by a hash of everything that goes into them (sources, flags, tool versions), so repeated test
// runs do not rebuild; concurrent builders each work in their own temp directory and rename atomically.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CpuMode } from '../../src/boot/cpu-modes.js';
import { SetupError } from '../../src/util/setup-error.js';

const run = promisify(execFile);

export type GuestName =
  | 'hello'
  | 'exit-code'
  | 'smp'
  | 'timer'
  | 'rtc'
  | 'counter'
  | 'fwcfg'
  | 'panic'
  | 'realmode-hello'
  | 'longmode-hello'
  | 'outloop'
  | 'lm-shim'
  | 'smp-counter'
  | 'virtio-probe'
  | 'virtio-blk-bench'
  | 'blk-flood'
  | 's3'
  | 'virtio-intx'
  | 's3-rtc'
  | 'realmode-long'
  | 'edu'
  | 'mmio-bench';

export interface BuiltGuest {
  name: GuestName;
  /** The file to hand to `-kernel` (multiboot) or to loadFlat (flat). */
  path: string;
  format: 'multiboot' | 'flat';
  /** Multiboot only: how the image is laid out (both are loadable by QEMU `-kernel` and tsvmm). */
  multiboot?: 'elf32' | 'aout-kludge';
  /** Flat only: where to load it, where it starts, and in which CPU mode. */
  loadAddress?: number;
  entry?: number;
  mode?: CpuMode;
}

/**
 * `headers`: extra headers the sources include (hashed for the cache, not compiled). `bare`: no runtime, no
 * lib/guest.ld — the sources carry their own multiboot header and are linked at `linkAt` (a guest below 1 MiB).
 */
interface MultibootSpec {
  kind: 'multiboot';
  sources: string[];
  aout?: boolean;
  headers?: string[];
  bare?: { linkAt: number };
}
interface FlatSpec {
  kind: 'flat';
  source: string;
  arch: 'i386' | 'x86_64';
  loadAddress: number;
  mode: CpuMode;
}
type GuestSpec = MultibootSpec | FlatSpec;

/** Every guest, its sources (relative to examples/guests/) and how it is built. */
export const GUESTS: Readonly<Record<GuestName, GuestSpec>> = {
  hello: { kind: 'multiboot', sources: ['hello.c'] },
  'exit-code': { kind: 'multiboot', sources: ['exit-code.c'], aout: true },
  smp: { kind: 'multiboot', sources: ['smp.c', 'smp-trampoline.S'] },
  timer: { kind: 'multiboot', sources: ['timer.c'] },
  rtc: { kind: 'multiboot', sources: ['rtc.c'] },
  counter: { kind: 'multiboot', sources: ['counter.c'] },
  fwcfg: { kind: 'multiboot', sources: ['fwcfg.c'], aout: true },
  panic: { kind: 'multiboot', sources: ['panic.c'] },
  's3-rtc': { kind: 'multiboot', sources: ['s3-rtc.c', 's3-rtc-wake.S'] },
  'realmode-long': { kind: 'multiboot', sources: ['realmode-long.S'], bare: { linkAt: 0x8000 } },
  'lm-shim': { kind: 'multiboot', sources: ['lm-shim.c', 'lm-shim-64.S'] },
  'smp-counter': { kind: 'multiboot', sources: ['smp-counter.c', 'smp-trampoline.S'] },
  'virtio-probe': {
    kind: 'multiboot',
    sources: ['virtio-probe.c', 'lib/pci.c', 'lib/virtio.c', 'lib/irq-wait.c', 'lib/irq-wait.S'],
    headers: ['lib/pci.h', 'lib/virtio.h', 'lib/irq-wait.h'],
  },
  'virtio-blk-bench': {
    kind: 'multiboot',
    sources: ['virtio-blk-bench.c', 'lib/pci.c', 'lib/virtio.c', 'lib/irq-wait.c', 'lib/irq-wait.S'],
    headers: ['lib/pci.h', 'lib/virtio.h', 'lib/irq-wait.h'],
  },
  'blk-flood': {
    kind: 'multiboot',
    sources: ['blk-flood.c', 'lib/pci.c', 'lib/virtio.c', 'lib/irq-wait.c', 'lib/irq-wait.S'],
    headers: ['lib/pci.h', 'lib/virtio.h', 'lib/irq-wait.h'],
  },
  'virtio-intx': {
    kind: 'multiboot',
    sources: ['virtio-intx.c', 'lib/pci.c', 'lib/virtio.c', 'lib/irq-wait.c', 'lib/irq-wait.S'],
    headers: ['lib/pci.h', 'lib/virtio.h', 'lib/irq-wait.h'],
  },
  edu: {
    kind: 'multiboot',
    sources: ['edu.c', 'lib/pci.c', 'lib/irq-wait.c', 'lib/irq-wait.S'],
    headers: ['lib/pci.h', 'lib/irq-wait.h'],
  },
  'mmio-bench': { kind: 'multiboot', sources: ['mmio-bench.c', 'lib/pci.c'], headers: ['lib/pci.h'] },
  'realmode-hello': { kind: 'flat', source: 'realmode-hello.S', arch: 'i386', loadAddress: 0x7c00, mode: 'real' },
  'longmode-hello': { kind: 'flat', source: 'longmode-hello.S', arch: 'x86_64', loadAddress: 0x200000, mode: 'long' },
  outloop: { kind: 'flat', source: 'outloop.S', arch: 'i386', loadAddress: 0x7c00, mode: 'real' },
  s3: { kind: 'flat', source: 's3.S', arch: 'i386', loadAddress: 0x7c00, mode: 'real' },
};

export const GUEST_NAMES = Object.keys(GUESTS) as GuestName[];

/** Guest-physical address of the counter guest's 64-bit tick count (its `.state` page, see lib/guest.ld). */
export const COUNTER_TICKS_ADDR = 0x101000;
/** The counter guest's state page: ticks u64 @0, limit u64 @8, since_print u32 @16, magic "CNTR" u32 @20. */
export const COUNTER_STATE_ADDR = 0x101000;
export const COUNTER_MAGIC = 0x52544e43;

/**
 * The smp-counter guest's state page (its `.state` section, guest-physical): magic "SMPC" u32 @0, cpus u32 @4,
 * limit u32 @8 (0 = forever), running u32 @12, LAPIC timer count per tick u32 @16, BSP APIC id u32 @20,
 * BSP ticks since its last line u32 @24, then u64 ticks[16] @32 indexed by APIC id.
 */
export const SMP_COUNTER_STATE_ADDR = 0x101000;
export const SMP_COUNTER_MAGIC = 0x43504d53;
export const SMP_COUNTER_MAX_CPUS = 16;
export const SMP_COUNTER_TICKS_OFFSET = 0x20;
const SMP_COUNTER_STATE_SIZE = SMP_COUNTER_TICKS_OFFSET + 8 * SMP_COUNTER_MAX_CPUS;

export interface SmpCounterState {
  cpus: number;
  /** ticks=N from the command line; 0 = runs until killed. */
  limit: number;
  /** CPUs whose LAPIC timer has been started. */
  running: number;
  /** LAPIC timer initial count (divide by 16) for one ~1 ms tick. */
  timerCount: number;
  bspApicId: number;
  /** ticks[i]: ticks counted by the CPU with APIC id i, for i < cpus. */
  ticks: bigint[];
}

/**
 * Decodes smp-counter's state page from `bytes`, where the page starts at byte `offset` (by default its guest-physical
 * address, so a whole RAM file or a view of low RAM from address 0 works as is; pass 0 for a copy of the page).
 * Throws if the bytes are too short, the magic is missing (not smp-counter, or not started yet) or `cpus` is bad.
 */
export function decodeSmpCounterState(bytes: Uint8Array, offset = SMP_COUNTER_STATE_ADDR): SmpCounterState {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + SMP_COUNTER_STATE_SIZE > bytes.length) {
    throw new RangeError(
      `smp-counter state at 0x${offset.toString(16)} (${SMP_COUNTER_STATE_SIZE} bytes) is outside ${bytes.length} bytes`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, SMP_COUNTER_STATE_SIZE);
  const magic = dv.getUint32(0, true);
  if (magic !== SMP_COUNTER_MAGIC) {
    throw new Error(
      `no smp-counter state at 0x${offset.toString(16)}: magic 0x${magic.toString(16)}, want 0x${SMP_COUNTER_MAGIC.toString(16)} ("SMPC")`,
    );
  }
  const cpus = dv.getUint32(4, true);
  if (cpus < 1 || cpus > SMP_COUNTER_MAX_CPUS)
    throw new Error(`smp-counter state says ${cpus} cpus (1..${SMP_COUNTER_MAX_CPUS})`);
  const ticks: bigint[] = [];
  for (let i = 0; i < cpus; i++) ticks.push(dv.getBigUint64(SMP_COUNTER_TICKS_OFFSET + 8 * i, true));
  return {
    cpus,
    limit: dv.getUint32(8, true),
    running: dv.getUint32(12, true),
    timerCount: dv.getUint32(16, true),
    bspApicId: dv.getUint32(20, true),
    ticks,
  };
}

/** The tick counters of APIC ids 0..cpus-1; throws (as decodeSmpCounterState) or if the guest counts other than `cpus`. */
export function readSmpCounters(bytes: Uint8Array | Buffer, cpus: number, offset = SMP_COUNTER_STATE_ADDR): bigint[] {
  const state = decodeSmpCounterState(bytes, offset);
  if (state.cpus !== cpus) throw new Error(`smp-counter counts ${state.cpus} cpus, expected ${cpus}`);
  return state.ticks;
}

/** Byte offsets of outloop's patchable parameters. */
export const OUTLOOP_MAGIC_OFFSET = 4;
export const OUTLOOP_ITERATIONS_OFFSET = 8;
export const OUTLOOP_PORT_OFFSET = 12;
export const OUTLOOP_VALUE_OFFSET = 14;

/** A copy of the outloop image with its loop count, port and/or value changed. */
export function patchOutloop(
  image: Uint8Array,
  params: { iterations?: number; port?: number; value?: number },
): Uint8Array {
  const out = new Uint8Array(image);
  const dv = new DataView(out.buffer);
  if (new TextDecoder().decode(out.subarray(OUTLOOP_MAGIC_OFFSET, OUTLOOP_MAGIC_OFFSET + 4)) !== 'OUTL') {
    throw new Error('not an outloop image (no "OUTL" at offset 4)');
  }
  if (params.iterations !== undefined) dv.setUint32(OUTLOOP_ITERATIONS_OFFSET, params.iterations, true);
  if (params.port !== undefined) dv.setUint16(OUTLOOP_PORT_OFFSET, params.port, true);
  if (params.value !== undefined) dv.setUint8(OUTLOOP_VALUE_OFFSET, params.value);
  return out;
}

export class GuestToolchainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestToolchainError';
  }
}

export class GuestBuildError extends SetupError {
  constructor(
    readonly guest: string,
    readonly command: string,
    readonly output: string,
  ) {
    super(`building guest ${guest}: \`${command}\` failed:\n${output}`);
    this.name = 'GuestBuildError';
  }
}

const CFLAGS = [
  '-m32',
  '-march=i686',
  '-std=gnu11',
  '-ffreestanding',
  '-fno-builtin',
  '-fno-pic',
  '-fno-pie',
  '-fno-stack-protector',
  '-fno-asynchronous-unwind-tables',
  '-fno-tree-loop-distribute-patterns',
  '-mgeneral-regs-only',
  '-Os',
  '-Wall',
  '-Wextra',
  '-Wno-main',
];
const LDFLAGS = ['-m', 'elf_i386', '-nostdlib', '--build-id=none', '-z', 'max-page-size=0x1000', '-z', 'noexecstack'];
const TOOLS = ['gcc', 'as', 'ld', 'objcopy'] as const;

/** The repository root: the nearest ancestor of this module holding tsvmm's package.json (works from dist/ too). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && existsSync(join(dir, 'examples', 'guests', 'lib'))) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'tsvmm') return dir;
      } catch {
        /* not ours; keep climbing */
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the tsvmm repository above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

let toolVersions: Promise<string> | null = null;

/** Version lines of the tools, or a GuestToolchainError naming what is missing. */
function checkTools(): Promise<string> {
  toolVersions ??= (async () => {
    const lines: string[] = [];
    for (const tool of TOOLS) {
      try {
        const { stdout } = await run(tool, ['--version']);
        lines.push(stdout.split('\n')[0]);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new GuestToolchainError(
          code === 'ENOENT'
            ? `${tool} not found: building test guests needs gcc and binutils (Debian: apt-get install gcc binutils)`
            : `${tool} --version failed: ${(e as Error).message}`,
        );
      }
    }
    return lines.join('\n');
  })();
  toolVersions.catch(() => {
    toolVersions = null;
  });
  return toolVersions;
}

/** Null if the toolchain is usable, else a one-line reason (for testIf). */
export async function toolchainUnavailable(): Promise<string | null> {
  try {
    await checkTools();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

async function step(guest: string, cmd: string, args: string[]): Promise<void> {
  try {
    await run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new GuestBuildError(guest, [cmd, ...args].join(' '), (err.stderr || err.stdout || err.message).trim());
  }
}

const LIB_SOURCES = ['lib/entry.S', 'lib/runtime.c'];
const LIB_INPUTS = [...LIB_SOURCES, 'lib/runtime.h', 'lib/guest.ld'];

function describe(name: GuestName, spec: GuestSpec, path: string): BuiltGuest {
  return spec.kind === 'multiboot'
    ? { name, path, format: 'multiboot', multiboot: spec.aout ? 'aout-kludge' : 'elf32' }
    : { name, path, format: 'flat', loadAddress: spec.loadAddress, entry: spec.loadAddress, mode: spec.mode };
}

/**
 * Builds guest `name` (or reuses the cached build) and says how to load it. Throws GuestToolchainError when a tool
 * is missing and GuestBuildError (with the compiler's output) when a step fails.
 */
export async function buildGuest(name: GuestName): Promise<BuiltGuest> {
  const spec = GUESTS[name];
  if (!spec) throw new Error(`unknown guest "${name}" (known: ${GUEST_NAMES.join(', ')})`);
  const versions = await checkTools();
  const root = repoRoot();
  const srcDir = join(root, 'examples', 'guests');
  const inputs =
    spec.kind === 'multiboot'
      ? [...(spec.bare ? [] : LIB_INPUTS), ...spec.sources, ...(spec.headers ?? [])]
      : [spec.source];
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ name, spec, CFLAGS, LDFLAGS, versions }));
  for (const input of inputs) {
    hash.update(input);
    hash.update(await readFile(join(srcDir, input)));
  }
  const ext = spec.kind === 'flat' || spec.aout ? 'bin' : 'elf';
  const outDir = join(root, 'build', 'guests');
  const output = join(outDir, `${name}-${hash.digest('hex').slice(0, 16)}.${ext}`);
  if (existsSync(output)) return describe(name, spec, output);

  await mkdir(outDir, { recursive: true });
  const tmp = await mkdtemp(join(outDir, `.tmp-${name}-`));
  try {
    const elf = join(tmp, `${name}.elf`);
    if (spec.kind === 'multiboot' && spec.bare) {
      const objects: string[] = [];
      for (const src of spec.sources) {
        const obj = join(tmp, `${src.replace(/[/.]/g, '_')}.o`);
        await step(name, 'gcc', ['-m32', '-c', join(srcDir, src), '-o', obj]);
        objects.push(obj);
      }
      await step(name, 'ld', [
        '-m',
        'elf_i386',
        '-nostdlib',
        '--build-id=none',
        '-z',
        'noexecstack',
        '-Ttext',
        `0x${spec.bare.linkAt.toString(16)}`,
        '-e',
        'start',
        '-o',
        elf,
        ...objects,
      ]);
    } else if (spec.kind === 'multiboot') {
      const objects: string[] = [];
      for (const src of [...LIB_SOURCES, ...spec.sources]) {
        const obj = join(tmp, `${src.replace(/[/.]/g, '_')}.o`);
        const defines = spec.aout && src === 'lib/entry.S' ? ['-DAOUT_KLUDGE'] : [];
        await step(name, 'gcc', [...CFLAGS, ...defines, '-I', join(srcDir, 'lib'), '-c', join(srcDir, src), '-o', obj]);
        objects.push(obj);
      }
      await step(name, 'ld', [...LDFLAGS, '-T', join(srcDir, 'lib', 'guest.ld'), '-o', elf, ...objects]);
      if (spec.aout) await step(name, 'objcopy', ['-O', 'binary', elf, join(tmp, `${name}.bin`)]);
    } else {
      const obj = join(tmp, `${name}.o`);
      const m = spec.arch === 'i386' ? ['-m32'] : ['-m64'];
      await step(name, 'gcc', [...m, '-c', join(srcDir, spec.source), '-o', obj]);
      await step(name, 'ld', [
        '-m',
        spec.arch === 'i386' ? 'elf_i386' : 'elf_x86_64',
        '-nostdlib',
        '--build-id=none',
        '-z',
        'noexecstack',
        '-Ttext',
        `0x${spec.loadAddress.toString(16)}`,
        '-e',
        'start',
        '-o',
        elf,
        obj,
      ]);
      await step(name, 'objcopy', ['-O', 'binary', '-j', '.text', elf, join(tmp, `${name}.bin`)]);
    }
    // Keep the ELF next to a .bin output: its symbols document addresses (e.g. the counter's state page).
    if (ext === 'bin') await rename(elf, output.replace(/\.bin$/, '.sym.elf'));
    await rename(join(tmp, `${name}.${ext}`), output);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return describe(name, spec, output);
}

/** Builds every guest (in sequence: the compiler is the bottleneck, and a 2-core host has little to spare). */
export async function buildAllGuests(): Promise<Record<GuestName, BuiltGuest>> {
  const out = {} as Record<GuestName, BuiltGuest>;
  for (const name of GUEST_NAMES) out[name] = await buildGuest(name);
  return out;
}

/** Writes a variant image (e.g. a patched outloop) to build/guests/, named by its content hash; returns the path. */
export async function writeGuestVariant(name: string, bytes: Uint8Array): Promise<string> {
  const outDir = join(repoRoot(), 'build', 'guests');
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, `${name}-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.bin`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  }
  return path;
}
