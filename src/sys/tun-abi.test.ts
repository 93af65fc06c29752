// The header check for src/sys/tun.ts: a C program prints, as <linux/if_tun.h> and <net/if.h> define them, every
// constant tun.ts exports and the struct ifreq layout it relies on; each must equal the TypeScript value. A
// constant added to tun.ts is checked automatically.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { abiMismatches, headerValues, type AbiCheck } from '../../test/support/abi-check.js';
import { testIf } from '../../test/support/skip.js';
import * as tun from './tun.js';

const noHeader = existsSync('/usr/include/linux/if_tun.h')
  ? null
  : '<linux/if_tun.h> is not installed (linux-libc-dev)';

/** Exported numbers that are not header macros, and the C expression each is checked against instead. */
const derived: Record<string, string> = {
  IFREQ_SIZE: 'sizeof(struct ifreq)',
  IFREQ_FLAGS_OFFSET: 'offsetof(struct ifreq, ifr_flags)',
  VIRTIO_NET_HDR_V1_SIZE: 'sizeof(struct virtio_net_hdr_v1)',
};

function checks(): AbiCheck[] {
  return Object.entries(tun)
    .filter(([name, value]) => /^[A-Z][A-Z0-9_]+$/.test(name) && typeof value === 'number')
    .map(([name, value]) => ({
      key: name,
      expected: BigInt(value as number),
      c: derived[name] ?? name,
      guard: name in derived ? undefined : name,
    }));
}

testIf(
  test,
  noHeader,
  'tun abi: every ioctl number, IFF_/TUN_F_ flag and the ifreq layout match the system headers',
  () => {
    const list = checks();
    const preamble = [
      '#include <sys/ioctl.h>',
      '#include <net/if.h>',
      '#include <linux/if_tun.h>',
      '#include <linux/virtio_net.h>',
    ];
    const wrong = abiMismatches(list, headerValues({ name: 'tun-abi', preamble, checks: list }));
    assert.equal(wrong, [], wrong.join('\n'));
    assert.ok(list.length >= 16, 'the check covers the constants');
  },
);

test('tun abi: the check covers the ioctls and flags virtio-net uses', () => {
  const keys = new Set(checks().map((c) => c.key));
  for (const k of [
    'TUNSETIFF',
    'TUNSETVNETHDRSZ',
    'TUNGETVNETHDRSZ',
    'IFF_TAP',
    'IFF_NO_PI',
    'IFF_VNET_HDR',
    'IFREQ_SIZE',
    'IFREQ_FLAGS_OFFSET',
    'IFNAMSIZ',
  ]) {
    assert.ok(keys.has(k), k);
  }
});

test.run();
