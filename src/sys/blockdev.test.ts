// BLKGETSIZE64 against <linux/fs.h>, and the size of a real block device (a loop device over a scratch file).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileC, runC } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';
import { BLKGETSIZE64, blockDeviceSize } from './blockdev.js';

const noHeader = existsSync('/usr/include/linux/fs.h') ? null : '<linux/fs.h> is not installed (linux-libc-dev)';
const noLoop =
  existsSync('/dev/loop-control') && spawnSync('losetup', ['--find']).status === 0
    ? null
    : 'no free loop device (or no losetup) on this host';

testIf(test, noHeader, 'blockdev abi: BLKGETSIZE64 matches <linux/fs.h>', () => {
  const out = runC(
    compileC(
      [
        '#include <stdio.h>',
        '#include <sys/ioctl.h>',
        '#include <linux/fs.h>',
        'int main(void) { printf("%lu\\n", (unsigned long)BLKGETSIZE64); return 0; }',
        '',
      ].join('\n'),
      { name: 'blockdev-abi' },
    ),
  );
  assert.is(Number(out.trim()), BLKGETSIZE64);
});

testIf(test, noLoop, 'blockdev: the size of a loop device over a 3 MiB file is 3 MiB (its st_size says 0)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blockdev-'));
  const file = join(dir, 'disk.img');
  writeFileSync(file, Buffer.alloc(3 << 20));
  let loop: string | null = null;
  try {
    loop = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
    const fd = openSync(loop, 'r');
    try {
      assert.is(blockDeviceSize(fd), 3 << 20);
    } finally {
      closeSync(fd);
    }
  } finally {
    if (loop) spawnSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
