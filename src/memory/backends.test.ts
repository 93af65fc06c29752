import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { HUGE_PAGES_MISSING_PREFIX } from '../../test/support/rig-provides.js';
import { testIf } from '../../test/support/skip.js';
import * as libc from '../sys/libc.js';
import {
  openBackend,
  openBackendFromRecord,
  RamBackendError,
  type BackendRecord,
  type RamBackend,
} from './backends.js';
import { defaultHugePageSize, freeHugePages } from './backend.js';
import { createDevdaxBackend, checkDevdaxAlignment } from './devdax-backend.js';
import { GuestRam } from './guest-ram.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// Every /dev/shm file a test creates is listed here and removed at the end, pass or fail.
const shmFiles: string[] = [];
let shmCounter = 0;
function shmPath(): string {
  const path = `/dev/shm/tsvmm-test-${process.pid}-${shmCounter++}`;
  shmFiles.push(path);
  return path;
}
test.after(() => {
  for (const path of shmFiles) rmSync(path, { force: true });
});

/** Runs fn with a GuestRam over the whole backend (gpa 0 = backend offset 0), released before returning. */
function withView<T>(backend: RamBackend, fn: (ram: GuestRam) => T): T {
  const ram = new GuestRam([{ gpa: 0, size: backend.size, hostAddress: backend.hostAddress }]);
  try {
    return fn(ram);
  } finally {
    ram.release();
  }
}

function writeReadBack(backend: RamBackend): void {
  withView(backend, (ram) => {
    ram.writeU64(0, 0x1122334455667788n);
    ram.writeU32(backend.size - 4, 0xa5a5a5a5);
    assert.is(ram.readU64(0), 0x1122334455667788n);
    assert.is(ram.readU32(backend.size - 4), 0xa5a5a5a5);
    assert.is(ram.readU32(backend.size / 2), 0, 'untouched RAM reads as zero');
  });
}

function isClosedFd(fd: number): boolean {
  try {
    fstatSync(fd);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EBADF';
  }
}

function throwsBackendError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, RamBackendError, String(e));
    assert.match((e as Error).message, pattern);
    assert.not.match((e as Error).message, /\n/);
    return;
  }
  assert.unreachable(`expected a RamBackendError matching ${pattern}`);
}

test('backend anon: maps, writes and reads back; has no fd and does not outlive the process', () => {
  const b = openBackend({ kind: 'anon', size: 8 * MiB });
  try {
    assert.is(b.kind, 'anon');
    assert.is(b.fd, -1);
    assert.is(b.shared, false);
    assert.is(b.transferable, false);
    assert.is(b.hostAddress % BigInt(2 * MiB), 0n, 'mapped 2 MiB-aligned for huge pages');
    writeReadBack(b);
    assert.equal(b.record(), {
      kind: 'anon',
      size: 8 * MiB,
      fd: -1,
      offset: 0,
      share: false,
      hugetlb: false,
      hugetlbSize: 0,
      path: null,
    });
  } finally {
    b.close();
  }
});

test('backend anon: reopening from its record gives fresh zeroed RAM of the same size (the contents must be copied)', () => {
  const b = openBackend({ kind: 'anon', size: 4 * MiB, share: true, prealloc: true });
  const record = b.record();
  withView(b, (ram) => ram.writeU32(0, 1));
  const again = openBackendFromRecord(record);
  try {
    assert.is(again.size, 4 * MiB);
    withView(again, (ram) => assert.is(ram.readU32(0), 0));
    assert.is(again.record().share, true);
  } finally {
    again.close();
    b.close();
  }
});

