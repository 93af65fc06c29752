import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  buildInitramfs,
  defaultInit,
  initramfsEntries,
  INIT_BANNER,
  INIT_POWEROFF,
  readInitramfs,
  writeInitramfs,
  type InitramfsOptions,
} from './initramfs.js';
import { busyboxApplets, findBusybox } from './busybox.js';
import type { CpioEntry } from './cpio-newc.js';
import { busyboxMissing, cpioMissing } from './testing/host-tools.js';
import { testIf } from '../../test/support/skip.js';

const noBusybox = busyboxMissing();
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-initramfs-'));
const text = (e: CpioEntry | undefined): string => Buffer.from(e!.data).toString('utf8');
const byName = (entries: CpioEntry[]): Map<string, CpioEntry> => new Map(entries.map((e) => [e.name, e]));
/** A tiny fake "ELF executable": enough for the checks that only look at the magic. */
const elfInit = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(57)]);

testIf(
  test,
  noBusybox,
  'initramfs: the image is gzip over newc cpio and holds the standard directories with their modes',
  () => {
    const bytes = buildInitramfs();
    assert.is(bytes[0], 0x1f);
    assert.is(bytes[1], 0x8b);
    assert.is(gunzipSync(bytes).toString('ascii', 0, 6), '070701');
    const entries = byName(readInitramfs(bytes));
    for (const d of ['bin', 'dev', 'etc', 'mnt', 'proc', 'root', 'sbin', 'sys', 'tmp', 'usr', 'usr/bin', 'usr/sbin']) {
      assert.is(entries.get(d)?.type, 'dir', d);
    }
    assert.is(entries.get('tmp')!.perm, 0o1777);
    assert.is(entries.get('root')!.perm, 0o700);
    assert.is(entries.get('proc')!.perm, 0o755);
    for (const e of entries.values()) {
      assert.is(e.uid, 0, e.name);
      assert.is(e.gid, 0, e.name);
      assert.is(e.mtime, 0, e.name);
    }
  },
);

testIf(test, noBusybox, 'initramfs: /dev/console is char 5:1 (0600) and /dev/null char 1:3 (0666)', () => {
  const entries = byName(readInitramfs(buildInitramfs()));
  const console_ = entries.get('dev/console')!;
  assert.equal([console_.type, console_.rdevMajor, console_.rdevMinor, console_.perm], ['chardev', 5, 1, 0o600]);
  const nul = entries.get('dev/null')!;
  assert.equal([nul.type, nul.rdevMajor, nul.rdevMinor, nul.perm], ['chardev', 1, 3, 0o666]);
});

testIf(
  test,
  noBusybox,
  "initramfs: /bin/busybox is the host's static busybox, executable, with a link to it for every applet it lists",
  () => {
    const host = findBusybox()!;
    const entries = byName(readInitramfs(buildInitramfs()));
    const bb = entries.get('bin/busybox')!;
    assert.is(bb.type, 'file');
    assert.is(bb.perm, 0o755);
    assert.ok(Buffer.from(bb.data).equals(readFileSync(host)), 'same bytes as the host busybox');
    const applets = busyboxApplets(host);
    assert.ok(applets.length > 100, `busybox lists ${applets.length} applets`);
    for (const a of applets) {
      const link = entries.get(a);
      assert.is(link?.type, 'symlink', a);
      assert.is(text(link), '/bin/busybox', a);
    }
    for (const essential of ['bin/sh', 'bin/mount', 'sbin/poweroff', 'sbin/insmod', 'bin/uname', 'bin/ls']) {
      assert.is(entries.get(essential)?.type, 'symlink', essential);
    }
  },
);

testIf(test, noBusybox, 'initramfs: entries are sorted so that every directory comes before what it holds', () => {
  const entries = readInitramfs(
    buildInitramfs({
      files: [
        { path: 'z/y/x', data: 'deep' },
        { path: 'a', data: 'top' },
      ],
    }),
  );
  const names = entries.map((e) => e.name);
  assert.equal(names, [...names].sort());
  const seen = new Set<string>();
  for (const n of names) {
    const parent = n.includes('/') ? n.slice(0, n.lastIndexOf('/')) : null;
    if (parent) assert.ok(seen.has(parent), `${parent} before ${n}`);
    seen.add(n);
  }
});

