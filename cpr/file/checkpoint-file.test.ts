import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  mkdirSync,
  openSync,
  closeSync,
  ftruncateSync,
  writeSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  writeCheckpoint,
  readCheckpoint,
  readRam,
  openRam,
  findSection,
  jsonSection,
  parseJsonSection,
  CheckpointError,
  FORMAT_VERSION,
  SECTION_KINDS,
  MAX_SECTION_BYTES,
  MAX_SECTIONS,
  MAX_RETAINED_BYTES,
  crc32,
  type Section,
  type RamSource,
} from './checkpoint-file.js';
import { tableCrc32, crc32Zeros } from './format.js';
import { rawCheckpoint, rawSectionBytes, CONFIG, withFixedChecksum, concat } from '../testing/checkpoint-bytes.js';
import { decodeSections, encodeSections } from './sections-codec.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-cpr-file-'));
let fileNo = 0;
const freshPath = () => join(dir, `cp${fileNo++}.cpr`);

const config = jsonSection('config', 'machine', { ram: 32 << 20, cpus: 1 });
const device = (name: string, instance: number, bytes: number[]): Section => ({
  kind: 'device',
  name,
  instance,
  version: 2,
  payload: new Uint8Array(bytes),
});

/** RAM whose every byte is a function of its offset, with an all-zero stretch in the middle (a hole in the file). */
function patternRam(size: number, zeroFrom = -1, zeroTo = -1): RamSource & { byte(offset: number): number } {
  const byte = (o: number) => (o >= zeroFrom && o < zeroTo ? 0 : (o * 31 + (o >>> 11)) & 0xff);
  return {
    size,
    byte,
    read(offset, length) {
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = byte(offset + i);
      return out;
    },
  };
}

function refused(path: string, pattern: RegExp): void {
  const before = readFileSync(path);
  const mtime = statSync(path).mtimeMs;
  try {
    readCheckpoint(path);
  } catch (e) {
    assert.instance(e, CheckpointError, String((e as Error)?.stack));
    assert.match((e as Error).message, pattern);
    assert.not.match((e as Error).message, /\n/, 'one line');
    assert.ok(readFileSync(path).equals(before), 'the refused file is unchanged');
    assert.is(statSync(path).mtimeMs, mtime);
    return;
  }
  assert.unreachable(`expected a CheckpointError matching ${pattern}`);
}

function writeRaw(bytes: Uint8Array): string {
  const path = freshPath();
  writeFileSync(path, bytes);
  return path;
}

// ---- writing and reading back -------------------------------------------------------------------------------------

test('file: sections, description and RAM read back as written, RAM streamed from the file', () => {
  const path = freshPath();
  const ram = patternRam(20 << 20, 8 << 20, 16 << 20);
  const sections = [
    config,
    device('serial', 0, [1, 2, 3]),
    device('serial', 1, [4]),
    { kind: 'vcpu', name: 'cpu', instance: 0, version: 1, payload: new Uint8Array(100).fill(7) } as Section,
    jsonSection('timings', 'save', { stopNs: 1, writtenNs: 2 }),
  ];
  const result = writeCheckpoint(path, { sections, ram, description: { devices: ['serial'] } });
  assert.is(result.bytes, statSync(path).size);
  for (const k of ['serializeNs', 'writeNs', 'fsyncNs', 'renameNs'] as const) assert.ok(result.timings[k] >= 0, k);

  const cp = readCheckpoint(path);
  assert.is(cp.formatVersion, FORMAT_VERSION);
  assert.equal(
    cp.sections.map((s) => [s.kind, s.name, s.instance, s.version, [...s.payload].slice(0, 3)]),
    [
      ...sections.map((s) => [s.kind, s.name, s.instance, s.version, [...s.payload].slice(0, 3)]),
      ['description', 'description', 0, 1, [...new TextEncoder().encode('{"d')]],
    ],
  );
  assert.equal(parseJsonSection(findSection(cp, 'description')!), { devices: ['serial'] });
  assert.equal(findSection(cp, 'device', 'serial', 1)!.payload, new Uint8Array([4]));
  assert.is(cp.ram!.length, ram.size);

  const back = new Uint8Array(ram.size);
  readRam(cp, 0, ram.size, back);
  assert.ok(Buffer.from(back).equals(Buffer.from(ram.read(0, ram.size))), 'RAM identical');
  const piece = new Uint8Array(10);
  readRam(cp, 12345, 10, piece);
  assert.equal(
    [...piece],
    Array.from({ length: 10 }, (_, i) => ram.byte(12345 + i)),
  );
});

