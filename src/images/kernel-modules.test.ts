import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  moduleDepends,
  moduleInfo,
  modulePathFromSource,
  moduleTreeRoot,
  resolveKernelModules,
} from './kernel-modules.js';
import { compileC } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';

const noGcc = (() => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'gcc is not installed';
  }
})();

/** An ELF64 object with a .modinfo section holding `info` (what modpost puts in a real module). */
function fakeModule(name: string, info: string[]): string {
  const strings = info.map(
    (s, i) =>
      `static const char info${i}[] __attribute__((section(".modinfo"), used, aligned(1))) = ${JSON.stringify(s)};`,
  );
  return compileC(`${strings.join('\n')}\nint ${name.replace(/-/g, '_')}_marker;\n`, {
    name: `modinfo-${name}`,
    flags: ['-c', '-O0'],
  });
}

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-modules-'));
const VERSION = '6.1.0-test-amd64';
const tree = join(scratch, 'lib', 'modules', VERSION);

function put(rel: string, depends: string): void {
  mkdirSync(join(tree, rel, '..'), { recursive: true });
  copyFileSync(
    fakeModule(rel.replace(/.*\//, '').replace(/\.ko$/, ''), ['license=GPL', `depends=${depends}`, `name=${rel}`]),
    join(tree, rel),
  );
}

if (!noGcc) {
  // virtio_blk → virtio, virtio_ring; virtio_pci → virtio_ring, virtio_pci_modern_dev, virtio; virtio-rng → rng_core (built in)
  put('kernel/drivers/virtio/virtio.ko', '');
  put('kernel/drivers/virtio/virtio_ring.ko', 'virtio');
  put('kernel/drivers/virtio/virtio_pci_modern_dev.ko', '');
  put('kernel/drivers/virtio/virtio_pci.ko', 'virtio_ring,virtio_pci_modern_dev,virtio');
  put('kernel/drivers/block/virtio_blk.ko', 'virtio,virtio_ring');
  put('kernel/drivers/char/hw_random/virtio-rng.ko', 'virtio_ring,rng-core');
  put('kernel/loop/a.ko', 'b');
  put('kernel/loop/b.ko', 'a');
  put('kernel/broken/needs-ghost.ko', 'ghost');
  writeFileSync(join(tree, 'kernel/drivers/block/zstd_only.ko.zst'), 'compressed');
  put('kernel/drivers/block/needs-zstd.ko', 'zstd_only');
  writeFileSync(join(tree, 'modules.builtin'), 'kernel/drivers/char/hw_random/rng-core.ko\nkernel/fs/ext4/ext4.ko\n');
}

testIf(
  test,
  noGcc,
  'kernel modules: .modinfo is read as key=value strings; depends= gives the names, - and _ alike',
  () => {
    const info = moduleInfo(readFileSync(join(tree, 'kernel/drivers/virtio/virtio_pci.ko')), 'virtio_pci.ko');
    assert.equal(info.get('license'), ['GPL']);
    assert.equal(
      moduleDepends(readFileSync(join(tree, 'kernel/drivers/char/hw_random/virtio-rng.ko')), 'virtio-rng.ko'),
      ['virtio_ring', 'rng_core'],
    );
    assert.equal(moduleDepends(readFileSync(join(tree, 'kernel/drivers/virtio/virtio.ko')), 'virtio.ko'), []);
  },
);

testIf(
  test,
  noGcc,
  'kernel modules: a module comes after everything it depends on, each once, with its lib/modules/VERSION path',
  () => {
    const { modules, builtin } = resolveKernelModules(tree, ['virtio_pci', 'virtio_blk', 'virtio-rng']);
    const names = modules.map((m) => m.path.replace(/.*\//, ''));
    assert.equal(names, [
      'virtio.ko',
      'virtio_ring.ko',
      'virtio_pci_modern_dev.ko',
      'virtio_pci.ko',
      'virtio_blk.ko',
      'virtio-rng.ko',
    ]);
    assert.is(modules[3].path, `lib/modules/${VERSION}/kernel/drivers/virtio/virtio_pci.ko`);
    assert.is(modules[3].source, join(tree, 'kernel/drivers/virtio/virtio_pci.ko'));
    assert.equal(builtin, ['rng_core'], 'built-in dependencies are reported, not added');
    assert.equal(resolveKernelModules(tree, ['ext4']), { modules: [], builtin: ['ext4'] });
  },
);

testIf(
  test,
  noGcc,
  'kernel modules: the tree may be given as lib/modules/VERSION or as the unpacked package holding it',
  () => {
    assert.is(moduleTreeRoot(scratch), tree);
    assert.is(moduleTreeRoot(tree), tree);
    assert.equal(
      resolveKernelModules(scratch, ['virtio']).modules.map((m) => m.path),
      [`lib/modules/${VERSION}/kernel/drivers/virtio/virtio.ko`],
    );
  },
);

testIf(
  test,
  noGcc,
  'kernel modules: unknown, cyclic and compressed modules are errors that say which module wanted them',
  () => {
    assert.throws(() => resolveKernelModules(tree, ['nope']), /no module 'nope' in .*6\.1\.0-test-amd64/);
    assert.throws(() => resolveKernelModules(tree, ['needs-ghost']), /no module 'ghost' \(needed by needs_ghost\)/);
    assert.throws(() => resolveKernelModules(tree, ['a']), /dependency cycle through 'a'/);
    assert.throws(
      () => resolveKernelModules(tree, ['needs_zstd']),
      /'zstd_only' \(needed by needs_zstd\) is compressed/,
    );
    const two = join(scratch, 'two');
    mkdirSync(join(two, 'lib/modules/1.0'), { recursive: true });
    mkdirSync(join(two, 'lib/modules/2.0'), { recursive: true });
    assert.throws(() => moduleTreeRoot(two), /several kernel versions \(1\.0, 2\.0\)/);
    assert.throws(() => moduleTreeRoot(join(scratch, 'lib')), /not a kernel module tree/);
  },
);

test('kernel modules: files that are not modules are refused by name', () => {
  const plain = join(scratch, 'plain.ko');
  writeFileSync(plain, 'not an ELF file at all, just text that is long enough to hold a header……………………………');
  assert.throws(() => moduleInfo(readFileSync(plain), 'plain.ko'), /plain\.ko is not an ELF file/);
  assert.throws(() => moduleInfo(readFileSync(process.execPath), 'node'), /node has no \.modinfo section/);
});

test("kernel modules: a module's archive path is taken from the lib/modules/ part of its host path", () => {
  assert.is(modulePathFromSource('/x/root/lib/modules/6.1/kernel/a.ko'), 'lib/modules/6.1/kernel/a.ko');
  assert.is(modulePathFromSource('lib/modules/6.1/a.ko'), 'lib/modules/6.1/a.ko');
  assert.is(modulePathFromSource('/x/mylib/modules/a.ko'), null);
  assert.is(modulePathFromSource('/x/a.ko'), null);
});

test.after(() => rmSync(scratch, { recursive: true, force: true }));

test.run();