testIf(
  test,
  noBusybox,
  'initramfs: the default /init is an executable sh script that mounts, reports and powers off',
  () => {
    const entries = byName(readInitramfs(buildInitramfs()));
    const init = entries.get('init')!;
    assert.is(init.type, 'file');
    assert.is(init.perm, 0o755);
    const script = text(init);
    assert.ok(script.startsWith('#!/bin/sh\n'));
    assert.is(script, defaultInit());
    for (const line of [
      'mount -t proc proc /proc',
      'mount -t sysfs sysfs /sys',
      'mount -t devtmpfs devtmpfs /dev',
      `echo '${INIT_BANNER}'`,
      'uname -a',
      'cat /proc/cmdline',
      '/sys/class/net',
      `echo '${INIT_POWEROFF}'`,
    ]) {
      assert.ok(script.includes(line), line);
    }
    assert.ok(script.trimEnd().endsWith('poweroff -f'), 'poweroff -f is the last command');
    assert.ok(script.indexOf(INIT_BANNER) < script.indexOf('uname -a'), 'the banner comes first');
  },
);

test('initramfs: the default init runs the given commands and insmods the modules in order, quoted for sh', () => {
  const script = defaultInit({
    modules: ['lib/modules/v/a.ko', "lib/modules/v/it's.ko"],
    commands: ['echo one', 'echo two'],
  });
  const a = script.indexOf("insmod '/lib/modules/v/a.ko'");
  const b = script.indexOf(`insmod '/lib/modules/v/it'\\''s.ko'`);
  assert.ok(a > 0 && b > a, 'modules loaded in the given order');
  assert.ok(script.indexOf(INIT_BANNER) < a, 'banner before module loading');
  const one = script.indexOf('echo one');
  assert.ok(one > b && script.indexOf('echo two') > one && script.indexOf('poweroff -f') > one);
  // The script is valid sh.
  const file = join(scratch, 'init.sh');
  writeFileSync(file, script);
  execFileSync('sh', ['-n', file]);
});

testIf(
  test,
  noBusybox,
  'initramfs: modules go to their lib/modules paths (0644) and the default init loads them',
  () => {
    const ko = join(scratch, 'lib', 'modules', '6.1.0-test', 'kernel', 'drivers', 'block');
    mkdirSync(ko, { recursive: true });
    writeFileSync(join(ko, 'virtio_blk.ko'), 'module bytes');
    const entries = byName(
      readInitramfs(
        buildInitramfs({
          modules: [
            { path: 'lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko', data: Buffer.from('virtio') },
            { source: join(ko, 'virtio_blk.ko') },
          ],
        }),
      ),
    );
    const blk = entries.get('lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko')!;
    assert.is(text(blk), 'module bytes');
    assert.is(blk.perm, 0o644);
    assert.is(entries.get('lib/modules/6.1.0-test/kernel/drivers')?.type, 'dir');
    assert.is(entries.get('lib/modules/6.1.0-test/kernel/drivers')?.perm, 0o755);
    const init = text(entries.get('init'));
    assert.ok(init.indexOf('/virtio.ko') < init.indexOf('/virtio_blk.ko'));
    const quiet = byName(
      readInitramfs(buildInitramfs({ modules: [{ source: join(ko, 'virtio_blk.ko') }], loadModules: false })),
    );
    assert.ok(!text(quiet.get('init')).includes('insmod'));
    assert.ok(quiet.has('lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko'));
  },
);

testIf(test, noBusybox, 'initramfs: a given init (text or file) replaces the default one and stays executable', () => {
  const own = '#!/bin/sh\necho mine\npoweroff -f\n';
  assert.is(text(byName(readInitramfs(buildInitramfs({ init: own }))).get('init')), own);
  const file = join(scratch, 'my-init');
  writeFileSync(file, own);
  chmodSync(file, 0o600);
  const init = byName(readInitramfs(buildInitramfs({ initFile: file }))).get('init')!;
  assert.is(text(init), own);
  assert.is(init.perm, 0o755);
});

