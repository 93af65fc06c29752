// Host files tsvmm does not trust blindly, as a user sees it: a RAM file planted by someone else, writable by others
// or reached through a symlink, and a RAM file or disk image another process holds locked, each end tsvmm with status
// 4 and one line naming the file and why, before /dev/kvm is opened (these runs point tsvmm at a missing KVM
// device, so they end there on any host once the files pass) and without touching the file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  chmodSync,
  chownSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { assembleFlat } from '../../test/support/asm.js';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { startVm } from '../../test/support/vm-process.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { lockWholeFile, type LockMode } from '../sys/file-lock.js';
import { ExitStatus } from '../util/exit-status.js';

const MiB = 1024 * 1024;
const NOBODY = 65534;
const noKvm = kvmMissing();
const notRoot = process.geteuid?.() === 0 ? null : 'needs root to hand a file to another owner (chown)';
const NO_KVM = { TSVMM_KVM_DEVICE: '/nonexistent/kvm' };
const KVM_MISSING = 'tsvmm: /nonexistent/kvm: no such device — is the kvm module loaded?';

const guest = () => ['-device', `loader,file=${assembleFlat('.code16\n  hlt\n')},addr=0x1000,mode=real`];
const ramFile = (path: string) => [
  '-m',
  '16M',
  '-object',
  `memory-backend-file,id=ram0,size=16M,mem-path=${path},share=on`,
  '-machine',
  'memory-backend=ram0',
];

const dirs: string[] = [];
function scratchDir(base = '/dev/shm'): string {
  const dir = mkdtempSync(join(base, 'tsvmm-host-files-'));
  dirs.push(dir);
  return dir;
}
test.after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function fingerprint(path: string): string {
  const st = statSync(path);
  return `${st.uid}:${st.mode.toString(8)}:${st.size}:${readFileSync(path).toString('base64')}`;
}

/** Holds a lock on `path` from this process (another open file description than tsvmm's) while `fn` runs. */
async function whileLocked<T>(path: string, mode: LockMode, fn: () => Promise<T>): Promise<T> {
  const fd = openSync(path, mode === 'exclusive' ? 'r+' : 'r');
  try {
    assert.is(lockWholeFile(fd, mode), 'locked');
    return await fn();
  } finally {
    closeSync(fd);
  }
}