test('file: the header is the magic and format version; the trailer is the CRC-32 of everything before it', () => {
  const path = freshPath();
  writeCheckpoint(path, { sections: [config] });
  const bytes = readFileSync(path);
  assert.is(bytes.subarray(0, 8).toString('latin1'), 'TSVMMCPR');
  assert.is(bytes.readUInt32LE(8), FORMAT_VERSION);
  assert.is(bytes.readUInt32LE(bytes.length - 4), crc32(bytes.subarray(0, bytes.length - 4)));
  assert.is(bytes[bytes.length - 23], SECTION_KINDS.end, 'the end marker is the last section');
});

test('file: the table CRC-32 matches zlib\'s (check value of "123456789" and continued chunks)', () => {
  const check = new TextEncoder().encode('123456789');
  assert.is(tableCrc32(check), 0xcbf43926);
  assert.is(crc32(check), 0xcbf43926);
  const data = new Uint8Array(10000).map((_, i) => (i * 7919) & 0xff);
  assert.is(tableCrc32(data.subarray(3000), tableCrc32(data.subarray(0, 3000))), crc32(data));
});

test('file: the CRC of a run of zeros computed without reading them equals the real one', () => {
  for (const length of [0, 1, 3, 4096, 12345, 8 << 20]) {
    for (const start of [0, 1, 0xdeadbeef, 0xffffffff])
      assert.is(crc32Zeros(length, start), crc32(new Uint8Array(length), start), `${length} zeros after ${start}`);
  }
});

test('file: the checkpoint is written 0600 and nothing else is left in the directory', () => {
  const sub = join(dir, 'clean');
  mkdirSync(sub);
  const path = join(sub, 'a.cpr');
  writeCheckpoint(path, { sections: [config], ram: patternRam(4096) });
  assert.equal(readdirSync(sub), ['a.cpr']);
  assert.is(statSync(path).mode & 0o777, 0o600);
});

// ---- atomicity ----------------------------------------------------------------------------------------------------

test('file: a failure while streaming RAM leaves no file at the path and no temp file', () => {
  const sub = join(dir, 'crash');
  mkdirSync(sub);
  const path = join(sub, 'b.cpr');
  const ram: RamSource = {
    size: 64 << 20,
    read(offset, length) {
      if (offset >= 16 << 20) throw new Error('guest memory went away');
      return new Uint8Array(length).fill(1);
    },
  };
  assert.throws(
    () => writeCheckpoint(path, { sections: [config], ram }),
    (e: Error) => e instanceof CheckpointError && /guest memory went away/.test(e.message),
  );
  assert.equal(readdirSync(sub), []);
});

test('file: a failed write keeps the previous checkpoint at the path intact', () => {
  const sub = join(dir, 'keep');
  mkdirSync(sub);
  const path = join(sub, 'c.cpr');
  writeCheckpoint(path, { sections: [config, device('rtc', 0, [9])] });
  const before = readFileSync(path);
  const shortRam: RamSource = { size: 100, read: () => new Uint8Array(99) };
  assert.throws(() => writeCheckpoint(path, { sections: [config], ram: shortRam }), /returned 99 bytes, expected 100/);
  assert.ok(readFileSync(path).equals(before));
  assert.equal(readdirSync(sub), ['c.cpr']);
  assert.is(findSection(readCheckpoint(path), 'device', 'rtc')!.payload[0], 9);
});

