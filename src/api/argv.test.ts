// Typed options are spelled as the `tsvmm run` command line that means the same; the CLI's parser does the rest.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { argvFromOptions, hostArgv, serialSpecs, wantsStream } from './argv.js';

const STREAM = 'unix:/tmp/tsvmm-serial-x/com.sock';

test('argv: each option is its flag, in the order the README lists them; serial defaults to the stream on COM1', () => {
  assert.equal(
    argvFromOptions(
      {
        name: 'vm',
        memory: 64,
        smp: 2,
        cpu: 'pvm-safe',
        acpi: false,
        kernel: 'k.elf',
        initrd: 'i.cpio',
        append: 'quiet',
        rng: true,
        debugExit: true,
        noReboot: true,
        paused: true,
        timeout: 30,
        args: ['-device', 'pvpanic'],
      },
      STREAM,
    ),
    [
      ...['-name', 'vm', '-m', '64', '-smp', '2', '-cpu', 'pvm-safe', '-machine', 'acpi=off'],
      ...['-kernel', 'k.elf', '-initrd', 'i.cpio', '-append', 'quiet', '-device', 'virtio-rng-pci'],
      ...['-device', 'isa-debug-exit', '-no-reboot', '-S', '-serial', STREAM, '--timeout', '30'],
      ...['-device', 'pvpanic'],
    ],
  );
});

test('argv: a memory backend is -object + -machine memory-backend=, a plain number of MiB as in -m', () => {
  assert.equal(argvFromOptions({ memory: { size: 64, backend: 'file', path: '/dev/shm/a,b', share: true } }, null), [
    ...['-object', 'memory-backend-file,id=ram0,size=64M,mem-path=/dev/shm/a,,b,share=on'],
    ...['-machine', 'memory-backend=ram0', '-serial', 'null'],
  ]);
  assert.equal(argvFromOptions({ memory: { size: '1G', backend: 'memfd', hugetlb: true, prealloc: true } }, null), [
    ...['-object', 'memory-backend-memfd,id=ram0,size=1G,hugetlb=on,prealloc=on'],
    ...['-machine', 'memory-backend=ram0', '-serial', 'null'],
  ]);
});

test('argv: disks and NICs are -drive/-netdev with their virtio device, numbered in order', () => {
  assert.equal(
    argvFromOptions(
      {
        disks: [{ file: 'a.img' }, { file: 'b.img', readonly: true, serial: 'B' }],
        nics: [{ ifname: 'tap0', mac: '52:54:00:12:34:56' }],
        serial: 'null',
      },
      null,
    ),
    [
      ...['-drive', 'file=a.img,if=none,id=disk0,format=raw', '-device', 'virtio-blk-pci,drive=disk0'],
      ...['-drive', 'file=b.img,if=none,id=disk1,format=raw,readonly=on'],
      ...['-device', 'virtio-blk-pci,drive=disk1,serial=B'],
      ...['-netdev', 'tap,id=net0,ifname=tap0', '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56'],
      ...['-serial', 'null'],
    ],
  );
});

test('argv: host options — serial ports in order, QMP paths served without waiting, power-off and panic actions', () => {
  assert.equal(
    hostArgv(
      {
        serial: ['file:/tmp/com1', 'stream'],
        qmp: ['/tmp/q.sock', 'unix:/tmp/r.sock,server=on,wait=off'],
        noShutdown: true,
        panic: 'pause',
      },
      STREAM,
    ),
    [
      ...['-serial', 'file:/tmp/com1', '-serial', STREAM],
      ...['-qmp', 'unix:/tmp/q.sock,server=on,wait=off', '-qmp', 'unix:/tmp/r.sock,server=on,wait=off'],
      ...['-no-shutdown', '-action', 'panic=pause'],
    ],
  );
  assert.equal(argvFromOptions({ debugExit: { iobase: 0x501, iosize: 2 }, serial: 'none' }, null), [
    ...['-device', 'isa-debug-exit,iobase=1281,iosize=2', '-serial', 'none'],
  ]);
});

test('argv: the stream is wanted by default and when named; naming it twice is refused', () => {
  assert.ok(wantsStream(undefined));
  assert.ok(wantsStream(['null', 'stream']));
  assert.not.ok(wantsStream('file:/tmp/x'));
  assert.equal(serialSpecs(undefined, STREAM), [STREAM]);
  assert.throws(() => serialSpecs(['stream', 'stream'], STREAM), /only one port can be 'stream'/);
});

test.run();