test('backend memfd: maps, writes and reads back; shared by default and sealed against resizing', () => {
  const b = openBackend({ kind: 'memfd', size: 8 * MiB });
  try {
    assert.is(b.kind, 'memfd');
    assert.ok(b.fd >= 0);
    assert.is(b.transferable, true);
    assert.is(b.shared, false, 'a memfd survives only through its fd');
    writeReadBack(b);
    assert.is(fstatSync(b.fd).size, 8 * MiB);
    assert.throws(() => libc.ftruncate(b.fd, 4 * MiB), /EPERM/, 'F_SEAL_SHRINK');
    assert.throws(() => libc.ftruncate(b.fd, 16 * MiB), /EPERM/, 'F_SEAL_GROW');
    const r = b.record();
    assert.equal(
      { ...r, fd: 0 },
      { kind: 'memfd', size: 8 * MiB, fd: 0, offset: 0, share: true, hugetlb: false, hugetlbSize: 0, path: null },
    );
    assert.is(r.fd, b.fd);
  } finally {
    b.close();
  }
});

test('backend memfd: a new mapping from the record and a passed fd reaches the same RAM', () => {
  const b = openBackend({ kind: 'memfd', size: 4 * MiB, share: true });
  // What fd passing delivers: another fd for the same memfd (here by reopening it through /proc).
  const passed = openSync(`/proc/self/fd/${b.fd}`, 'r+');
  const again = openBackendFromRecord(b.record(), { fd: passed });
  try {
    assert.is(again.fd, passed);
    assert.is.not(again.hostAddress, b.hostAddress);
    withView(b, (ram) => ram.writeU32(0x2000, 0xdecafbad));
    withView(again, (ram) => {
      assert.is(ram.readU32(0x2000), 0xdecafbad);
      ram.writeU32(0x3000, 0x600dcafe);
    });
    withView(b, (ram) => assert.is(ram.readU32(0x3000), 0x600dcafe));
  } finally {
    again.close();
    b.close();
  }
  assert.ok(isClosedFd(passed), 'the backend owned and closed the passed fd');
});

test('backend memfd: share=off keeps the guest writes out of the fd', () => {
  const b = openBackend({ kind: 'memfd', size: 2 * MiB, share: false });
  try {
    assert.is(b.transferable, false);
    withView(b, (ram) => ram.writeU32(0, 0xffffffff));
    const buf = Buffer.alloc(4);
    readSync(b.fd, buf, 0, 4, 0);
    assert.is(buf.readUInt32LE(0), 0);
  } finally {
    b.close();
  }
});

test('backend memfd: reopening needs the fd, and refuses an fd of the wrong size', () => {
  const b = openBackend({ kind: 'memfd', size: 4 * MiB });
  const other = openBackend({ kind: 'memfd', size: 2 * MiB });
  try {
    throwsBackendError(() => openBackendFromRecord(b.record()), /its fd must be passed in/);
    const wrong = openSync(`/proc/self/fd/${other.fd}`, 'r+');
    throwsBackendError(
      () => openBackendFromRecord(b.record(), { fd: wrong }),
      /^memfd RAM of 4 MiB from fd \d+: the fd holds 2 MiB \(2097152 bytes\) but the record says 4 MiB \(4194304 bytes\)$/,
    );
    assert.not.ok(isClosedFd(wrong), "on failure the fd stays the caller's");
    libc.close(wrong);
  } finally {
    other.close();
    b.close();
  }
});

const hugePage = defaultHugePageSize();
const noHugePages =
  freeHugePages(hugePage) < 2
    ? `${HUGE_PAGES_MISSING_PREFIX}: the host has ${freeHugePages(hugePage)} free ${hugePage / MiB} MiB huge pages (vm.nr_hugepages)`
    : null;

testIf(test, noHugePages, 'backend memfd: hugetlb=on maps huge pages', () => {
  const b = openBackend({ kind: 'memfd', size: 2 * hugePage, hugetlb: true });
  try {
    writeReadBack(b);
    assert.equal([b.record().hugetlb, b.record().hugetlbSize], [true, hugePage]);
  } finally {
    b.close();
  }
});

