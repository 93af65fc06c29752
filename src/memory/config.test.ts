import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import {
  parseMemoryOptions,
  createGuestRam,
  openGuestRamFromRecord,
  DEFAULT_RAM_SIZE,
  type MemoryOptionValues,
} from './config.js';
import { QemuOptsError } from '../util/qemu-opts.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const shmFiles: string[] = [];
function shmPath(): string {
  const path = `/dev/shm/tsvmm-config-test-${process.pid}-${shmFiles.length}`;
  shmFiles.push(path);
  return path;
}
test.after(() => {
  for (const path of shmFiles) rmSync(path, { force: true });
});

function refuses(values: MemoryOptionValues, expected: string): void {
  try {
    parseMemoryOptions(values);
  } catch (e) {
    assert.instance(e, QemuOptsError, String(e));
    assert.is((e as Error).message, expected);
    return;
  }
  assert.unreachable(`expected: ${expected}`);
}

test('memory config: without flags the machine gets 128 MiB of anonymous RAM, as QEMU gives', () => {
  assert.equal(parseMemoryOptions({}), {
    size: DEFAULT_RAM_SIZE,
    backend: { kind: 'anon', size: 128 * MiB, prealloc: false },
    backendId: null,
  });
});

test('memory config: -m 512 means 512 MiB; -m size=1G and -m 1G mean 1 GiB', () => {
  assert.is(parseMemoryOptions({ m: '512' }).size, 512 * MiB);
  assert.is(parseMemoryOptions({ m: 'size=1G' }).size, GiB);
  assert.is(parseMemoryOptions({ m: '1G' }).size, GiB);
  assert.is(parseMemoryOptions({ m: '1.5G' }).size, 1.5 * GiB);
  assert.is(parseMemoryOptions({ m: ['256', '2G'] }).size, 2 * GiB, 'a later -m wins');
});

test('memory config: -m rounds up to 8 KiB as QEMU does, and refuses 0, bad sizes and hotplug', () => {
  assert.is(parseMemoryOptions({ m: '4097B' }).size, 8192);
  refuses({ m: '0' }, "-m: '0': the RAM size must be greater than 0");
  refuses(
    { m: '12Q' },
    "-m: '12Q' is not a valid size (use a number with an optional suffix B, K, M, G, T, P or E, e.g. 512M or 1.5G)",
  );
  refuses({ m: '1G,slots=4,maxmem=8G' }, '-m: slots=4: memory hotplug (slots, maxmem) is not supported');
  refuses({ m: '1G,color=red' }, "-m: unknown parameter 'color' (known: maxmem, size, slots)");
});

test('memory config: -object memory-backend-file with -machine memory-backend= names a shared file', () => {
  const c = parseMemoryOptions({
    m: '512M',
    object: ['memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/vm0,share=on'],
    machine: ['pc,accel=kvm', 'memory-backend=ram0'],
  });
  assert.equal(c, {
    size: 512 * MiB,
    backend: { kind: 'file', size: 512 * MiB, path: '/dev/shm/vm0', share: true, offset: 0, prealloc: false },
    backendId: 'ram0',
  });
});

test('memory config: without -m the size comes from the backend', () => {
  const c = parseMemoryOptions({ object: 'memory-backend-ram,id=r,size=2G', machine: 'memory-backend=r' });
  assert.equal(c, {
    size: 2 * GiB,
    backend: { kind: 'anon', size: 2 * GiB, share: false, prealloc: false },
    backendId: 'r',
  });
});

test('memory config: memfd is shared and sealed by default; hugetlb and hugetlbsize are read', () => {
  assert.equal(
    parseMemoryOptions({ object: 'memory-backend-memfd,id=m,size=1G', machine: 'memory-backend=m' }).backend,
    { kind: 'memfd', size: GiB, share: true, hugetlb: false, seal: true, prealloc: false },
  );
  assert.equal(
    parseMemoryOptions({
      object: 'memory-backend-memfd,id=m,size=1G,share=off,hugetlb=on,hugetlbsize=2M,seal=off',
      machine: 'memory-backend=m',
    }).backend,
    { kind: 'memfd', size: GiB, share: false, hugetlb: true, hugetlbSize: 2 * MiB, seal: false, prealloc: false },
  );
});

