import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prefetchBootImages, takePrefetchedImages } from './prefetch.js';

const dir = mkdtempSync(join(tmpdir(), 'prefetch-'));
const kernel = join(dir, 'vmlinux');
const initrd = join(dir, 'initrd.img');
writeFileSync(kernel, Buffer.from('kernel bytes'));
writeFileSync(initrd, Buffer.alloc(3 << 20, 7));

test('prefetch: `run -kernel K -initrd I` reads both files ahead; machine creation takes their bytes once', async () => {
  prefetchBootImages(['run', '-m', '64M', '-kernel', kernel, '--initrd', initrd, '-append', 'console=ttyS0']);
  const images = await takePrefetchedImages();
  assert.equal([...images.keys()].sort(), [initrd, kernel].sort());
  assert.is(Buffer.from(images.get(kernel)!).toString(), 'kernel bytes');
  assert.ok(images.get(initrd)!.every(b => b === 7) && images.get(initrd)!.length === 3 << 20);
  assert.is((await takePrefetchedImages()).size, 0, 'taken once');
});

test('prefetch: a missing file, a multiboot module list and other commands are left to the loader', async () => {
  prefetchBootImages(['run', '-kernel', join(dir, 'missing'), '-initrd', `${kernel} arg,${initrd}`]);
  prefetchBootImages(['vmstate', '-kernel', kernel]);
  assert.is((await takePrefetchedImages()).size, 0);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