test('file: a stale temp file of the same pid is replaced, not followed', () => {
  const sub = join(dir, 'stale');
  mkdirSync(sub);
  const path = join(sub, 'd.cpr');
  writeFileSync(`${path}.tmp-${process.pid}`, 'junk from an earlier crash');
  writeCheckpoint(path, { sections: [config] });
  assert.equal(readdirSync(sub), ['d.cpr']);
  readCheckpoint(path);
});

test('file: the writer refuses bad contents before creating anything', () => {
  const sub = join(dir, 'bad-contents');
  mkdirSync(sub);
  const path = join(sub, 'e.cpr');
  assert.throws(() => writeCheckpoint(path, { sections: [] }), /exactly one config section, got 0/);
  assert.throws(
    () => writeCheckpoint(path, { sections: [config, config] }),
    /duplicate section config 'machine' instance 0/,
  );
  assert.throws(
    () => writeCheckpoint(path, { sections: [config, { ...device('x', 0, []), instance: -1 }] }),
    /instance -1 is not a u32/,
  );
  assert.throws(
    () => writeCheckpoint(path, { sections: [config, { ...device('x', 0, []), kind: 'ram' as 'device' }] }),
    /RAM goes in contents.ram/,
  );
  assert.throws(
    () =>
      writeCheckpoint(path, {
        sections: [config, { ...device('x', 0, []), payload: new Uint8Array(MAX_SECTION_BYTES + 1) }],
      }),
    /exceeds the 64 MiB section limit/,
  );
  assert.equal(readdirSync(sub), []);
});

// ---- every refusal of the reader --------------------------------------------------------------------------------------

test('file: a missing file, a directory and a FIFO are refused without blocking', () => {
  refusedNoFile(join(dir, 'nope.cpr'), /cannot open checkpoint .*nope\.cpr: ENOENT/);
  const sub = join(dir, 'a-dir');
  mkdirSync(sub);
  refusedNoFile(sub, /is not a regular file/);
  const fifo = join(dir, 'fifo.cpr');
  execFileSync('mkfifo', [fifo]);
  refusedNoFile(fifo, /is not a regular file/);
});

function refusedNoFile(path: string, pattern: RegExp): void {
  assert.throws(
    () => readCheckpoint(path),
    (e: Error) => e instanceof CheckpointError && pattern.test(e.message),
  );
}

test('file: an empty or short file is refused as truncated', () => {
  refused(
    writeRaw(new Uint8Array(0)),
    /^checkpoint truncated at byte 0: the header at byte 0 needs 12 bytes, 0 remain$/,
  );
  refused(writeRaw(new TextEncoder().encode('TSVMMC')), /truncated at byte 6/);
});

test('file: bad magic is refused', () => {
  refused(
    writeRaw(rawCheckpoint([CONFIG()], { magic: new TextEncoder().encode('QEVM\0\0\0\x03') })),
    /^bad magic: not a tsvmm checkpoint \(starts with 5145564d00000003\)$/,
  );
});

test('file: a newer format version is refused naming both versions; an older one too', () => {
  refused(
    writeRaw(rawCheckpoint([CONFIG()], { formatVersion: FORMAT_VERSION + 1 })),
    new RegExp(
      `^checkpoint format version ${FORMAT_VERSION + 1} is newer than this tsvmm supports \\(${FORMAT_VERSION}\\)$`,
    ),
  );
  refused(
    writeRaw(rawCheckpoint([CONFIG()], { formatVersion: 0 })),
    /^checkpoint format version 0 is older than this tsvmm supports \(1\)$/,
  );
});

test('file: format 1 (before the padding section) still loads, RAM included', () => {
  const ramBytes = new Uint8Array(8192).map((_, i) => (i * 7) | 1);
  const path = writeRaw(
    rawCheckpoint([CONFIG(), { code: SECTION_KINDS.ram, name: 'ram', payload: ramBytes }], { formatVersion: 1 }),
  );
  const cp = readCheckpoint(path);
  assert.is(cp.formatVersion, 1);
  const back = new Uint8Array(ramBytes.length);
  readRam(cp, 0, back.length, back);
  assert.equal(back, ramBytes);
});