test('backend memfd: hugetlb=on with too few reserved huge pages fails with one line saying how many are free and needed', () => {
  // Four more than are free, whatever the host has reserved.
  const needed = freeHugePages(hugePage) + 4;
  throwsBackendError(
    () => openBackend({ kind: 'memfd', size: needed * hugePage, hugetlb: true }),
    new RegExp(
      `^memfd RAM of \\d+ MiB on ${hugePage / MiB} MiB huge pages: mmap failed \\(mmap failed: ENOMEM\\): the host has \\d+ free ${hugePage / MiB} MiB huge pages and ${needed} are needed \\(reserve them in /sys/kernel/mm/hugepages/hugepages-\\d+kB/nr_hugepages\\)$`,
    ),
  );
});

test('backend memfd: a huge page size that does not divide the size, or is not a power of two, is refused', () => {
  throwsBackendError(
    () => openBackend({ kind: 'memfd', size: 3 * MiB, hugetlb: true, hugetlbSize: 2 * MiB }),
    /not a multiple of the page size 0x200000/,
  );
  throwsBackendError(
    () => openBackend({ kind: 'memfd', size: 6 * MiB, hugetlb: true, hugetlbSize: 3 * MiB }),
    /not a power of two/,
  );
  throwsBackendError(
    () => openBackend({ kind: 'memfd', size: 4 * MiB, hugetlbSize: 2 * MiB }),
    /hugetlbsize needs hugetlb=on/,
  );
});

test('backend file: a missing file is created, sized with ftruncate, and shared with the file when share=on', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 8 * MiB, share: true });
  try {
    assert.is(statSync(path).size, 8 * MiB);
    assert.is(b.shared, true);
    assert.is(b.transferable, true);
    writeReadBack(b);
    const buf = readFileSync(path);
    assert.is(buf.readBigUInt64LE(0), 0x1122334455667788n, 'guest writes are in the file');
    assert.is(statSync(path).blocks * 512 < 8 * MiB, true, 'untouched RAM is not allocated (sparse)');
    const r = b.record();
    assert.equal(
      { ...r, fd: 0 },
      { kind: 'file', size: 8 * MiB, fd: 0, offset: 0, share: true, hugetlb: false, hugetlbSize: 0, path },
    );
  } finally {
    b.close();
  }
});

test('backend file: an existing file is reopened with its content intact (what cpr-reboot relies on)', () => {
  const path = shmPath();
  const first = openBackend({ kind: 'file', path, size: 4 * MiB, share: true });
  withView(first, (ram) => ram.write(0x1234, new TextEncoder().encode('kept across processes')));
  const record = first.record();
  first.close();
  assert.ok(existsSync(path), 'closing does not delete the file');

  const again = openBackendFromRecord(JSON.parse(JSON.stringify(record)) as BackendRecord);
  try {
    withView(again, (ram) => assert.is(new TextDecoder().decode(ram.read(0x1234, 21)), 'kept across processes'));
  } finally {
    again.close();
  }
  const third = openBackend({ kind: 'file', path, size: 4 * MiB, share: true });
  try {
    withView(third, (ram) => assert.is(ram.readU8(0x1234), 'k'.charCodeAt(0)));
  } finally {
    third.close();
  }
});

test('backend file: an existing file of another size is refused with both sizes named, and left alone', () => {
  const path = shmPath();
  writeFileSync(path, Buffer.alloc(3 * MiB, 1));
  throwsBackendError(
    () => openBackend({ kind: 'file', path, size: 4 * MiB, share: true }),
    new RegExp(
      `^memory-backend-file ${path}: the file holds 3 MiB \\(3145728 bytes\\) but size=4 MiB needs 4194304 bytes$`,
    ),
  );
  assert.is(statSync(path).size, 3 * MiB);
  assert.is(readFileSync(path)[0], 1);
});

