// cpr-transfer hands the disk images over with the RAM: the new process finds each image's fd under drive:ID for
// its virtio plan to adopt, and that fd is the old process's open file, so it carries the old process's lock (a
// fresh open of the image would be refused by that very lock). Native: the RAM is a memfd, no KVM is needed to
// receive the hand-over.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend } from '../../src/memory/backends.js';
import { hasInheritedFd, takeInheritedFd } from '../../src/sys/exec-fds.js';
import { lockWholeFile } from '../../src/sys/file-lock.js';
import { CprChannel } from './channel.js';
import { PhaseClock } from './timings.js';
import { transferIn } from './transfer.js';

test('cpr-transfer: the images arrive as drive:ID fds that carry the old process’s locks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'transfer-drives-'));
  const image = join(dir, 'disk.img');
  writeFileSync(image, Buffer.alloc(1 << 20));
  const ram = openBackend({ kind: 'memfd', size: 16 << 20, share: true });
  const imageFd = openSync(image, 'r+');
  let old: CprChannel | null = null;
  try {
    assert.is(lockWholeFile(imageFd, 'exclusive'), 'locked', 'the old process holds its image');
    const channelPath = join(dir, 'cpr.sock');
    const incoming = transferIn(channelPath, new PhaseClock('new'), 30_000); // binds the socket at once
    old = CprChannel.connect(channelPath);
    old.send({
      type: 'ram',
      header: { protocol: 1, record: ram.record(), taps: [], vfio: [], drives: ['drive:d0'] },
      fds: [ram.fd, imageFd],
      payload: new Uint8Array(0),
    });
    const received = await incoming;
    received.ram.close();
    assert.ok(hasInheritedFd('drive:d0'));
    const fd = takeInheritedFd('drive:d0')!;
    try {
      assert.is(lockWholeFile(fd, 'exclusive'), 'locked', 'adopted: the same open file, the same lock');
      const fresh = openSync(image, 'r+');
      assert.is(lockWholeFile(fresh, 'exclusive'), 'held-elsewhere', 'a fresh open is refused');
      closeSync(fresh);
    } finally {
      closeSync(fd);
    }
  } finally {
    old?.close();
    closeSync(imageFd);
    ram.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