test('file: the padding section aligns RAM and is not kept; one only, at most 1 MiB, and not in format 1', () => {
  const pad = (length: number) => ({
    code: SECTION_KINDS.padding,
    name: '',
    version: 0,
    payload: new Uint8Array(length),
  });
  const ram = { code: SECTION_KINDS.ram, name: 'ram', payload: new Uint8Array(4096).fill(0x5a) };
  const cp = readCheckpoint(writeRaw(rawCheckpoint([CONFIG(), pad(100), ram])));
  assert.equal(
    cp.sections.map((s) => s.kind),
    ['config'],
  );
  assert.is(cp.ram!.length, 4096);
  refused(writeRaw(rawCheckpoint([CONFIG(), pad(1), ram], { formatVersion: 1 })), /padding is not part of format 1$/);
  refused(writeRaw(rawCheckpoint([CONFIG(), pad(1), pad(2), ram])), /a second padding section$/);
  refused(writeRaw(rawCheckpoint([CONFIG(), pad((1 << 20) + 1), ram])), /1048577 bytes of padding, over the 1048576/);
});

test('file: an unknown section kind is refused with its code and offset', () => {
  refused(writeRaw(rawCheckpoint([CONFIG(), { code: 42, name: 'future' }])), /^unknown section kind 42 at byte \d+$/);
});

test('file: a section name that is not UTF-8 is refused', () => {
  refused(
    writeRaw(rawCheckpoint([CONFIG(), { code: SECTION_KINDS.device, name: new Uint8Array([0xc3, 0x28]) }])),
    /name of the device section at byte \d+ is not valid UTF-8/,
  );
});

test('file: a payload length past the end of the file is refused as truncated, huge or not', () => {
  for (const claimed of [1000n, 1n << 63n, (1n << 64n) - 1n]) {
    refused(
      writeRaw(
        rawCheckpoint([
          CONFIG(),
          { code: SECTION_KINDS.device, name: 'uart', payload: new Uint8Array(4), claimedLength: claimed },
        ]),
      ),
      new RegExp(
        `^checkpoint truncated at byte \\d+: device section 'uart' \\(at byte \\d+\\) claims ${claimed} bytes, \\d+ remain$`,
      ),
    );
  }
});

test('file: a non-RAM section above the size limit is refused before it is read', () => {
  // A sparse file: the header claims 65 MiB and the file is that long, but nothing is allocated.
  const path = freshPath();
  const head = rawCheckpoint(
    [CONFIG(), { code: SECTION_KINDS.device, name: 'big', claimedLength: BigInt(MAX_SECTION_BYTES + 1) }],
    { end: false, trailer: false },
  );
  const fd = openSync(path, 'w');
  writeSync(fd, head);
  ftruncateSync(fd, head.length + MAX_SECTION_BYTES + 1 + 23 + 4);
  closeSync(fd);
  refused(path, /device section 'big' \(at byte \d+\): payload of 67108865 bytes exceeds the 64 MiB section limit/);
});

test('file: more sections than MAX_SECTIONS are refused, however small each is', () => {
  const tiny = (instance: number) => ({ code: SECTION_KINDS.device, name: 'd', instance });
  const atLimit = Array.from({ length: MAX_SECTIONS - 1 }, (_, i) => tiny(i));
  readCheckpoint(writeRaw(rawCheckpoint([CONFIG(), ...atLimit]))); // config + 4095 devices: accepted
  refused(
    writeRaw(rawCheckpoint([CONFIG(), ...atLimit, tiny(MAX_SECTIONS)])),
    new RegExp(`^device section 'd' \\(at byte \\d+\\): more than ${MAX_SECTIONS} sections`),
  );
});

