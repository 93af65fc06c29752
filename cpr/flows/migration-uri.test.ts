// Which URIs migrate, migrate-incoming and -incoming take in reboot mode, and how a bad one is refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CprError } from './cpr-error.js';
import { channelUri, describeUri, parseMigrationUri } from './migration-uri.js';

test('migration URI: file:PATH, fd:NAME and exec:COMMAND (run by /bin/sh -c)', () => {
  assert.equal(parseMigrationUri('file:/var/lib/vm.state'), { transport: 'file', path: '/var/lib/vm.state' });
  assert.equal(parseMigrationUri('fd:mig'), { transport: 'fd', fd: 'mig' });
  assert.equal(parseMigrationUri('exec:cat > /tmp/x'), { transport: 'exec', argv: ['/bin/sh', '-c', 'cat > /tmp/x'] });
  assert.is(describeUri(parseMigrationUri('exec:gzip -c > f.gz')), 'exec:gzip -c > f.gz');
});

test('migration URI: an unknown transport, or one with nothing after the colon, is a one-line CprError', () => {
  const refused = (uri: string, text: string) => {
    assert.throws(
      () => parseMigrationUri(uri),
      (e: Error) => e instanceof CprError && e.message.includes(text) && !e.message.includes('\n'),
      uri,
    );
  };
  refused('tcp:0:4444', "migration URI 'tcp:0:4444' is not supported: use file:PATH, fd:NAME or exec:COMMAND");
  refused('/var/lib/vm.state', 'is not supported');
  refused('file:', 'has no path');
  refused('fd:', 'has no file descriptor name');
  refused('exec:', 'has no command');
  refused('exec:   ', 'has no command');
  refused('file:/x,offset=4096', 'offset= is not supported');
});

test("migration channels: the main channel's file, fd and exec addresses (exec's args run as they are)", () => {
  assert.equal(channelUri({ transport: 'file', filename: '/f' }), { transport: 'file', path: '/f' });
  assert.equal(channelUri({ transport: 'socket', type: 'fd', str: 'mig' }), { transport: 'fd', fd: 'mig' });
  assert.equal(channelUri({ transport: 'exec', args: ['/usr/bin/tee', '/f'] }), {
    transport: 'exec',
    argv: ['/usr/bin/tee', '/f'],
  });
  assert.throws(() => channelUri({ transport: 'socket', type: 'unix' }), /the main channel must be a file/);
  assert.throws(() => channelUri({ transport: 'exec', args: [] }), /the main channel must be a file/);
});

test.run();
