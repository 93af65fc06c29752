// The meaning of tsvmm run's options: what a QEMU user types becomes the machine they expect, and every mistake is
// one line naming the option.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRunArgs, UsageError } from './args.js';
import { machineConfigFromArgs } from './config.js';

const config = (...argv: string[]) => machineConfigFromArgs(parseRunArgs(argv));

test('config: virtio devices take their back ends from -drive, -netdev and -chardev, in command-line order', () => {
  const c = config(
    '-drive',
    'file=/img/a.raw,if=none,id=d0,format=raw,readonly=on',
    '-device',
    'virtio-blk-pci,drive=d0,serial=disk-a',
    '-netdev',
    'tap,id=n0,ifname=tap7,script=no,downscript=no',
    '-device',
    'virtio-net-pci,netdev=n0,mac=52:54:00:AA:BB:CC',
    '-device',
    'virtio-rng-pci,disable-legacy=on',
    '-chardev',
    'file,id=c0,path=/tmp/hvc0',
    '-device',
    'virtio-serial-pci',
    '-device',
    'virtconsole,chardev=c0',
  );
  assert.equal(
    c.virtio.map((v) => v.kind),
    ['blk', 'net', 'rng', 'console'],
  );
  assert.equal(c.virtio[0], { kind: 'blk', id: 'virtio-blk0', path: '/img/a.raw', readOnly: true, serial: 'disk-a' });
  assert.equal(c.virtio[1], { kind: 'net', id: 'virtio-net1', ifname: 'tap7', mac: '52:54:00:aa:bb:cc' });
  assert.equal(c.virtio[3], {
    kind: 'console',
    id: 'virtio-console3',
    output: { kind: 'file', path: '/tmp/hvc0', append: false },
  });
  assert.is(c.acpi, true);
});

test("config: ioeventfd=off (QEMU's spelling) is kept per device; on is the default and is not recorded", () => {
  const c = config(
    '-device',
    'virtio-rng-pci,ioeventfd=off',
    '-device',
    'virtio-rng-pci,ioeventfd=on',
    '-device',
    'virtio-rng-pci',
  );
  assert.equal(
    c.virtio.map((v) => v.ioeventfd),
    [false, undefined, undefined],
  );
});

test('config: -drive if=virtio is a virtio-blk device of its own', () => {
  assert.equal(config('-drive', 'file=x.img,if=virtio,format=raw').virtio, [
    { kind: 'blk', id: 'virtio-disk0', path: 'x.img', readOnly: false, serial: null },
  ]);
});

test('config: mistakes in virtio options are one line naming them', () => {
  const refused = (argv: string[], pattern: RegExp) =>
    assert.throws(
      () => config(...argv),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
    );
  refused(['-device', 'virtio-blk-pci,drive=missing'], /drive 'missing' is not defined/);
  refused(['-device', 'virtio-blk-pci'], /parameter 'drive' is missing/);
  refused(['-drive', 'file=a,if=none,id=d0,format=qcow2'], /format=qcow2 is not supported/);
  refused(['-drive', 'file=a,if=none,id=d0'], /-drive d0: defined but no device uses it/);
  refused(['-netdev', 'user,id=n0'], /only tap is supported/);
  refused(
    ['-netdev', 'tap,id=n0,ifname=t0,script=/etc/qemu-ifup', '-device', 'virtio-net-pci,netdev=n0'],
    /script= is not supported/,
  );
  refused(
    ['-netdev', 'tap,id=n0,ifname=t0', '-device', 'virtio-net-pci,netdev=n0,mac=nonsense'],
    /mac=nonsense is not a MAC address/,
  );
  refused(['-device', 'virtio-rng-pci,disable-modern=on'], /modern \(virtio 1.x\) only/);
});