testIf(
  test,
  noBusybox,
  'initramfs: extra files, links and directories are added with their modes; a source file keeps its own',
  () => {
    const src = join(scratch, 'tool.sh');
    writeFileSync(src, '#!/bin/sh\n');
    chmodSync(src, 0o750);
    const entries = byName(
      readInitramfs(
        buildInitramfs({
          files: [
            { path: '/etc/hostname', data: 'guest\n' },
            { path: 'usr/local/bin/tool', source: src },
            { path: 'etc/secret', data: Buffer.from([1, 2, 3]), mode: 0o600 },
            { path: 'bin/sh', symlink: 'busybox' },
            { path: 'var/run', directory: true, mode: 0o700 },
          ],
        }),
      ),
    );
    assert.is(text(entries.get('etc/hostname')), 'guest\n');
    assert.is(entries.get('etc/hostname')!.perm, 0o644);
    assert.is(entries.get('usr/local/bin/tool')!.perm, 0o750);
    assert.is(entries.get('usr/local')!.type, 'dir');
    assert.equal([...entries.get('etc/secret')!.data], [1, 2, 3]);
    assert.is(entries.get('etc/secret')!.perm, 0o600);
    assert.is(text(entries.get('bin/sh')), 'busybox', 'a user entry replaces the applet link');
    assert.equal([entries.get('var/run')!.type, entries.get('var/run')!.perm], ['dir', 0o700]);
  },
);

testIf(test, noBusybox, 'initramfs: the same inputs give the same bytes, whatever the order of the files', () => {
  const files: InitramfsOptions['files'] = [
    { path: 'b', data: '2' },
    { path: 'a/x', data: '1' },
    { path: 'c', symlink: 'a' },
  ];
  const one = buildInitramfs({ files, commands: ['true'] });
  const two = buildInitramfs({ files: [...files!].reverse(), commands: ['true'] });
  assert.ok(one.equals(two));
  assert.ok(!one.equals(buildInitramfs({ files, commands: ['false'] })), 'different input, different bytes');
});

testIf(
  test,
  noBusybox,
  'initramfs: writeInitramfs writes what buildInitramfs builds; gzip: false gives the plain cpio',
  () => {
    const path = join(scratch, 'initrd.img');
    const bytes = writeInitramfs(path, { files: [{ path: 'x', data: 'y' }] });
    assert.ok(readFileSync(path).equals(bytes));
    assert.ok(bytes.equals(buildInitramfs({ files: [{ path: 'x', data: 'y' }] })));
    const plain = buildInitramfs({ gzip: false });
    assert.is(plain.toString('ascii', 0, 6), '070701');
    assert.ok(gunzipSync(buildInitramfs()).equals(plain));
  },
);

test("initramfs: without busybox, an ELF /init of one's own makes a minimal archive", () => {
  const entries = readInitramfs(buildInitramfs({ busybox: false, init: elfInit.toString('latin1') }));
  const names = entries.map((e) => e.name);
  assert.ok(!names.includes('bin/busybox') && !names.includes('bin/sh'));
  assert.ok(names.includes('init') && names.includes('dev/console'));
});

