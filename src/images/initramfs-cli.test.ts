import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatEntries,
  INITRAMFS_USAGE,
  initramfsMain,
  parseInitramfsArgs,
  InitramfsUsageError,
} from './initramfs-cli.js';
import { readInitramfs } from './initramfs.js';
import { busyboxMissing } from './testing/host-tools.js';
import { testIf } from '../../test/support/skip.js';

const noBusybox = busyboxMissing();
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-initramfs-cli-'));

function run(argv: string[]): { status: number; stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  const status = initramfsMain(argv, {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
  });
  return { status, stdout, stderr };
}

test('tsvmm initramfs: flags are parsed in both spellings, repeatable ones in order', () => {
  const c = parseInitramfsArgs([
    '-o',
    'out.img',
    '--run',
    'echo 1',
    '--run=echo 2',
    '--file',
    'a/b=c=/etc/d',
    '--module',
    'virtio_blk',
    '--modules-dir=/m',
    '--module',
    'x/y.ko',
    '--no-load-modules',
    '--no-gzip',
    '--busybox',
    '/bb',
  ]);
  assert.is(c.output, 'out.img');
  assert.equal(c.commands, ['echo 1', 'echo 2']);
  assert.equal(c.files, [{ source: 'a/b=c', path: '/etc/d' }], 'HOST=GUEST splits at the last =');
  assert.equal(c.modules, ['virtio_blk', 'x/y.ko']);
  assert.is(c.modulesDir, '/m');
  assert.is(c.loadModules, false);
  assert.is(c.gzip, false);
  assert.is(c.busybox, '/bb');
  assert.is(parseInitramfsArgs(['--output=o', '--init', 'i']).initFile, 'i');
  assert.is(parseInitramfsArgs(['--list', 'f']).list, 'f');
});

test('tsvmm initramfs: bad command lines are usage errors that say what is wrong', () => {
  const cases: [string[], RegExp][] = [
    [[], /missing -o FILE/],
    [['out.img'], /unexpected argument 'out.img'/],
    [['-o'], /-o needs a value/],
    [['-o', 'a', '-o', 'b'], /given more than once/],
    [['-o', 'a', '--bogus'], /unknown option '--bogus'/],
    [['-o', 'a', '--file', 'nohost'], /expected HOST=GUEST/],
    [['-o', 'a', '--file', 'host='], /expected HOST=GUEST/],
    [['-o', 'a', '--no-gzip=1'], /takes no value/],
    [['-o', 'a', '--busybox', '/b', '--no-busybox'], /give one/],
    [['-o', 'a', '--no-busybox', '--busybox', '/b'], /give one/],
    [['-o', 'a', '--init', 'i', '--run', 'true'], /put the commands in your script/],
    [['--list', 'f', '-o', 'a'], /drop -o/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseInitramfsArgs(argv),
      (e: Error) => e instanceof InitramfsUsageError && message.test(e.message),
      argv.join(' '),
    );
    const r = run(argv);
    assert.is(r.status, 2, argv.join(' '));
    assert.match(r.stderr, /^tsvmm initramfs: /);
  }
  const named = run(['-o', join(scratch, 'x.img'), '--module', 'virtio_blk']);
  assert.is(named.status, 2);
  assert.match(named.stderr, /needs --modules-dir/);
});

test('tsvmm initramfs: --help prints the usage, every flag in it', () => {
  const r = run(['--help']);
  assert.is(r.status, 0);
  assert.is(r.stdout, `${INITRAMFS_USAGE}\n`);
  for (const flag of [
    '-o, --output',
    '--init',
    '--run',
    '--file',
    '--modules-dir',
    '--module',
    '--no-load-modules',
    '--busybox',
    '--no-busybox',
    '--no-gzip',
    '--list',
  ]) {
    assert.ok(INITRAMFS_USAGE.includes(flag), flag);
  }
});

testIf(test, noBusybox, 'tsvmm initramfs: builds the image, reports its size, and --list shows it like ls -l', () => {
  const out = join(scratch, 'initrd.img');
  const host = join(scratch, 'hello.txt');
  writeFileSync(host, 'hello\n');
  const ko = join(scratch, 'root/lib/modules/6.1.0-x/kernel/m.ko');
  mkdirSync(join(ko, '..'), { recursive: true });
  writeFileSync(ko, 'ko');
  const r = run(['-o', out, '--run', 'echo from-cli', '--file', `${host}=/etc/hello.txt`, '--module', ko]);
  assert.is(r.stderr, '');
  assert.is(r.status, 0);
  const bytes = readFileSync(out);
  assert.match(r.stdout, new RegExp(`wrote ${out} \\(${bytes.length} bytes, \\d+ entries, 1 kernel module\\(s\\)\\)`));
  const entries = readInitramfs(bytes);
  const init = Buffer.from(entries.find((e) => e.name === 'init')!.data).toString();
  assert.ok(init.includes('echo from-cli'));
  assert.ok(init.includes("insmod '/lib/modules/6.1.0-x/kernel/m.ko'"));

  const listed = run(['--list', out]);
  assert.is(listed.status, 0);
  assert.is(listed.stdout, `${formatEntries(entries)}\n`);
  assert.match(listed.stdout, /^crw------- 0\/0 +5,1 dev\/console$/m);
  assert.match(listed.stdout, /^lrwxrwxrwx 0\/0 +12 bin\/sh -> \/bin\/busybox$/m);
  assert.match(listed.stdout, /^drwxrwxrwt 0\/0 +0 tmp$/m);
  assert.match(listed.stdout, /^-rwxr-xr-x 0\/0 +\d+ init$/m);
  assert.match(listed.stdout, /^-rw-r--r-- 0\/0 +6 etc\/hello\.txt$/m);
});

testIf(
  test,
  noBusybox,
  'tsvmm initramfs: a build that cannot be done exits 1 with the reason, and writes nothing',
  () => {
    const out = join(scratch, 'never.img');
    const r = run(['-o', out, '--file', `${join(scratch, 'missing')}=/x`]);
    assert.is(r.status, 1);
    assert.match(r.stderr, /^tsvmm initramfs: file 'x': source '.*missing' does not exist\n$/);
    assert.throws(() => readFileSync(out), /ENOENT/);
    const bad = run(['--list', join(scratch, 'missing')]);
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /ENOENT/);
  },
);

test.after(() => rmSync(scratch, { recursive: true, force: true }));

test.run();
