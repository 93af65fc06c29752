import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpioFormatError, HEADER_SIZE, readCpioNewc, writeCpioNewc, type CpioEntry } from './cpio-newc.js';
import { cpioMissing } from './testing/host-tools.js';
import { testIf } from '../../test/support/skip.js';

const entry = (e: Partial<CpioEntry> & Pick<CpioEntry, 'name' | 'type'>): CpioEntry => ({
  perm: 0o644,
  uid: 0,
  gid: 0,
  mtime: 0,
  data: new Uint8Array(0),
  rdevMajor: 0,
  rdevMinor: 0,
  ...e,
});

const sample: CpioEntry[] = [
  entry({ name: 'bin', type: 'dir', perm: 0o755 }),
  entry({
    name: 'bin/hello',
    type: 'file',
    perm: 0o755,
    data: Buffer.from('#!/bin/sh\necho hi\n'),
    mtime: 1_700_000_000,
  }),
  entry({ name: 'bin/sh', type: 'symlink', perm: 0o777, data: Buffer.from('/bin/busybox') }),
  entry({ name: 'dev', type: 'dir', perm: 0o755 }),
  entry({ name: 'dev/console', type: 'chardev', perm: 0o600, rdevMajor: 5, rdevMinor: 1 }),
  entry({ name: 'dev/sda', type: 'blockdev', perm: 0o660, rdevMajor: 8, rdevMinor: 0, gid: 6 }),
  entry({ name: 'tmp', type: 'dir', perm: 0o1777 }),
  entry({ name: 'e', type: 'file', data: new Uint8Array(0) }),
];

test('cpio-newc: a header is "070701" and 13 eight-digit hex fields: ino, mode, uid, gid, nlink, mtime, size, dev, rdev, namesize, check', () => {
  const bytes = writeCpioNewc([
    entry({ name: 'ab', type: 'file', perm: 0o644, uid: 1, gid: 2, mtime: 0x5f5e100, data: Buffer.from('xyz') }),
  ]);
  const header = bytes.toString('ascii', 0, HEADER_SIZE);
  assert.is(
    header,
    '070701' +
      '00000001' +
      '000081a4' +
      '00000001' +
      '00000002' +
      '00000001' +
      '05f5e100' +
      '00000003' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000003' +
      '00000000',
  );
  // name "ab\0" ends at 113, padded to 116 where the data starts; the data is padded to 120.
  assert.is(bytes.toString('latin1', 110, 116), 'ab\0\0\0\0');
  assert.is(bytes.toString('latin1', 116, 120), 'xyz\0');
  assert.is(bytes.toString('ascii', 120, 126), '070701');
  assert.is(bytes.toString('latin1', 120 + HEADER_SIZE, 120 + HEADER_SIZE + 11), 'TRAILER!!!\0');
});

test('cpio-newc: every member starts 4-byte aligned, the archive ends with the trailer and is padded to 512 bytes', () => {
  const bytes = writeCpioNewc(sample);
  assert.is(bytes.length % 512, 0);
  let at = 0;
  let members = 0;
  while (at < bytes.length && bytes[at] !== 0) {
    assert.is(at % 4, 0, `member ${members} at ${at}`);
    assert.is(bytes.toString('ascii', at, at + 6), '070701');
    const size = parseInt(bytes.toString('ascii', at + 54, at + 62), 16);
    const nameSize = parseInt(bytes.toString('ascii', at + 94, at + 102), 16);
    const name = bytes.toString('utf8', at + HEADER_SIZE, at + HEADER_SIZE + nameSize - 1);
    members++;
    at = (((at + HEADER_SIZE + nameSize + 3) & ~3) + size + 3) & ~3;
    if (name === 'TRAILER!!!') break;
  }
  assert.is(members, sample.length + 1);
  assert.ok(
    bytes.subarray(at).every((b) => b === 0),
    'only zeros after the trailer',
  );
});

test('cpio-newc: what is written reads back the same: types, modes, owners, mtimes, data, link targets, device numbers', () => {
  const back = readCpioNewc(writeCpioNewc(sample));
  assert.equal(
    back.map((e) => ({ ...e, data: Buffer.from(e.data).toString('latin1') })),
    sample.map((e) => ({ ...e, data: Buffer.from(e.data).toString('latin1') })),
  );
});

test('cpio-newc: every entry gets its own inode and nlink 1 (2 for directories), so none is taken for a hard link', () => {
  const bytes = writeCpioNewc(sample);
  const inodes: number[] = [];
  let at = 0;
  for (const e of sample) {
    inodes.push(parseInt(bytes.toString('ascii', at + 6, at + 14), 16));
    assert.is(parseInt(bytes.toString('ascii', at + 38, at + 46), 16), e.type === 'dir' ? 2 : 1, e.name);
    const size = parseInt(bytes.toString('ascii', at + 54, at + 62), 16);
    const nameSize = parseInt(bytes.toString('ascii', at + 94, at + 102), 16);
    at = (((at + HEADER_SIZE + nameSize + 3) & ~3) + size + 3) & ~3;
  }
  assert.is(new Set(inodes).size, sample.length);
});

