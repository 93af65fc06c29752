// Fuzzing the checkpoint loader: mutated files must be refused with a CheckpointError or VmstateError — never
// another exception, a hang or a huge allocation — and reading must leave the file's bytes as they were.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  u8,
  u16,
  u32,
  u64,
  bool,
  bytes,
  struct,
  structArray,
  newRecord,
  VmstateError,
  type Descriptor,
} from '../vmstate/vmstate.js';
import { encodeRecord, decodeInto } from '../vmstate/stream.js';
import {
  writeCheckpoint,
  readCheckpoint,
  readRam,
  jsonSection,
  parseJsonSection,
  CheckpointError,
  SECTION_KINDS,
  type Section,
  type SectionKind,
} from './checkpoint-file.js';
import { Rng, runSeed, forEachCase, randomDescriptor, fillRandom } from '../testing/random-vmstate.js';
import { withFixedChecksum, sectionSpans, concat, type SectionSpan } from '../testing/checkpoint-bytes.js';

// A fixed number of cases from a fixed seed: the same mutants on every machine, however slow (~3 s here natively).
// VMSTATE_SEED=<n> runs another set.
const CASES = 12_000;
const SEED = 0x0c0ffee5;

// ---- a realistic checkpoint ---------------------------------------------------------------------------------------

const uart = {
  name: 'uart',
  version: 2,
  minVersion: 1,
  fields: [
    u8('ier'),
    u8('lcr'),
    u16('divisor', { since: 2 }),
    u8('rxCount'),
    bytes('rxFifo', 16, { lengthField: 'rxCount' }),
    u64('deadlineNs'),
  ],
  subsections: [
    {
      name: 'uart/timeout',
      version: 1,
      fields: [bool('armed'), u64('armedAtNs')],
      needed: (s: { armed: boolean }) => s.armed,
    },
  ],
} as const satisfies Descriptor;

const lapicEntry = { name: 'msr', version: 1, fields: [u32('index'), u64('value')] } as const satisfies Descriptor;
const vcpu = {
  name: 'vcpu',
  version: 1,
  fields: [
    u64('rip'),
    u64('rflags'),
    u32('msrCount'),
    structArray('msrs', lapicEntry, 32, { lengthField: 'msrCount' }),
    bytes('xsave', 1024),
    struct('last', lapicEntry),
  ],
} as const satisfies Descriptor;

// Two generated descriptors with deep nesting and subsections, always the same ones.
const generated = [randomDescriptor(new Rng(7), 2), randomDescriptor(new Rng(11), 2)];

const registry = new Map<string, Descriptor>([
  ['device:uart', uart],
  ['vcpu:cpu', vcpu],
  ['device:gen-a', generated[0]],
  ['device:gen-b', generated[1]],
]);
const key = (kind: SectionKind, name: string) => `${kind}:${name}`;

function baseCheckpoint(dir: string): Uint8Array {
  const rng = new Rng(1234);
  const u = newRecord(uart);
  fillRandom(rng, u);
  u.armed = true;
  const cpu0 = newRecord(vcpu);
  fillRandom(rng, cpu0);
  const cpu1 = newRecord(vcpu);
  fillRandom(rng, cpu1);
  const gens = generated.map((d) => {
    const r = newRecord(d);
    fillRandom(rng, r);
    return encodeRecord(d, r);
  });
  const sections: Section[] = [
    jsonSection('config', 'machine', { ram: 16384, cpus: 2, devices: ['uart', 'gen-a', 'gen-b'] }),
    { kind: 'device', name: 'uart', instance: 0, version: 2, payload: encodeRecord(uart, u) },
    { kind: 'device', name: 'uart', instance: 1, version: 2, payload: encodeRecord(uart, newRecord(uart)) },
    { kind: 'device', name: 'gen-a', instance: 0, version: generated[0].version, payload: gens[0] },
    { kind: 'device', name: 'gen-b', instance: 0, version: generated[1].version, payload: gens[1] },
    { kind: 'vcpu', name: 'cpu', instance: 0, version: 1, payload: encodeRecord(vcpu, cpu0) },
    { kind: 'vcpu', name: 'cpu', instance: 1, version: 1, payload: encodeRecord(vcpu, cpu1) },
    { kind: 'kvm', name: 'irqchip', instance: 0, version: 1, payload: rng.bytes(512) },
    jsonSection('timings', 'save', { stopNs: 1, collectNs: 2, writeNs: 3 }),
  ];
  const ramBytes = rng.bytes(16384);
  const path = join(dir, 'base.cpr');
  writeCheckpoint(path, {
    sections,
    ram: { size: ramBytes.length, read: (o, n) => ramBytes.subarray(o, o + n) },
    description: { note: 'fuzz base' },
  });
  return new Uint8Array(readFileSync(path)); // a plain copy: a Buffer's slice() would be a view
}

