import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCharSpec, charSpecFromChardev, CharSpecError } from './spec.js';

test('chardev spec: stdio, null and none', () => {
  assert.equal(parseCharSpec('stdio'), { kind: 'stdio' });
  assert.equal(parseCharSpec('null'), { kind: 'null' });
  assert.equal(parseCharSpec('none'), { kind: 'none' });
});

test('chardev spec: file: takes the whole rest as the path', () => {
  assert.equal(parseCharSpec('file:/tmp/a,b.log'), { kind: 'file', path: '/tmp/a,b.log', append: false });
  assert.throws(() => parseCharSpec('file:'), /a path is required/);
});

test('chardev spec: unix server options in QEMU spelling', () => {
  const server = { kind: 'unix', path: '/run/vm.sock', server: true };
  assert.equal(parseCharSpec('unix:/run/vm.sock,server'), { ...server, wait: true });
  assert.equal(parseCharSpec('unix:/run/vm.sock,server,nowait'), { ...server, wait: false });
  assert.equal(parseCharSpec('unix:/run/vm.sock,server=on,wait=off'), { ...server, wait: false });
  assert.equal(parseCharSpec('unix:/run/vm.sock,wait=no,server=yes,'), { ...server, wait: false });
  assert.equal(parseCharSpec('unix:/run/a,,b.sock,server'), {
    kind: 'unix',
    path: '/run/a,b.sock',
    server: true,
    wait: true,
  });
});

test('chardev spec: unix without server is a client', () => {
  assert.equal(parseCharSpec('unix:/run/vm.sock'), { kind: 'unix', path: '/run/vm.sock', server: false, wait: false });
  assert.throws(() => parseCharSpec('unix:/run/vm.sock,wait=off'), /only to a server/);
});

test('chardev spec: mistakes are named', () => {
  assert.throws(
    () => parseCharSpec('tcp:localhost:4444'),
    (e: Error) => e instanceof CharSpecError && /unsupported backend/.test(e.message),
  );
  assert.throws(() => parseCharSpec('unix:/x,server=maybe'), /'server=maybe' is not a boolean/);
  assert.throws(() => parseCharSpec('unix:/x,telnet'), /unsupported option 'telnet'/);
  assert.equal(
    parseCharSpec('unix:/x,,'),
    { kind: 'unix', path: '/x,', server: false, wait: false },
    '",," is a comma in the path',
  );
  assert.throws(() => parseCharSpec('unix:,server'), /a path is required/);
  assert.throws(() => parseCharSpec('mon:stdio'), /no HMP monitor/);
  assert.throws(() => parseCharSpec('vc'), /supported: stdio/);
});

test('chardev spec: -chardev options map to the same specs', () => {
  assert.equal(charSpecFromChardev('socket', { id: 's0', path: '/run/s', server: 'on', wait: 'off' }), {
    kind: 'unix',
    path: '/run/s',
    server: true,
    wait: false,
  });
  assert.equal(charSpecFromChardev('file', { id: 'f', path: '/tmp/log', append: 'on' }), {
    kind: 'file',
    path: '/tmp/log',
    append: true,
  });
  assert.equal(charSpecFromChardev('stdio', { id: 'c' }), { kind: 'stdio' });
  assert.equal(charSpecFromChardev('pipe', { id: 'p', path: '/tmp/fifo' }), { kind: 'pipe', path: '/tmp/fifo' });
  assert.throws(() => charSpecFromChardev('socket', { id: 't', host: 'localhost', port: '4444' }), /only unix sockets/);
  assert.throws(() => charSpecFromChardev('stdio', { id: 'c', signal: 'off' }), /unsupported option 'signal'/);
  assert.throws(() => charSpecFromChardev('pty', { id: 'x' }), /unsupported backend/);
});

test.run();