test('backend file: share=off maps privately: the guest sees the file, its writes stay out of it', () => {
  const path = shmPath();
  writeFileSync(path, Buffer.alloc(2 * MiB, 0x11));
  const b = openBackend({ kind: 'file', path, size: 2 * MiB });
  try {
    assert.is(b.shared, false);
    assert.is(b.transferable, false);
    withView(b, (ram) => {
      assert.is(ram.readU8(100), 0x11);
      ram.writeU8(100, 0x22);
      assert.is(ram.readU8(100), 0x22);
    });
    assert.is(readFileSync(path)[100], 0x11);
  } finally {
    b.close();
  }
});

test('backend file: offset= places the RAM inside the file, which holds offset + size bytes', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 2 * MiB, share: true, offset: MiB });
  try {
    assert.is(statSync(path).size, 3 * MiB);
    withView(b, (ram) => ram.writeU32(0, 0xabcdef01));
    const buf = Buffer.alloc(4);
    readSync(b.fd, buf, 0, 4, MiB);
    assert.is(buf.readUInt32LE(0), 0xabcdef01);
    assert.is(b.record().offset, MiB);
  } finally {
    b.close();
  }
  throwsBackendError(
    () => openBackend({ kind: 'file', path: shmPath(), size: 2 * MiB, offset: 100 }),
    /offset 100 is not a non-negative multiple of the page size/,
  );
});

test('backend file: reopening from a record never creates a missing file', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 2 * MiB, share: true });
  const record = b.record();
  b.close();
  unlinkSync(path);
  throwsBackendError(() => openBackendFromRecord(record), /the file does not exist \(the RAM it held is gone\)/);
  assert.not.ok(existsSync(path));
});

test('backend file: a directory gets an unlinked temp file, reachable only through the fd', () => {
  const dir = mkdtempSync('/dev/shm/tsvmm-test-dir-');
  try {
    const b = openBackend({ kind: 'file', path: dir, size: 4 * MiB, share: true });
    try {
      assert.equal(readdirSync(dir), [], 'nothing is left in the directory');
      writeReadBack(b);
      assert.is(b.shared, false, 'no path reaches it after this process');
      assert.is(b.transferable, true);
      const record = b.record();
      assert.is(record.path, null);
      throwsBackendError(() => openBackendFromRecord(record), /the file was unlinked, so only its fd can reach it/);
      const passed = openSync(`/proc/self/fd/${b.fd}`, 'r+');
      const again = openBackendFromRecord(record, { fd: passed });
      try {
        withView(again, (ram) => assert.is(ram.readU64(0), 0x1122334455667788n));
      } finally {
        again.close();
      }
    } finally {
      b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('backend file: prealloc allocates every page up front', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 4 * MiB, share: true, prealloc: true });
  try {
    assert.ok(statSync(path).blocks * 512 >= 4 * MiB);
  } finally {
    b.close();
  }
});

test('backend file: a path that is neither a file nor a directory is refused', () => {
  throwsBackendError(
    () => openBackend({ kind: 'file', path: '/dev/null', size: 2 * MiB }),
    /\/dev\/null: not a regular file or a directory/,
  );
  throwsBackendError(() => openBackend({ kind: 'file', path: '/nonexistent-dir/vm0', size: 2 * MiB }), /ENOENT/);
});

test('backend: close() unmaps, closes the fd, and is idempotent', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 2 * MiB, share: true });
  const fd = b.fd;
  b.close();
  assert.ok(b.closed);
  assert.ok(isClosedFd(fd));
  b.close();
});

test('backend: the file mapping writes the same bytes the file holds (a sparse 4 GiB file costs nothing)', () => {
  const path = shmPath();
  const b = openBackend({ kind: 'file', path, size: 4 * GiB + 2 * MiB, share: true });
  try {
    withView(b, (ram) => ram.writeU32(4 * GiB, 0x5a5aa5a5));
    const fd = openSync(path, 'r');
    const buf = Buffer.alloc(4);
    readSync(fd, buf, 0, 4, 4 * GiB);
    libc.close(fd);
    assert.is(buf.readUInt32LE(0), 0x5a5aa5a5);
  } finally {
    b.close();
  }
});