test('memory config: objects that are not memory backends are left for others', () => {
  const c = parseMemoryOptions({ object: ['rng-random,id=rng0,filename=/dev/urandom'], m: '64M' });
  assert.is(c.backend.kind, 'anon');
});

test('memory config: a backend id that no -object defines is an error', () => {
  refuses(
    { object: 'memory-backend-ram,id=ram0,size=1G', machine: 'memory-backend=ram1' },
    '-machine: memory-backend=ram1: no -object memory-backend-* has id=ram1',
  );
});

test('memory config: -m that disagrees with the backend size is an error naming both', () => {
  refuses(
    { m: '512M', object: 'memory-backend-ram,id=ram0,size=1G', machine: 'memory-backend=ram0' },
    "-m: 512 MiB does not match the size of memory backend 'ram0' (1 GiB): give both the same size, or leave out -m",
  );
});

test('memory config: a memory backend that the machine does not use is an error', () => {
  refuses(
    { object: 'memory-backend-ram,id=spare,size=1G' },
    "-object memory-backend-ram: memory backend 'spare' is never used (add -machine memory-backend=spare)",
  );
  refuses(
    { object: ['memory-backend-ram,id=a,size=1G', 'memory-backend-memfd,id=b,size=1G'], machine: 'memory-backend=a' },
    "-object memory-backend-memfd: memory backend 'b' is never used (add -machine memory-backend=b)",
  );
});

test('memory config: malformed memory backends are refused with QEMU-style messages', () => {
  const use = (object: string): MemoryOptionValues => ({ object, machine: 'memory-backend=r' });
  refuses(use('memory-backend-ram,size=1G'), "-object memory-backend-ram: parameter 'id' is missing");
  refuses(use('memory-backend-ram,id=r'), "-object memory-backend-ram,id=r: parameter 'size' is missing");
  refuses(use('memory-backend-ram,id=r,size=0'), "-object memory-backend-ram,id=r: can't create backend with size 0");
  refuses(
    use('memory-backend-ram,id=r,size=1000'),
    '-object memory-backend-ram,id=r: size=1000 is not a multiple of the 4096-byte page size',
  );
  refuses(
    use('memory-backend-ram,id=r,size=1G,share=maybe'),
    "-object memory-backend-ram: share=maybe: 'maybe' is not a boolean (use on/off, yes/no or true/false)",
  );
  refuses(
    use('memory-backend-ram,id=r,size=1G,hugetlb=on'),
    "-object memory-backend-ram: unknown parameter 'hugetlb' (known: dump, id, merge, prealloc, prealloc-threads, share, size)",
  );
  refuses(use('memory-backend-file,id=r,size=1G'), "-object memory-backend-file,id=r: parameter 'mem-path' is missing");
  refuses(
    use('memory-backend-memfd,id=r,size=1G,hugetlbsize=2M'),
    '-object memory-backend-memfd,id=r: hugetlbsize=2M needs hugetlb=on',
  );
  refuses(
    use('memory-backend-memfd,id=r,size=1G,hugetlb=on,hugetlbsize=3M'),
    '-object memory-backend-memfd,id=r: hugetlbsize=3M is not a power of two',
  );
  refuses(
    use('memory-backend-memfd,id=r,size=3M,hugetlb=on,hugetlbsize=2M'),
    '-object memory-backend-memfd,id=r: size=3M is not a multiple of hugetlbsize=2M',
  );
  refuses(
    use('memory-backend-epc,id=r,size=1G'),
    '-object memory-backend-epc: unsupported memory backend type (use memory-backend-ram, memory-backend-memfd, memory-backend-file)',
  );
  refuses(
    { object: ['memory-backend-ram,id=r,size=1G', 'memory-backend-ram,id=r,size=2G'], machine: 'memory-backend=r' },
    "-object memory-backend-ram: duplicate ID 'r' for object",
  );
  refuses({ object: 'id=r,size=1G' }, "-object: parameter 'qom-type' is missing in 'id=r,size=1G'");
});

