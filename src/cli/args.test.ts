import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRunArgs, UsageError } from './args.js';

test('args: QEMU flags land in their fields, repeatable ones in order', () => {
  const a = parseRunArgs([
    '-m',
    '512M',
    '-smp',
    '2',
    '-kernel',
    'k.elf',
    '-serial',
    'stdio',
    '-serial',
    'file:/tmp/x',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x04',
    '-no-reboot',
    '--timeout',
    '5',
  ]);
  assert.is(a.m, '512M');
  assert.is(a.smp, '2');
  assert.is(a.kernel, 'k.elf');
  assert.equal(a.serial, ['stdio', 'file:/tmp/x']);
  assert.equal(a.device, ['isa-debug-exit,iobase=0xf4,iosize=0x04']);
  assert.is(a.noReboot, true);
  assert.is(a.timeoutSeconds, 5);
});

test('args: --flag=value works for valued flags', () => {
  assert.is(parseRunArgs(['--kernel=/boot/x']).kernel, '/boot/x');
});

test('args: an unknown option is a usage error naming it', () => {
  assert.throws(
    () => parseRunArgs(['-bogus']),
    (e: Error) => e instanceof UsageError && e.message.includes("'-bogus'"),
  );
});

test('args: a missing value says what the flag expects', () => {
  assert.throws(() => parseRunArgs(['-m']), /needs a value: -m SIZE/);
});

test('args: a single-valued flag given twice is refused', () => {
  assert.throws(() => parseRunArgs(['-kernel', 'a', '-kernel', 'b']), /more than once/);
});

test('args: compatibility flags are accepted only with values that change nothing', () => {
  assert.equal(parseRunArgs(['-enable-kvm', '-display', 'none', '-nographic']).ignored, [
    '-enable-kvm',
    '-display none',
    '-nographic',
  ]);
  assert.throws(() => parseRunArgs(['-display', 'gtk']), /only 'none' is supported/);
  assert.throws(() => parseRunArgs(['-accel', 'tcg']), /only 'kvm' is supported/);
});

test('args: a bad timeout is refused', () => {
  assert.throws(() => parseRunArgs(['--timeout', 'soon']), /not a positive number/);
  assert.throws(() => parseRunArgs(['--timeout', '0']), /not a positive number/);
});

test.run();