test('file: sections that together would keep more than MAX_RETAINED_BYTES in memory are refused', () => {
  // A sparse file of sections each within the per-section limit: two of 64 MiB fill the budget, the third byte
  // over it is refused before its payload is read.
  const path = freshPath();
  const fd = openSync(path, 'w');
  let at = 0;
  const put = (bytes: Uint8Array) => {
    writeSync(fd, bytes, 0, bytes.length, at);
    at += bytes.length;
  };
  put(rawCheckpoint([CONFIG()], { end: false, trailer: false }));
  const configBytes = CONFIG().payload!.length;
  for (const [i, length] of [MAX_SECTION_BYTES - configBytes, MAX_SECTION_BYTES, 1].entries()) {
    put(rawSectionBytes({ code: SECTION_KINDS.device, name: `big${i}`, claimedLength: BigInt(length) }));
    at += length;
  }
  ftruncateSync(fd, at + 23 + 4);
  closeSync(fd);
  assert.is(2 * MAX_SECTION_BYTES, MAX_RETAINED_BYTES, 'the test fills the budget with two full sections');
  refused(
    path,
    /^device section 'big2' \(at byte \d+\): the sections so far hold 134217729 bytes, over the 128 MiB a checkpoint may keep in memory$/,
  );
});

test('sections codec: a transferred state claiming more than MAX_SECTIONS sections is refused', () => {
  const one = { kind: 'device' as const, name: 'd', instance: 0, version: 1, payload: new Uint8Array(0) };
  const many = encodeSections(Array.from({ length: MAX_SECTIONS + 1 }, (_, i) => ({ ...one, instance: i })));
  assert.throws(
    () => decodeSections(many),
    (e: Error) => e instanceof CheckpointError && /at most 4096/.test(e.message),
  );
  assert.is(decodeSections(encodeSections([one, { ...one, instance: 1 }])).length, 2);
});

test('file: duplicate sections are refused (same kind, name and instance; or a second RAM section)', () => {
  const uart = { code: SECTION_KINDS.device, name: 'uart', instance: 1 };
  refused(writeRaw(rawCheckpoint([CONFIG(), uart, uart])), /^duplicate device section 'uart' instance 1 at byte \d+$/);
  writeRaw(rawCheckpoint([CONFIG(), uart, { ...uart, instance: 2 }])); // another instance is fine
  refused(
    writeRaw(rawCheckpoint([CONFIG(), { code: SECTION_KINDS.ram, name: 'a' }, { code: SECTION_KINDS.ram, name: 'b' }])),
    /^duplicate ram section 'b'/,
  );
});

test('file: a missing or malformed end marker is refused', () => {
  const noEnd = rawCheckpoint([CONFIG()], { end: false, trailer: false });
  refused(writeRaw(noEnd), /^checkpoint truncated at byte \d+: a section header at byte \d+ needs 3 bytes, 0 remain$/);
  refused(
    writeRaw(rawCheckpoint([CONFIG(), { code: SECTION_KINDS.end, name: 'x', version: 0 }], { end: false })),
    /^malformed end marker at byte \d+$/,
  );
});

test('file: bytes after the checksum are refused as trailing garbage', () => {
  refused(
    writeRaw(concat([rawCheckpoint([CONFIG()]), new Uint8Array([0])])),
    /^trailing garbage: 1 bytes after the checksum at byte \d+$/,
  );
});

test('file: a missing checksum is refused as truncated, a wrong one as a mismatch', () => {
  refused(
    writeRaw(rawCheckpoint([CONFIG()], { trailer: false })),
    /^checkpoint truncated at byte \d+: the checksum at byte \d+ needs 4 bytes, 0 remain$/,
  );
  refused(
    writeRaw(rawCheckpoint([CONFIG()], { checksum: 0x12345678 })),
    /^checksum mismatch: the file says 0x12345678, its contents give 0x[0-9a-f]{8}$/,
  );
  const good = rawCheckpoint([CONFIG(), { code: SECTION_KINDS.device, name: 'uart', payload: new Uint8Array(16) }]);
  const flipped = good.slice();
  flipped[good.length - 4 - 19 - 5] ^= 0x10; // inside the uart payload
  refused(writeRaw(flipped), /^checksum mismatch/);
});

