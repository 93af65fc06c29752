// The RAM section goes to disk with O_DIRECT where the file system allows it: the file is the one a buffered write
// gives (byte for byte, so the same checksum), the page cache is not filled with it, guest-like page-aligned memory
// goes out without a copy, and a file system that refuses O_DIRECT gets a buffered write that says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsonSection, readCheckpoint, readRam, writeCheckpoint, type RamSource } from './checkpoint-file.js';
import { residentBytes } from '../../src/sys/page-cache.js';
import { alignedBuffer, openDirect } from '../../src/sys/direct-io.js';
import { testIf } from '../../test/support/skip.js';

const MIB = 1 << 20;
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const config = jsonSection('config', 'machine', { ram: 64 * MIB, cpus: 1 });

/** RAM of `size` bytes, a function of the offset, an all-zero stretch in the middle; `aligned`: page-aligned views. */
function ram(size: number, aligned: boolean): RamSource & { bytes: Uint8Array } {
  const bytes = aligned ? alignedBuffer(size, 4096) : new Uint8Array(size);
  for (let i = 0; i < size; i += 4) bytes[i] = (i >>> 12) | 1;
  bytes.fill(0, size >> 2, size >> 1);
  return { size, bytes, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

function readBack(path: string, size: number): Uint8Array {
  const checkpoint = readCheckpoint(path); // verifies the whole file against its checksum
  const out = new Uint8Array(size);
  readRam(checkpoint, 0, size, out);
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-direct-'));
const onPageCache = statfsSync(dir).type === TMPFS_MAGIC; // tmpfs: the file *is* page cache, nothing to measure

testIf(
  test,
  onPageCache ? `${tmpdir()} is a tmpfs: the page cache holds every file there` : null,
  'direct: 64 MiB of RAM written with O_DIRECT load back byte for byte, the file equals the buffered one (same checksum), and under 50 % of it is left in the page cache (buffered: all of it)',
  () => {
    const source = ram(64 * MIB, false);
    const direct = join(dir, 'direct.cpr');
    const buffered = join(dir, 'buffered.cpr');
    const d = writeCheckpoint(direct, { sections: [config], ram: source });
    const b = writeCheckpoint(buffered, { sections: [config], ram: source }, { directIo: false });
    // Measured before anything reads the files: reading fills the page cache.
    const residentDirect = residentBytes(direct);
    const residentBuffered = residentBytes(buffered);
    assert.is(d.ramIo?.mode, 'direct', JSON.stringify(d.ramIo));
    assert.is(d.ramIo?.directBytes, 48 * MIB, 'every non-zero chunk went direct (the zero quarter is a hole)');
    assert.is(b.ramIo?.mode, 'buffered');
    assert.match(b.ramIo?.reason ?? '', /not asked/);
    assert.ok(residentDirect < 32 * MIB, `direct: ${residentDirect} bytes resident, under half the RAM`);
    assert.ok(residentBuffered >= 32 * MIB, `buffered: ${residentBuffered} bytes resident (the contrast)`);
    assert.ok(readFileSync(direct).equals(readFileSync(buffered)), 'the same bytes either way');
    const cp = readCheckpoint(direct);
    assert.is(cp.checksum, readCheckpoint(buffered).checksum);
    assert.is(cp.ram!.offset % 4096, 0, 'the RAM payload starts page-aligned in the file');
    assert.ok(Buffer.from(readBack(direct, source.size)).equals(Buffer.from(source.bytes)), 'RAM identical');
  },
);

test('direct: page-aligned RAM (as guest memory is) goes out without a copy; unaligned memory through an aligned buffer', () => {
  const aligned = writeCheckpoint(join(dir, 'aligned.cpr'), { sections: [config], ram: ram(16 * MIB, true) });
  const heap = writeCheckpoint(join(dir, 'heap.cpr'), { sections: [config], ram: ram(16 * MIB, false) });
  if (aligned.ramIo?.mode !== 'direct') return void console.log(`  (buffered here: ${aligned.ramIo?.reason})`);
  assert.is(aligned.ramIo.copiedBytes, 0);
  assert.is(heap.ramIo?.copiedBytes, heap.ramIo?.directBytes);
});

test('direct: a RAM size that is not a multiple of the alignment: the aligned part goes direct, the tail buffered', () => {
  const size = 16 * MIB + 1000;
  const source = ram(size, true);
  const path = join(dir, 'odd.cpr');
  const result = writeCheckpoint(path, { sections: [config], ram: source });
  if (result.ramIo?.mode === 'direct') {
    const { directBytes, bufferedBytes } = result.ramIo;
    assert.ok(
      bufferedBytes > 0 && bufferedBytes < 4096,
      `only the last chunk's unaligned end is buffered: ${bufferedBytes}`,
    );
    assert.is(directBytes + bufferedBytes, size, 'no chunk here is all zeros: every byte is written');
  }
  assert.ok(Buffer.from(readBack(path, size)).equals(Buffer.from(source.bytes)));
});

/** Whether the file system at `d` lets a file be opened O_DIRECT (what the writer probes). */
function takesDirect(d: string): boolean {
  const path = join(d, 'probe');
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    const direct = openDirect(path, fd);
    if (typeof direct === 'string') return false;
    closeSync(direct);
    return true;
  } finally {
    closeSync(fd);
    rmSync(path);
  }
}

test('direct: on /dev/shm (tmpfs: O_DIRECT is refused before Linux 6.6, accepted since) the file loads either way and says which', () => {
  const shm = mkdtempSync('/dev/shm/tsvmm-direct-');
  try {
    const source = ram(16 * MIB, true);
    const path = join(shm, 'a.cpr');
    const result = writeCheckpoint(path, { sections: [config], ram: source });
    assert.is(result.ramIo?.mode, takesDirect(shm) ? 'direct' : 'buffered', JSON.stringify(result.ramIo));
    if (result.ramIo?.mode === 'buffered') assert.match(result.ramIo.reason ?? '', /O_DIRECT|direct I\/O/);
    assert.ok(Buffer.from(readBack(path, source.size)).equals(Buffer.from(source.bytes)));
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
});

/** A ramfs (no O_DIRECT on any kernel) on a fresh directory, or why there cannot be one here. */
function ramfs(): string {
  const at = mkdtempSync(join(tmpdir(), 'tsvmm-ramfs-'));
  try {
    execFileSync('mount', ['-t', 'ramfs', '-o', 'mode=0700', 'tsvmm-ramfs', at], { stdio: 'pipe' });
  } catch (e) {
    rmSync(at, { recursive: true, force: true });
    throw new Error(`mounting a ramfs needs root (CAP_SYS_ADMIN): ${(e as Error).message.split('\n')[0]}`);
  }
  return at;
}

testIf(
  test,
  process.getuid?.() === 0 ? null : 'mounting a ramfs needs root',
  'direct: a file system that refuses O_DIRECT (ramfs) gets a buffered write that names the refusal, and the file loads',
  () => {
    const at = ramfs();
    try {
      assert.is(statfsSync(at).type, RAMFS_MAGIC);
      const source = ram(16 * MIB, true);
      const path = join(at, 'a.cpr');
      const result = writeCheckpoint(path, { sections: [config], ram: source });
      assert.is(result.ramIo?.mode, 'buffered');
      assert.match(result.ramIo?.reason ?? '', /refuses O_DIRECT \(EINVAL on open\)|no direct I\/O/);
      assert.is(result.ramIo?.directBytes, 0);
      assert.ok(Buffer.from(readBack(path, source.size)).equals(Buffer.from(source.bytes)));
    } finally {
      execFileSync('umount', [at]);
      rmSync(at, { recursive: true, force: true });
    }
  },
);

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
