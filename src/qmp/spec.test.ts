import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseQmpSpec, QmpSpecError } from './spec.js';

function refused(text: string, pattern: RegExp): void {
  try {
    parseQmpSpec(text);
  } catch (e) {
    assert.instance(e, QmpSpecError);
    assert.match((e as Error).message, pattern);
    assert.ok((e as Error).message.startsWith(`-qmp ${text}: `), (e as Error).message);
    return;
  }
  assert.unreachable(`expected ${text} to be refused`);
}

test('-qmp: unix:PATH,server,wait=off and its QEMU spellings', () => {
  assert.equal(parseQmpSpec('unix:/run/vm.qmp,server,wait=off'), { path: '/run/vm.qmp', wait: false });
  assert.equal(parseQmpSpec('unix:/run/vm.qmp,server=on,wait=off'), { path: '/run/vm.qmp', wait: false });
  assert.equal(parseQmpSpec('unix:/run/vm.qmp,server,nowait'), { path: '/run/vm.qmp', wait: false });
  assert.equal(parseQmpSpec('unix:/run/vm.qmp,wait=no,server=yes'), { path: '/run/vm.qmp', wait: false });
});

test('-qmp: a server waits for its first client unless wait=off, as in QEMU', () => {
  assert.equal(parseQmpSpec('unix:/tmp/q,server'), { path: '/tmp/q', wait: true });
  assert.equal(parseQmpSpec('unix:/tmp/q,server=on,wait=on'), { path: '/tmp/q', wait: true });
});

test('-qmp: a doubled comma is a literal comma in the path', () => {
  assert.equal(parseQmpSpec('unix:/tmp/a,,b,server,wait=off'), { path: '/tmp/a,b', wait: false });
});

test('-qmp: unsupported forms are refused with what to write instead', () => {
  refused('tcp:localhost:4444,server', /'tcp' is not supported.*unix:PATH,server=on/);
  refused('stdio', /'stdio' is not supported/);
  refused('unix:/tmp/q', /only listens.*server=on/);
  refused('unix:/tmp/q,server=off', /only listens/);
  refused('unix:', /socket path is missing/);
  refused('unix:/tmp/q,server,wait=maybe', /wait=maybe: 'maybe' is not a boolean/);
  refused('unix:/tmp/q,server,reconnect=1', /unknown parameter 'reconnect'/);
  refused('unix:/tmp/q,server,wait=off,wait=on', /given more than once/);
});

test.run();