/** What a loader does with a file: verify it, decode every known section into a fresh record, stream RAM. */
function load(path: string): void {
  const cp = readCheckpoint(path);
  for (const section of cp.sections) {
    const descriptor = registry.get(key(section.kind, section.name));
    if (descriptor) decodeInto(descriptor, section.payload, section.version, newRecord(descriptor, false));
    else if (section.kind === 'config' || section.kind === 'timings' || section.kind === 'description')
      parseJsonSection(section);
  }
  if (cp.ram) readRam(cp, 0, cp.ram.length, new Uint8Array(cp.ram.length));
}

// ---- mutations ----------------------------------------------------------------------------------------------------

interface Mutant {
  readonly kind: string;
  readonly bytes: Uint8Array /** The checksum was recomputed afterwards. */;
  readonly fixed: boolean;
}

const HUGE_LENGTHS = [
  (1n << 64n) - 1n,
  1n << 63n,
  1n << 53n,
  (1n << 53n) + 1n,
  1n << 32n,
  0xffff_ffffn,
  64n << 20n,
  (64n << 20n) + 1n,
];

function mutate(rng: Rng, base: Uint8Array, spans: readonly SectionSpan[]): Mutant {
  const fix = rng.chance(0.5);
  const done = (kind: string, bytes: Uint8Array, fixed = fix): Mutant => ({
    kind,
    bytes: fixed ? withFixedChecksum(bytes) : bytes,
    fixed,
  });
  const span = () => rng.pick(spans);
  switch (rng.int(0, 9)) {
    case 0: {
      // bit flips anywhere, checksum left alone
      const b = base.slice();
      for (let n = rng.int(1, 8); n > 0; n--) b[rng.int(0, b.length - 1)] ^= 1 << rng.int(0, 7);
      return done('bit flips', b, false);
    }
    case 1:
      return done('truncation', base.slice(0, rng.int(0, base.length - 1)), false);
    case 2:
      return done('extension', concat([base, rng.bytes(rng.int(1, 64))]), rng.chance(0.5));
    case 3: {
      // a payload length set to something else, often huge
      const b = base.slice();
      const s = span();
      const v = new DataView(b.buffer);
      const old = v.getBigUint64(s.lengthAt, true);
      const value = rng.pick([
        () => rng.pick(HUGE_LENGTHS),
        () => BigInt(base.length + rng.int(-64, 64)),
        () => old + BigInt(rng.int(1, 32)),
        () => (old > 0n ? old - BigInt(rng.int(1, Number(old < 32n ? old : 32n))) : 1n),
        () => BigInt(rng.u32()) << BigInt(rng.int(0, 32)),
      ])();
      v.setBigUint64(s.lengthAt, BigInt.asUintN(64, value), true);
      return done('payload length', b);
    }
    case 4: {
      // a name length set to something else
      const b = base.slice();
      new DataView(b.buffer).setUint16(span().start + 1, rng.pick([0xffff, rng.int(0, 0xffff), rng.int(0, 40)]), true);
      return done('name length', b);
    }
    case 5: {
      // two sections swapped, or one moved to the end (after the end marker)
      const body = spans.filter((s) => s.code !== SECTION_KINDS.end);
      const a = rng.pick(body);
      const c = rng.pick(spans);
      const [first, second] = a.start < c.start ? [a, c] : [c, a];
      const piece = (s: SectionSpan) => base.subarray(s.start, s.end);
      const b =
        first === second
          ? concat([
              base.subarray(0, first.start),
              base.subarray(first.end, base.length - 4),
              piece(first),
              base.subarray(base.length - 4),
            ])
          : concat([
              base.subarray(0, first.start),
              piece(second),
              base.subarray(first.end, second.start),
              piece(first),
              base.subarray(second.end),
            ]);
      return done('reordering', b);
    }
    case 6: {
      // a section duplicated
      const s = rng.pick(spans.filter((x) => x.code !== SECTION_KINDS.end));
      return done(
        'duplication',
        concat([base.subarray(0, s.end), base.subarray(s.start, s.end), base.subarray(s.end)]),
      );
    }
    case 7: {
      // header fields: kind, instance, version
      const b = base.slice();
      const s = span();
      const v = new DataView(b.buffer);
      const nameLength = v.getUint16(s.start + 1, true);
      const which = rng.int(0, 2);
      if (which === 0) v.setUint8(s.start, rng.int(0, 255));
      else
        v.setUint32(s.start + 3 + nameLength + (which - 1) * 4, rng.pick([0, 1, 2, 3, 0xffff_ffff, rng.u32()]), true);
      return done('header field', b);
    }
    case 8: {
      // bytes inside a payload overwritten (a device stream the file checksum no longer protects)
      const s = rng.pick(spans.filter((x) => x.end > x.payloadStart));
      const b = base.slice();
      for (let n = rng.int(1, 4); n > 0; n--)
        b[rng.int(s.payloadStart, s.end - 1)] = rng.pick([0, 0xff, 1, rng.int(0, 255)]);
      return done('payload bytes', b, rng.chance(0.8));
    }
    default: {
      // header magic and format version
      const b = base.slice();
      const at = rng.int(0, 11);
      b[at] = rng.int(0, 255);
      return done('file header', b);
    }
  }
}