test('memory config: mem-path=/dev/daxX.Y selects device DAX, which must be shared and 2 MiB-aligned', () => {
  const c = parseMemoryOptions({
    object: 'memory-backend-file,id=pm,size=4G,mem-path=/dev/dax0.0,share=on,align=2M,pmem=on',
    machine: 'memory-backend=pm',
  });
  assert.equal(c.backend, { kind: 'devdax', size: 4 * GiB, path: '/dev/dax0.0', offset: 0, prealloc: false });
  refuses(
    { object: 'memory-backend-file,id=pm,size=4G,mem-path=/dev/dax0.0', machine: 'memory-backend=pm' },
    '-object memory-backend-file,id=pm: device DAX (/dev/dax0.0) can only be mapped shared: add share=on',
  );
  refuses(
    { object: 'memory-backend-file,id=pm,size=3M,mem-path=/dev/dax0.0,share=on', machine: 'memory-backend=pm' },
    '-object memory-backend-file,id=pm: devdax /dev/dax0.0: size 3145728 (0x300000) is not a positive multiple of the device alignment 2 MiB',
  );
  refuses(
    {
      object: 'memory-backend-file,id=pm,size=4M,offset=1M,mem-path=/dev/dax0.0,share=on',
      machine: 'memory-backend=pm',
    },
    '-object memory-backend-file,id=pm: devdax /dev/dax0.0: offset 1048576 (0x100000) is not a multiple of the device alignment 2 MiB',
  );
});

test('memory config: -mem-path is a private file backend of the -m size; it cannot be mixed with memory-backend=', () => {
  assert.equal(parseMemoryOptions({ m: '256', memPath: '/dev/shm' }).backend, {
    kind: 'file',
    size: 256 * MiB,
    path: '/dev/shm',
    share: false,
    prealloc: false,
  });
  refuses(
    { memPath: '/dev/shm', object: 'memory-backend-ram,id=r,size=1G', machine: 'memory-backend=r' },
    '-mem-path: cannot be used together with -machine memory-backend=r',
  );
});

test('memory config: -mem-prealloc preallocates every backend unless it says prealloc=off', () => {
  assert.is(parseMemoryOptions({ memPrealloc: true }).backend.prealloc, true);
  assert.is(
    parseMemoryOptions({ memPrealloc: true, object: 'memory-backend-ram,id=r,size=1G', machine: 'memory-backend=r' })
      .backend.prealloc,
    true,
  );
  assert.is(
    parseMemoryOptions({
      memPrealloc: true,
      object: 'memory-backend-ram,id=r,size=1G,prealloc=off',
      machine: 'memory-backend=r',
    }).backend.prealloc,
    false,
  );
});

test('memory config: createGuestRam maps a file backend that survives and is reopened from its record', () => {
  const path = shmPath();
  const config = parseMemoryOptions({
    m: '64M',
    object: `memory-backend-file,id=ram0,size=64M,mem-path=${path},share=on`,
    machine: 'memory-backend=ram0',
  });
  const machine = createGuestRam(config);
  machine.ram.writeU32(0x7c00, 0xaa55aa55);
  const record = machine.backend.record();
  machine.close();
  assert.is(statSync(path).size, 64 * MiB);

  const again = openGuestRamFromRecord(record);
  try {
    assert.is(again.ram.readU32(0x7c00), 0xaa55aa55);
    assert.equal(
      again.regions.map((r) => [r.gpa, r.size, r.offset]),
      [[0, 64 * MiB, 0]],
    );
  } finally {
    again.close();
  }
});

test('memory config: -mem-path DIR creates an unlinked temp file there, leaving nothing behind', () => {
  const dir = mkdtempSync('/dev/shm/tsvmm-config-test-dir-');
  try {
    const machine = createGuestRam(parseMemoryOptions({ m: '32M', memPath: dir }));
    try {
      assert.equal(readdirSync(dir), []);
      machine.ram.writeU8(0, 1);
      assert.is(machine.backend.record().path, null);
    } finally {
      machine.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.not.ok(existsSync(dir));
});

test.run();