test('cpio-newc: the reader takes concatenated archives with zero padding between them, as the kernel does', () => {
  const a = writeCpioNewc(sample.slice(0, 2));
  const b = writeCpioNewc(sample.slice(2));
  const both = Buffer.concat([a, Buffer.alloc(8), b]);
  assert.equal(
    readCpioNewc(both).map((e) => e.name),
    sample.map((e) => e.name),
  );
});

test('cpio-newc: the writer refuses what the format cannot carry', () => {
  assert.throws(() => writeCpioNewc([entry({ name: 'd', type: 'dir', data: Buffer.from('x') })]), /cannot carry data/);
  assert.throws(() => writeCpioNewc([entry({ name: 'TRAILER!!!', type: 'file' })]), /reserved/);
  assert.throws(() => writeCpioNewc([entry({ name: 'f', type: 'file', perm: 0o10000 })]), /exceed 0o7777/);
  assert.throws(() => writeCpioNewc([entry({ name: 'f', type: 'file', uid: 2 ** 32 })]), /does not fit in 32 bits/);
  assert.throws(() => writeCpioNewc([entry({ name: 'x'.repeat(4096), type: 'file' })]), /longer than 4095/);
  assert.throws(() => writeCpioNewc([entry({ name: 'a\0b', type: 'file' })]), /NUL/);
});

test('cpio-newc: the reader checks every length against the buffer and names what is wrong', () => {
  const good = writeCpioNewc(sample);
  const cases: [string, Buffer, RegExp][] = [
    ['bad magic', Buffer.concat([Buffer.from('070707'), good.subarray(6)]), /bad magic/],
    ['truncated header', good.subarray(0, 50), /truncated header/],
    [
      'non-hex field',
      Buffer.concat([good.subarray(0, 6), Buffer.from('zzzzzzzz'), good.subarray(14)]),
      /not 8 hex digits/,
    ],
    ['truncated data', good.subarray(0, 150), /runs past the end|truncated/],
    ['name size 0', Buffer.concat([good.subarray(0, 94), Buffer.from('00000000'), good.subarray(102)]), /name size 0/],
    [
      'name without NUL',
      Buffer.concat([good.subarray(0, 94), Buffer.from('00000002'), good.subarray(102)]),
      /not NUL-terminated/,
    ],
    [
      'huge file size',
      Buffer.concat([good.subarray(0, 54), Buffer.from('ffffffff'), good.subarray(62)]),
      /runs past the end/,
    ],
    ['stray bytes', Buffer.concat([Buffer.alloc(2)]), /bad padding/],
  ];
  for (const [what, bytes, message] of cases) {
    try {
      readCpioNewc(bytes);
      assert.unreachable(what);
    } catch (e) {
      assert.instance(e, CpioFormatError, what);
      assert.match((e as Error).message, message, what);
    }
  }
});

testIf(
  test,
  cpioMissing(),
  'cpio-newc: GNU cpio lists and extracts our archive with the same names, types, modes and targets',
  () => {
    const bytes = writeCpioNewc(sample);
    const listing = execFileSync('cpio', ['-t', '--quiet'], { input: bytes, encoding: 'utf8' }).trim().split('\n');
    assert.equal(
      listing,
      sample.map((e) => e.name),
    );
    const verbose = execFileSync('cpio', ['-tv', '--quiet'], { input: bytes, encoding: 'utf8' });
    assert.match(verbose, /^crw------- .* 5,\s+1 .* dev\/console$/m);
    assert.match(verbose, /^brw-rw---- .* 8,\s+0 .* dev\/sda$/m);
    assert.match(verbose, /^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m);
    assert.match(verbose, /^drwxrwxrwt .* tmp$/m);
    assert.match(verbose, /^-rwxr-xr-x .* 18 .* bin\/hello$/m);

    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-cpio-'));
    try {
      // Without device nodes: making them needs root, and the listing above already checked them.
      const noDevices = writeCpioNewc(sample.filter((e) => e.type !== 'chardev' && e.type !== 'blockdev'));
      execFileSync('cpio', ['-i', '-d', '-m', '--quiet', '--no-absolute-filenames'], { cwd: dir, input: noDevices });
      assert.is(readFileSync(join(dir, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hi\n');
      assert.is(statSync(join(dir, 'bin/hello')).mode & 0o7777, 0o755);
      assert.is(statSync(join(dir, 'bin/hello')).mtimeMs, 1_700_000_000_000);
      assert.is(readlinkSync(join(dir, 'bin/sh')), '/bin/busybox');
      assert.is(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test.run();