// ---- the run ----------------------------------------------------------------------------------------------------------

test(`fuzz: ${CASES} mutated checkpoints are each refused with a clear error or load cleanly, and stay unchanged on disk`, () => {
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tsvmm-fuzz-'));
  try {
    const base = baseCheckpoint(dir);
    load(join(dir, 'base.cpr'));
    const spans = sectionSpans(base);
    const path = join(dir, 'mutant.cpr');
    const stats = new Map<string, { refused: number; loaded: number }>();
    const outcomes = new Map<string, number>();
    const started = Date.now();
    let slowest = 0;
    let peakArrayBuffers = 0;
    forEachCase(runSeed(SEED), CASES, (rng, index) => {
      const m = mutate(rng, base, spans);
      writeFileSync(path, m.bytes);
      const t0 = performance.now();
      let outcome = 'loaded';
      try {
        load(path);
      } catch (e) {
        if (!(e instanceof CheckpointError) && !(e instanceof VmstateError)) {
          throw new Error(
            `${m.kind}: ${(e as Error)?.constructor?.name} escaped the loader: ${(e as Error)?.stack ?? e}`,
          );
        }
        assert.not.match(e.message, /\n/, 'a one-line message');
        outcome =
          e instanceof CheckpointError
            ? e.message.replace(/ \d+| '[^']*'| 0x[0-9a-f]+| \([^)]*\)/g, ' N').slice(0, 40)
            : 'VmstateError';
      }
      slowest = Math.max(slowest, performance.now() - t0);
      const unchanged = Buffer.compare(readFileSync(path), m.bytes) === 0;
      assert.ok(unchanged, `${m.kind}: reading changed the file`);
      const same = Buffer.compare(m.bytes, base) === 0;
      if (outcome === 'loaded' && !m.fixed && !same)
        assert.unreachable(`${m.kind}: a mutation the checksum should catch was accepted`);
      const s = stats.get(m.kind) ?? { refused: 0, loaded: 0 };
      s[outcome === 'loaded' ? 'loaded' : 'refused']++;
      stats.set(m.kind, s);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      if (index % 64 === 0) peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers);
    });
    const ms = Date.now() - started;
    console.log(
      `     ${CASES} cases in ${ms} ms, slowest load ${slowest.toFixed(1)} ms, peak arrayBuffers ${(peakArrayBuffers / 2 ** 20).toFixed(1)} MiB`,
    );
    for (const [kind, s] of stats) console.log(`     ${kind.padEnd(16)} refused ${s.refused}, loaded ${s.loaded}`);
    for (const [o, n] of [...outcomes].sort((a, b) => b[1] - a[1]).slice(0, 12))
      console.log(`       ${String(n).padStart(5)}  ${o}`);
    assert.is(stats.size, 10, 'every kind of mutation was tried');
    for (const [kind, s] of stats) assert.ok(s.refused > 0, `${kind} produced refusals`);
    assert.ok(
      (outcomes.get('VmstateError') ?? 0) > 0,
      'some mutants reached the vmstate decoder and were refused there',
    );
    // Each load allocates about the file's size (~25 KiB); what stays below is garbage not yet collected. A length
    // trusted before it was checked against the file size would show as GiBs here (or as a RangeError above).
    assert.ok(peakArrayBuffers < 256 << 20, 'no large allocations');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