test('backend devdax: size and offset must be multiples of 2 MiB', () => {
  throwsBackendError(
    () => checkDevdaxAlignment('/dev/dax0.0', 3 * MiB, 0),
    /^devdax \/dev\/dax0\.0: size 3145728 \(0x300000\) is not a positive multiple of the device alignment 2 MiB$/,
  );
  throwsBackendError(
    () => checkDevdaxAlignment('/dev/dax0.0', 4 * MiB, MiB),
    /^devdax \/dev\/dax0\.0: offset 1048576 \(0x100000\) is not a multiple of the device alignment 2 MiB$/,
  );
  checkDevdaxAlignment('/dev/dax0.0', 4 * MiB, 2 * MiB);
  // The checks come before the device is touched, so they hold on a host without one.
  throwsBackendError(() => createDevdaxBackend({ path: '/dev/dax9.9', size: 3 * MiB }), /not a positive multiple/);
  throwsBackendError(
    () => openBackend({ kind: 'devdax', path: '/dev/dax9.9', size: 4 * MiB, offset: 4096 }),
    /offset 4096/,
  );
});

test('backend devdax: a path that is not a character device is refused', () => {
  throwsBackendError(() => createDevdaxBackend({ path: '/dev/shm', size: 2 * MiB }), /not a character device/);
  throwsBackendError(() => createDevdaxBackend({ path: '/dev/dax9.9', size: 2 * MiB }), /ENOENT/);
});

const devdax = ['/dev/dax0.0', '/dev/dax1.0'].find((p) => existsSync(p));
testIf(
  test,
  devdax === undefined ? 'no /dev/dax* device on this host' : null,
  'backend devdax: maps the device shared, and a record reopens the same memory',
  () => {
    const path = devdax as string;
    const b = openBackend({ kind: 'devdax', path, size: 2 * MiB });
    try {
      assert.is(b.shared, true);
      withView(b, (ram) => ram.writeU32(0x40, 0x12345678));
      const again = openBackendFromRecord(b.record());
      try {
        withView(again, (ram) => assert.is(ram.readU32(0x40), 0x12345678));
      } finally {
        again.close();
      }
    } finally {
      b.close();
    }
  },
);

test('backend: a record from a checkpoint is checked before it is used', () => {
  const good: BackendRecord = {
    kind: 'anon',
    size: 2 * MiB,
    fd: -1,
    offset: 0,
    share: false,
    hugetlb: false,
    hugetlbSize: 0,
    path: null,
  };
  throwsBackendError(() => openBackendFromRecord({ ...good, kind: 'ramdisk' as never }), /unknown kind 'ramdisk'/);
  throwsBackendError(() => openBackendFromRecord({ ...good, size: -1 }), /size is not a positive integer/);
  throwsBackendError(() => openBackendFromRecord({ ...good, offset: 0.5 }), /offset/);
  throwsBackendError(() => openBackendFromRecord({ ...good, share: 'yes' as never }), /booleans/);
  throwsBackendError(() => openBackendFromRecord({ ...good, kind: 'devdax' }), /without a path/);
});

// A shm file written with plain fs calls before the backend maps it must show up in guest RAM.
test('backend file: RAM shows what the file held before it was mapped', () => {
  const path = shmPath();
  const fd = openSync(path, 'w+');
  writeSync(fd, Buffer.from('hello'), 0, 5, 0);
  libc.ftruncate(fd, 2 * MiB);
  libc.close(fd);
  const b = openBackend({ kind: 'file', path, size: 2 * MiB, share: true });
  try {
    withView(b, (ram) => assert.is(new TextDecoder().decode(ram.read(0, 5)), 'hello'));
  } finally {
    b.close();
  }
});

test.run();
