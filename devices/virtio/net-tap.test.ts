// virtio-net against a real tap: the test creates a network namespace (root needed), runs testing/tap-probe.js in
// it, and checks that frames went out through the tap and the kernel's answers came back into receive buffers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testIf } from '../../test/support/skip.js';

const namespace = `tsvmm-net-${process.pid}`;

/** Creates the namespace; returns why the test cannot run, or null. */
function prepare(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace and a tap';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  try {
    execFileSync('ip', ['netns', 'add', namespace], { stdio: ['ignore', 'ignore', 'pipe'] });
    return null;
  } catch (e) {
    return `cannot create a network namespace (ip netns add: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()})`;
  }
}

const reason = prepare();

testIf(test, reason, "virtio-net: an ARP request and a ping through a real tap get the kernel's replies back", () => {
  const probe = join(dirname(fileURLToPath(import.meta.url)), 'testing', 'tap-probe.js');
  const out = execFileSync('ip', ['netns', 'exec', namespace, process.execPath, probe], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const result = JSON.parse(out.trim().split('\n').at(-1)!);
  assert.is(result.tap, 'tsvmm0');
  assert.is(result.vnetHeaderSize, 12, 'the tap carries the virtio 1.x header');
  assert.equal(result.arpReply, {
    senderIp: '10.77.0.1',
    targetIp: '10.77.0.2',
    targetMac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
  });
  assert.equal(result.echoReply, { from: '10.77.0.1', seq: 1, data: 'tsvmm virtio-net' });
  assert.is(result.txFrames, 2);
  assert.ok(result.rxFrames >= 2);
  assert.is(result.txDropped, 0);
  assert.equal(result.failures, []);
});

test.after(() => {
  if (reason === null) execFileSync('ip', ['netns', 'del', namespace], { stdio: 'ignore' });
});

test.run();