test("config: -device vfio-pci takes QEMU's host=[DDDD:]BB:DD.F or sysfsdev=PATH, in command-line order", () => {
  const c = config(
    '-device',
    'vfio-pci,host=0000:00:03.0,id=edu0',
    '-device',
    'vfio-pci,host=00:04.0',
    '-device',
    'vfio-pci,sysfsdev=/sys/bus/pci/devices/0000:01:00.0/',
    '-device',
    'vfio-pci,host=1:0A:1f.7,rombar=0',
  );
  assert.equal(c.vfio, [
    { id: 'edu0', sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' },
    { id: 'vfio1', sysfsdev: '/sys/bus/pci/devices/0000:00:04.0' },
    { id: 'vfio2', sysfsdev: '/sys/bus/pci/devices/0000:01:00.0' },
    { id: 'vfio3', sysfsdev: '/sys/bus/pci/devices/0001:0a:1f.7', rombar: false },
  ]);
  assert.is(config().vfio, undefined, 'no passthrough: no field');
});

test('config: mistakes in -device vfio-pci are one line naming them', () => {
  const refused = (argv: string[], pattern: RegExp) =>
    assert.throws(
      () => config(...argv),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
    );
  refused(['-device', 'vfio-pci'], /No provided host device - Use -device vfio-pci,host=DDDD:BB:DD.F or/);
  refused(['-device', 'vfio-pci,host=00:03'], /host=00:03 is not a PCI address \(DDDD:BB:DD.F/);
  refused(['-device', 'vfio-pci,host=0000:00:20.0'], /host=0000:00:20.0 is not a PCI address/);
  refused(['-device', 'vfio-pci,host=0000:00:03.8'], /is not a PCI address/);
  refused(['-device', 'vfio-pci,host=edu'], /host=edu is not a PCI address/);
  refused(['-device', 'vfio-pci,host=00:03.0,sysfsdev=/sys/bus/pci/devices/0000:00:03.0'], /not both/);
  refused(['-device', 'vfio-pci,sysfsdev=0000:00:03.0'], /must be an absolute path/);
  refused(['-device', 'vfio-pci,host=00:03.0', '-device', 'vfio-pci,host=0000:00:03.0'], /already passed through/);
  refused(['-device', 'vfio-pci,host=00:03.0,x-igd-opregion=on'], /x-igd-opregion/);
  refused(['-device', 'vfio-pci,host=00:03.0,rombar=2'], /rombar=2 must be 0 or 1/);
});

test('config: -machine acpi=off turns ACPI off', () => {
  assert.is(config('-machine', 'pc,acpi=off').acpi, false);
});

test("config: pvpanic sits at QEMU's port 0x505 when ACPI is on (so a guest panic has its own status); -device pvpanic,ioport= moves it, -machine pvpanic=off removes it", () => {
  assert.equal(config().pvpanic, { ioport: 0x505 });
  assert.is(config('-machine', 'pvpanic=off').pvpanic, null);
  assert.is(config('-machine', 'acpi=off').pvpanic, null, 'without ACPI no guest OS would find it');
  assert.equal(config('-machine', 'acpi=off', '-device', 'pvpanic').pvpanic, { ioport: 0x505 }, 'asked for: there');
  assert.equal(config('-device', 'pvpanic').pvpanic, { ioport: 0x505 });
  assert.equal(config('-device', 'pvpanic,ioport=0x506').pvpanic, { ioport: 0x506 });
  const refused = (argv: string[], pattern: RegExp) =>
    assert.throws(
      () => config(...argv),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
    );
  refused(['-device', 'pvpanic', '-device', 'pvpanic'], /pvpanic: given more than once/);
  refused(['-device', 'pvpanic,ioport=0x10000'], /ioport=0x10000 is outside the I\/O space/);
  refused(['-device', 'pvpanic,ioport=port'], /ioport=port is not a number/);
  refused(['-device', 'pvpanic,events=1'], /events/);
});

test("config: -action (QEMU's) sets what reboots, power-offs and panics do; -no-reboot and -no-shutdown are its shorthands", () => {
  const d = config();
  assert.equal([d.noReboot, d.noShutdown, d.panicAction], [false, false, 'exit-failure']);
  assert.equal([config('-no-reboot').noReboot, config('-no-shutdown').noShutdown], [true, true]);
  const a = config('-action', 'reboot=shutdown,shutdown=pause', '-action', 'panic=pause');
  assert.equal([a.noReboot, a.noShutdown, a.panicAction], [true, true, 'pause']);
  assert.is(config('-no-reboot', '-action', 'reboot=reset').noReboot, false, 'the later option wins');
  const refused = (argv: string[], pattern: RegExp) =>
    assert.throws(
      () => config(...argv),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
    );
  refused(['-action', 'panic=explode'], /-action: panic=explode must be one of exit-failure, shutdown, pause, none/);
  refused(['-action', 'watchdog=reset'], /watchdog/);
});

test.run();