testIf(
  test,
  notRoot,
  'host files: a RAM file owned by another user ends tsvmm with status 4 naming owner and mode, untouched',
  async () => {
    const path = join(scratchDir(), 'vm0');
    writeFileSync(path, Buffer.alloc(16 * MiB, 0x5a));
    chmodSync(path, 0o600);
    chownSync(path, NOBODY, NOBODY);
    const before = fingerprint(path);
    const r = await runTsvmm([...ramFile(path), ...guest()], { env: NO_KVM });
    assert.is(r.status, ExitStatus.setupFailed, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^tsvmm: memory-backend-file ${path}: refused: the file is owned by uid ${NOBODY} with mode 0600; [^\\n]*\\n$`,
      ),
    );
    assert.is(fingerprint(path), before);
  },
);

test('host files: a RAM file others may write (an empty 0666 one) is refused with status 4 and neither grown nor changed', async () => {
  const path = join(scratchDir(), 'vm0');
  writeFileSync(path, '');
  chmodSync(path, 0o666);
  const before = fingerprint(path);
  const r = await runTsvmm([...ramFile(path), ...guest()], { env: NO_KVM });
  assert.is(r.status, ExitStatus.setupFailed, r.stderr);
  assert.match(
    r.stderr,
    /^tsvmm: memory-backend-file \S+: refused: the file is owned by uid \d+ with mode 0666; [^\n]*\n$/,
  );
  assert.is(fingerprint(path), before);
});

test('host files: a symlink as the RAM file is refused with status 4, its target untouched', async () => {
  const dir = scratchDir();
  const target = join(dir, 'someone-elses');
  writeFileSync(target, Buffer.alloc(16 * MiB, 1));
  chmodSync(target, 0o600);
  const before = fingerprint(target);
  const link = join(dir, 'vm0');
  symlinkSync(target, link);
  const r = await runTsvmm([...ramFile(link), ...guest()], { env: NO_KVM });
  assert.is(r.status, ExitStatus.setupFailed, r.stderr);
  assert.is(
    r.stderr,
    `tsvmm: memory-backend-file ${link}: refused: the path is a symbolic link (give the file itself)\n`,
  );
  assert.is(fingerprint(target), before);
});

test('host files: a RAM file another process holds (a second tsvmm on it) is refused with status 4 and one line', async () => {
  const path = join(scratchDir(), 'vm0');
  writeFileSync(path, Buffer.alloc(16 * MiB));
  chmodSync(path, 0o600);
  const r = await whileLocked(path, 'exclusive', () => runTsvmm([...ramFile(path), ...guest()], { env: NO_KVM }));
  assert.is(r.status, ExitStatus.setupFailed, r.stderr);
  assert.is(
    r.stderr,
    `tsvmm: memory-backend-file ${path}: another process holds a lock on it (failed to get the write lock: is another tsvmm or QEMU using it?)\n`,
  );
});

test('host files: a disk image another process writes is refused with status 4; read-only it is refused only to a writer', async () => {
  const image = join(scratchDir(tmpdir()), 'disk.img');
  writeFileSync(image, Buffer.alloc(MiB));
  const drive = (readOnly: boolean) => [
    '-drive',
    `file=${image},if=virtio,format=raw${readOnly ? ',readonly=on' : ''}`,
  ];
  const base = ['-m', '16M', ...guest()];

  const writer = await whileLocked(image, 'exclusive', () => runTsvmm([...base, ...drive(true)], { env: NO_KVM }));
  assert.is(writer.status, ExitStatus.setupFailed, writer.stderr);
  assert.match(
    writer.stderr,
    /^tsvmm: \S+: drive image '[^']+disk\.img': another process holds a lock on it \(failed to get the read lock[^\n]*\n$/,
  );

  const reader = await whileLocked(image, 'shared', () => runTsvmm([...base, ...drive(false)], { env: NO_KVM }));
  assert.is(reader.status, ExitStatus.setupFailed, reader.stderr);
  assert.match(
    reader.stderr,
    /drive image '[^']+disk\.img': another process holds a lock on it \(failed to get the write lock/,
  );

  // Two readers share an image: tsvmm gets past its drives and stops only at the missing KVM device.
  const shared = await whileLocked(image, 'shared', () => runTsvmm([...base, ...drive(true)], { env: NO_KVM }));
  assert.is(shared.stderr.trim(), KVM_MISSING);
});

testIf(
  test,
  noKvm,
  'host files: a second tsvmm on the RAM file or the disk image of a running one is refused with one line; once the first quits, it starts',
  async () => {
    const dir = scratchDir();
    const ram = join(dir, 'vm0');
    const image = join(dir, 'disk.img');
    writeFileSync(image, Buffer.alloc(MiB));
    const drive = ['-drive', `file=${image},if=virtio,format=raw`];
    const first = await startVm([...ramFile(ram), ...guest(), ...drive, '-S'], { dir, name: 'first' });
    try {
      const sameRam = await runTsvmm([...ramFile(ram), ...guest()], { env: NO_KVM });
      assert.is(sameRam.status, ExitStatus.setupFailed, sameRam.stderr);
      assert.is(
        sameRam.stderr,
        `tsvmm: memory-backend-file ${ram}: another process holds a lock on it (failed to get the write lock: is another tsvmm or QEMU using it?)\n`,
      );
      const sameImage = await runTsvmm(['-m', '16M', ...guest(), ...drive], { env: NO_KVM });
      assert.is(sameImage.status, ExitStatus.setupFailed, sameImage.stderr);
      assert.match(
        sameImage.stderr,
        /^tsvmm: \S+: drive image '[^']+disk\.img': another process holds a lock on it \(failed to get the write lock[^\n]*\n$/,
      );
      await first.qmp.execute('quit');
      assert.is(await first.exited, 0, first.stderr);
    } finally {
      await first.dispose();
    }
    // The locks went with the first process: the same files get as far as the (missing) KVM device.
    const after = await runTsvmm([...ramFile(ram), ...guest(), ...drive], { env: NO_KVM });
    assert.is(after.stderr.trim(), KVM_MISSING);
  },
);

test.run();