test('initramfs: bad inputs are refused with a message naming the problem', () => {
  const missing = join(scratch, 'does-not-exist');
  mkdirSync(join(scratch, 'a-dir'), { recursive: true });
  const own = { busybox: false as const, init: '#!/bin/sh\n' };
  const cases: [string, InitramfsOptions, RegExp][] = [
    ['.. in a path', { ...own, files: [{ path: '../etc/passwd', data: 'x' }] }, /'\.\.\/etc\/passwd' contains '\.\.'/],
    [
      'absolute path leaving the root',
      { ...own, files: [{ path: '/../../etc/shadow', data: 'x' }] },
      /contains '\.\.'/,
    ],
    ['.. in the middle', { ...own, files: [{ path: 'a/../../x', data: 'x' }] }, /contains '\.\.'/],
    ['the root itself', { ...own, files: [{ path: '/', directory: true }] }, /names the archive root/],
    ['empty path', { ...own, files: [{ path: '', data: 'x' }] }, /is empty/],
    ['NUL in a path', { ...own, files: [{ path: 'a\0b', data: 'x' }] }, /NUL/],
    ['missing source', { ...own, files: [{ path: 'x', source: missing }] }, /source '.*does-not-exist' does not exist/],
    [
      'directory as source',
      { ...own, files: [{ path: 'x', source: join(scratch, 'a-dir') }] },
      /is not a regular file/,
    ],
    ['missing init file', { busybox: false, initFile: missing }, /init file: source '.*does-not-exist' does not exist/],
    ['missing module', { ...own, modules: [{ source: join(missing, 'lib/modules/v/x.ko') }] }, /does not exist/],
    ['module without a target', { ...own, modules: [{ source: '/tmp/x.ko' }] }, /no lib\/modules\/… part/],
    ['module data without a path', { ...own, modules: [{ data: Buffer.from('') }] }, /given as data needs a path/],
    [
      'compressed module',
      { ...own, modules: [{ path: 'lib/modules/v/x.ko.xz', data: Buffer.from('') }] },
      /does not end in \.ko/,
    ],
    ['two kinds at once', { ...own, files: [{ path: 'x', data: 'a', symlink: 'b' }] }, /exactly one of/],
    ['nothing given', { ...own, files: [{ path: 'x' }] }, /exactly one of/],
    ['bad mode', { ...own, files: [{ path: 'x', data: 'a', mode: 0o20000 }] }, /not a permission value/],
    [
      'same path twice',
      {
        ...own,
        files: [
          { path: 'etc/x', data: 'a' },
          { path: '/etc/x', data: 'b' },
        ],
      },
      /given twice/,
    ],
    ['file where init goes', { ...own, files: [{ path: 'init', data: 'a' }] }, /given twice \(also as \/init\)/],
    [
      'inside a file',
      {
        ...own,
        files: [
          { path: 'f', data: 'a' },
          { path: 'f/g', data: 'b' },
        ],
      },
      /inside 'f', which is a file/,
    ],
    ['replacing a directory', { ...own, files: [{ path: 'dev', data: 'a' }] }, /would replace a directory/],
    ['init and initFile', { busybox: false, init: '#!/bin/sh\n', initFile: '/x' }, /not both/],
    ['init without #!', { busybox: false, init: 'echo hi\n' }, /neither "#!" nor an ELF header/],
    ['commands with own init', { ...own, commands: ['true'] }, /default init only/],
    ['default init without busybox', { busybox: false }, /needs|busybox shell script/],
    ['missing busybox', { busybox: missing }, /cannot read busybox/],
    ['dynamically linked busybox', { busybox: process.execPath }, /dynamically linked/],
    ['not an ELF busybox', { busybox: join(scratch, 'init.sh') }, /not an ELF file/],
    ['bad mtime', { ...own, mtime: -1 }, /mtime -1 out of range/],
  ];
  writeFileSync(join(scratch, 'init.sh'), '#!/bin/sh\n');
  for (const [what, options, message] of cases) {
    try {
      initramfsEntries(options);
      assert.unreachable(what);
    } catch (e) {
      assert.match((e as Error).message, message, `${what}: ${(e as Error).message}`);
    }
  }
});

testIf(
  test,
  noBusybox ?? cpioMissing() ?? (process.getuid?.() === 0 ? null : 'extracting device nodes needs root'),
  "initramfs: GNU cpio unpacks the image into a tree where /init runs busybox's sh and the device nodes exist",
  () => {
    const dir = join(scratch, 'unpacked');
    mkdirSync(dir);
    const cpio = gunzipSync(buildInitramfs({ files: [{ path: 'etc/motd', data: 'hello\n' }] }));
    execFileSync('cpio', ['-i', '-d', '-m', '--quiet', '--no-absolute-filenames'], { cwd: dir, input: cpio });
    const init = statSync(join(dir, 'init'));
    assert.is(init.mode & 0o111, 0o111, '/init is executable');
    assert.is(readlinkSync(join(dir, 'bin/sh')), '/bin/busybox');
    const console_ = lstatSync(join(dir, 'dev/console'));
    assert.ok(console_.isCharacterDevice());
    assert.is(console_.rdev, (5 << 8) | 1);
    assert.is(readFileSync(join(dir, 'etc/motd'), 'utf8'), 'hello\n');
    // The unpacked busybox runs the unpacked applet links (sh through its own path, as the guest would).
    const out = execFileSync(join(dir, 'bin/busybox'), ['sh', '-c', 'echo $((6 * 7))'], { encoding: 'utf8' });
    assert.is(out.trim(), '42');
  },
);

test.after(() => rmSync(scratch, { recursive: true, force: true }));

test.run();
