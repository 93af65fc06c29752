import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseQemuOpts, parseSize, parseBool, formatSize, QemuOptsError } from './qemu-opts.js';
import { GiB, MiB, TiB } from './sizes.js';

const object = (text: string) => parseQemuOpts(text, { option: '-object', impliedKey: 'qom-type' });

function throwsMessage(fn: () => unknown, expected: string): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, Error);
    assert.is((e as Error).message, expected);
    assert.not.match((e as Error).message, /\n/);
    return;
  }
  assert.unreachable(`expected an error: ${expected}`);
}

test('qemu-opts: the first item of -object is its type, the rest are key=value pairs', () => {
  const o = object('memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/vm0,share=on');
  assert.is(o.implied, 'memory-backend-file');
  assert.is(o.get('id'), 'ram0');
  assert.is(o.get('mem-path'), '/dev/shm/vm0');
  assert.is(o.size('size'), 512 * MiB);
  assert.is(o.bool('share', false), true);
  assert.equal(o.keys(), ['qom-type', 'id', 'size', 'mem-path', 'share']);
  assert.is(o.label, '-object memory-backend-file');
});

test('qemu-opts: a doubled comma is a literal comma inside a value', () => {
  const o = object('memory-backend-file,id=r,mem-path=/tmp/a,,b,,,share=on');
  assert.is(o.get('mem-path'), '/tmp/a,b,');
  assert.is(o.get('share'), 'on');
});

test('qemu-opts: a value may contain "=" (split at the first one)', () => {
  const o = parseQemuOpts('driver=x,opt=a=b', { option: '-device' });
  assert.is(o.get('opt'), 'a=b');
});

test('qemu-opts: a bare key means key=on', () => {
  const o = parseQemuOpts('pc,usb,accel=kvm', { option: '-machine', impliedKey: 'type' });
  assert.is(o.get('type'), 'pc');
  assert.is(o.get('usb'), 'on');
  assert.is(o.bool('usb', false), true);
});

test('qemu-opts: without an implied key a bare first item is a flag too', () => {
  const o = parseQemuOpts('prealloc,size=1G', { option: '-x' });
  assert.is(o.get('prealloc'), 'on');
  assert.is(o.implied, undefined);
});

test('qemu-opts: a trailing comma is ignored', () => {
  assert.equal(object('memory-backend-ram,id=a,').entries(), [
    ['qom-type', 'memory-backend-ram'],
    ['id', 'a'],
  ]);
});

test('qemu-opts: -m 1G puts the implied value under size', () => {
  const o = parseQemuOpts('1G', { option: '-m', impliedKey: 'size' });
  assert.is(o.size('size', undefined, MiB), GiB);
  assert.is(o.label, '-m');
});

test('qemu-opts: empty items, nameless values and repeated keys are errors naming the option', () => {
  throwsMessage(() => object(''), '-object: empty value');
  throwsMessage(() => object(',id=a'), "-object: empty parameter in ',id=a'");
  throwsMessage(() => object('memory-backend-ram,=1'), "-object: parameter without a name in '=1'");
  throwsMessage(() => object('memory-backend-ram,id=a,id=b'), "-object: parameter 'id' is given more than once");
  throwsMessage(() => object(','), "-object: empty parameter in ','");
});

test('qemu-opts: booleans are on/off, yes/no, true/false; anything else names the key and value', () => {
  for (const w of ['on', 'yes', 'true']) assert.is(parseBool(w), true);
  for (const w of ['off', 'no', 'false']) assert.is(parseBool(w), false);
  const o = object('memory-backend-file,share=maybe,prealloc=ON');
  throwsMessage(
    () => o.bool('share', false),
    "-object memory-backend-file: share=maybe: 'maybe' is not a boolean (use on/off, yes/no or true/false)",
  );
  throwsMessage(
    () => o.bool('prealloc', false),
    "-object memory-backend-file: prealloc=ON: 'ON' is not a boolean (use on/off, yes/no or true/false)",
  );
  assert.is(o.bool('absent', true), true);
});

