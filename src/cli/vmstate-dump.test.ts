import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { u8, u64, bytes, newRecord, type Descriptor } from '../../cpr/vmstate/vmstate.js';
import { encodeRecord } from '../../cpr/vmstate/stream.js';
import { writeCheckpoint, jsonSection, CheckpointError, FORMAT_VERSION } from '../../cpr/file/checkpoint-file.js';
import { vmstateDump, sectionKey } from './vmstate-dump.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-dump-'));
const uart = {
  name: 'uart',
  version: 1,
  fields: [u8('ier'), u64('stamp'), u8('n'), bytes('fifo', 4, { lengthField: 'n' })],
} as const satisfies Descriptor;

function sample(): string {
  const path = join(dir, 'sample.cpr');
  const r = newRecord(uart);
  r.ier = 5;
  r.stamp = 1n << 60n;
  r.n = 2;
  r.fifo.set([0xab, 0xcd]);
  writeCheckpoint(path, {
    sections: [
      jsonSection('config', 'machine', { cpus: 1 }),
      { kind: 'device', name: 'uart', instance: 0, version: 1, payload: encodeRecord(uart, r) },
      { kind: 'device', name: 'mystery', instance: 3, version: 7, payload: new Uint8Array([1, 2, 3]) },
      jsonSection('timings', 'save', { stopNs: 10 }),
    ],
    ram: { size: 8192, read: (_o, n) => new Uint8Array(n) },
    description: { what: 'a test' },
  });
  return path;
}

test('vmstate dump: known sections are decoded field by field, JSON sections shown as JSON, others as size and hex, RAM as size', () => {
  const path = sample();
  const dump = JSON.parse(vmstateDump(path, new Map([[sectionKey('device', 'uart'), uart]])));
  assert.is(dump.formatVersion, FORMAT_VERSION);
  assert.match(dump.checksum, /^crc32:[0-9a-f]{8}$/);
  const [config, dev, mystery, timings, description, ram] = dump.sections;
  assert.equal(config.json, { cpus: 1 });
  assert.equal(dev.state, { ier: 5, stamp: '1152921504606846976', n: 2, fifo: 'abcd' });
  assert.equal([mystery.instance, mystery.version, mystery.size, mystery.hexPrefix], [3, 7, 3, '010203']);
  assert.equal(timings.json, { stopNs: 10 });
  assert.equal(description.json, { what: 'a test' });
  assert.equal([ram.kind, ram.size], ['ram', 8192]);
  assert.not.ok('hexPrefix' in ram);
});

test('vmstate dump: a registry function works as well as a map; an undecodable section shows its error', () => {
  const path = sample();
  const wrong = { name: 'wrong', version: 1, fields: [u8('only')] } as const satisfies Descriptor;
  const dump = JSON.parse(
    vmstateDump(path, (kind, name) => (kind === 'device' && name === 'uart' ? wrong : undefined)),
  );
  assert.match(dump.sections[1].error, /vmstate wrong: unexpected byte/);
  assert.ok(dump.sections[1].hexPrefix.startsWith('05'));
});

test('vmstate dump: a refused file is a CheckpointError', () => {
  const path = join(dir, 'junk.cpr');
  writeFileSync(path, 'not a checkpoint at all');
  assert.throws(
    () => vmstateDump(path, new Map()),
    (e: Error) => e instanceof CheckpointError && /bad magic/.test(e.message),
  );
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