test('file: a checkpoint without exactly one config section is refused', () => {
  refused(
    writeRaw(rawCheckpoint([{ code: SECTION_KINDS.device, name: 'uart' }])),
    /^checkpoint has no config section$/,
  );
  refused(writeRaw(rawCheckpoint([CONFIG(), { ...CONFIG(), name: 'other' }])), /^checkpoint has 2 config sections$/);
});

test('file: the checksum covers the RAM section too', () => {
  const path = freshPath();
  writeCheckpoint(path, { sections: [config], ram: patternRam(1 << 20) });
  const bytes = readFileSync(path);
  const cp = readCheckpoint(path);
  bytes[cp.ram!.offset + 5000] ^= 1;
  refused(writeRaw(bytes), /^checksum mismatch/);
  refused(writeRaw(withFixedChecksum(bytes).subarray(0, bytes.length - 1)), /./);
});

// ---- readRam -------------------------------------------------------------------------------------------------------

test('file: readRam checks its range and refuses a file that changed since it was verified', () => {
  const path = freshPath();
  writeCheckpoint(path, { sections: [config], ram: patternRam(8192) });
  const cp = readCheckpoint(path);
  assert.throws(
    () => readRam(cp, 8000, 200, new Uint8Array(200)),
    /RAM read of 200 bytes at offset 8000 is outside the 8192-byte RAM section/,
  );
  assert.throws(() => readRam(cp, 0, 100, new Uint8Array(10)), /into a buffer of 10/);
  const reader = openRam(cp);
  const into = new Uint8Array(4);
  reader.read(4096, 4, into);
  reader.close();
  assert.throws(() => reader.read(0, 1, into), /closed/);
  utimesSync(path, new Date(2000, 1, 1), new Date(2000, 1, 1));
  assert.throws(
    () => readRam(cp, 0, 1, into),
    (e: Error) => e instanceof CheckpointError && /changed since it was verified/.test(e.message),
  );
  const noRam = freshPath();
  writeCheckpoint(noRam, { sections: [config] });
  assert.throws(() => readRam(readCheckpoint(noRam), 0, 1, into), /has no RAM section/);
});

// ---- big RAM ---------------------------------------------------------------------------------------------------------

test('file: a 2 GiB mostly-zero RAM section round-trips in chunks, stored sparse, without holding RAM in memory', () => {
  const GiB = 1 << 30;
  const size = 2 * GiB;
  const chunk = new Uint8Array(8 << 20); // the source hands out one reused buffer: no 2 GiB anywhere in this process
  const marked = (offset: number) => offset % (256 << 20) === 0; // one non-zero chunk every 256 MiB
  const ram: RamSource = {
    size,
    read(offset, length) {
      const view = chunk.subarray(0, length);
      view.fill(0);
      if (marked(offset)) new DataView(view.buffer).setFloat64(0, offset, true);
      return view;
    },
  };
  const path = freshPath();
  const rssBefore = process.memoryUsage().rss;
  const started = Date.now();
  const written = writeCheckpoint(path, { sections: [config], ram });
  const cp = readCheckpoint(path);
  const ms = Date.now() - started;
  const rssGrowth = process.memoryUsage().rss - rssBefore;
  assert.is(cp.ram!.length, size);
  assert.is(written.bytes, statSync(path).size);
  assert.ok(
    statSync(path).blocks * 512 < 256 << 20,
    `zero chunks are holes: ${statSync(path).blocks * 512} bytes allocated`,
  );
  assert.ok(rssGrowth < 200 << 20, `RSS grew by ${rssGrowth >> 20} MiB`);
  const probe = new Uint8Array(16);
  for (const offset of [0, 256 << 20, GiB + (768 << 20)]) {
    readRam(cp, offset, 16, probe);
    assert.is(new DataView(probe.buffer).getFloat64(0, true), offset);
  }
  readRam(cp, GiB + 12345, 16, probe);
  assert.equal([...probe], new Array(16).fill(0));
  console.log(`     2 GiB RAM section: write + verify ${ms} ms, RSS +${Math.max(0, rssGrowth >> 20)} MiB`);
  rmSync(path);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