test('qemu-opts: sizes take the suffixes B K M G T P E (any case), fractions and hex', () => {
  assert.is(parseSize('4096'), 4096);
  assert.is(parseSize('512M'), 512 * MiB);
  assert.is(parseSize('512m'), 512 * MiB);
  assert.is(parseSize('1G'), GiB);
  assert.is(parseSize('2T'), 2 * TiB);
  assert.is(parseSize('1.5G'), 1.5 * GiB);
  assert.is(parseSize('4k'), 4096);
  assert.is(parseSize('100B'), 100);
  assert.is(parseSize('0x1000'), 4096);
  assert.is(parseSize('1P'), 2 ** 50);
});

test('qemu-opts: a plain number is bytes for size= and MiB for -m; a suffix overrides either', () => {
  assert.is(parseSize('512'), 512);
  assert.is(parseSize('512', MiB), 512 * MiB);
  assert.is(parseSize('1.5', MiB), 1.5 * MiB);
  assert.is(parseSize('2G', MiB), 2 * GiB);
  assert.is(parseSize('4096B', MiB), 4096);
});

test('qemu-opts: bad sizes are refused with the value quoted', () => {
  throwsMessage(
    () => parseSize('12Q'),
    "'12Q' is not a valid size (use a number with an optional suffix B, K, M, G, T, P or E, e.g. 512M or 1.5G)",
  );
  for (const bad of ['', '-1', '1e3', ' 1G', '1G ', '1.G', '.5G', 'G', '0x', '0x10M', '1,5G']) {
    assert.throws(() => parseSize(bad), /is not a valid size/, bad);
  }
  throwsMessage(() => parseSize('1.5'), "'1.5' has a fraction but no unit larger than a byte (write e.g. 1.5G)");
  throwsMessage(() => parseSize('9E'), "'9E' is too large (the limit is 2^53 - 1 bytes)");
});

test('qemu-opts: a bad size names the option, key and value', () => {
  throwsMessage(
    () => object('memory-backend-ram,id=r,size=12Q').size('size'),
    "-object memory-backend-ram: size=12Q: '12Q' is not a valid size (use a number with an optional suffix B, K, M, G, T, P or E, e.g. 512M or 1.5G)",
  );
  throwsMessage(
    () => object('memory-backend-ram,id=r').size('size'),
    "-object memory-backend-ram: parameter 'size' is missing",
  );
});

test('qemu-opts: unknown keys are refused by name, listing the known ones', () => {
  const o = object('memory-backend-ram,id=r,size=1G,colour=blue');
  throwsMessage(
    () => o.checkKnown(['id', 'size']),
    "-object memory-backend-ram: unknown parameter 'colour' (known: id, size)",
  );
  object('memory-backend-ram,id=r,size=1G').checkKnown(['id', 'size']);
});

test('qemu-opts: integers are decimal or hex and never negative', () => {
  const o = parseQemuOpts('a=10,b=0x10,c=-1,d=1.5', { option: '-x' });
  assert.is(o.uint('a'), 10);
  assert.is(o.uint('b'), 16);
  throwsMessage(() => o.uint('c'), '-x: c=-1: not a non-negative integer');
  throwsMessage(() => o.uint('d'), '-x: d=1.5: not a non-negative integer');
});

test('qemu-opts: errors are QemuOptsError with the option attached', () => {
  try {
    object('memory-backend-ram,id=a,id=b');
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QemuOptsError);
    assert.is((e as QemuOptsError).option, '-object');
  }
});

test('qemu-opts: formatSize prints the largest exact binary unit', () => {
  assert.is(formatSize(GiB), '1 GiB');
  assert.is(formatSize(1536 * MiB), '1536 MiB');
  assert.is(formatSize(1536), '1536 bytes');
  assert.is(formatSize(4096), '4 KiB');
});

test.run();
