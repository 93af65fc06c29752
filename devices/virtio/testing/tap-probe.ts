// Run inside a fresh network namespace (`ip netns exec NS node tap-probe.js`) by net-tap.test.ts: creates a real
// tap through /dev/net/tun (src/sys/tun.ts), gives the kernel's side an address, and plays a guest through the
// virtio-net back end with the fake transport: an ARP request and an ICMP echo request go out through the transmit
// queue; the kernel's ARP reply and echo reply must come back through the receive queue. Prints one JSON line.
import { execFileSync } from 'node:child_process';
import { newRecord } from '../../../cpr/vmstate/vmstate.js';
import { close } from '../../../src/sys/libc.js';
import { openTap, tapVnetHeaderSize } from '../../../src/sys/tun.js';
import { VirtioNet, virtioNetState, parseMac, NET_HDR_SIZE, NET_RECEIVEQ, NET_TRANSMITQ } from '../net.js';
import { FakeTransport } from './transport.js';
import { arpRequest, icmpEchoRequest, ip4, parseArpReply, parseIcmpEchoReply } from './frames.js';

const HOST_IP = '10.77.0.1';
const GUEST_IP = '10.77.0.2';
const GUEST_MAC = parseMac('52:54:00:12:34:56');
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const tap = openTap('tsvmm0');
const sh = (...args: string[]) => execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
sh('ip', 'link', 'set', 'lo', 'up');
sh('ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', tap.name);
sh('ip', 'link', 'set', tap.name, 'up');

const state = newRecord(virtioNetState);
const net = new VirtioNet(state, { fd: tap.fd, mac: GUEST_MAC });
net.powerOn();
const t = new FakeTransport(net).start();
const rx = t.drivers[NET_RECEIVEQ];
const tx = t.drivers[NET_TRANSMITQ];
const buffers = new Map<number, number>(); // head → gpa
const post = () => {
  const b = rx.add([{ length: 1526, write: true }]);
  buffers.set(b.head, b.buffers[0].gpa);
};
for (let i = 0; i < 16; i++) post();

const send = (frame: Uint8Array) => {
  tx.add([{ data: new Uint8Array(NET_HDR_SIZE) }, { data: frame }]);
  t.kick(NET_TRANSMITQ);
};

/** Polls the tap until `match` accepts a received frame (other traffic — IPv6 router solicitations — is skipped). */
function await_<T>(match: (frame: Uint8Array) => T | null, ms = 3000): { found: T | null; seen: number } {
  let seen = 0;
  for (const end = Date.now() + ms; Date.now() < end; sleep(5)) {
    net.pollHost();
    for (const e of rx.takeUsed()) {
      seen++;
      const gpa = buffers.get(e.id)!;
      const packet = t.memory.read(gpa, e.len);
      post();
      const hit = match(packet.subarray(NET_HDR_SIZE));
      if (hit) return { found: hit, seen };
    }
  }
  return { found: null, seen };
}

send(arpRequest(GUEST_MAC, ip4(GUEST_IP), ip4(HOST_IP)));
const arp = await_((f) => {
  const r = parseArpReply(f);
  return r && r.senderIp.join('.') === HOST_IP ? r : null;
});
const hostMac = arp.found?.senderMac;
let echo: ReturnType<typeof parseIcmpEchoReply> = null;
if (hostMac) {
  const data = new TextEncoder().encode('tsvmm virtio-net');
  send(
    icmpEchoRequest({
      srcMac: GUEST_MAC,
      dstMac: hostMac,
      srcIp: ip4(GUEST_IP),
      dstIp: ip4(HOST_IP),
      id: 0x7473,
      seq: 1,
      data,
    }),
  );
  echo = await_((f) => {
    const r = parseIcmpEchoReply(f);
    return r && r.id === 0x7473 ? r : null;
  }).found;
}

console.log(
  JSON.stringify({
    tap: tap.name,
    vnetHeaderSize: tapVnetHeaderSize(tap.fd),
    arpReply: arp.found
      ? {
          senderIp: arp.found.senderIp.join('.'),
          targetIp: arp.found.targetIp.join('.'),
          targetMac: [...arp.found.targetMac],
        }
      : null,
    echoReply: echo ? { from: echo.from.join('.'), seq: echo.seq, data: new TextDecoder().decode(echo.data) } : null,
    txFrames: Number(state.txFrames),
    rxFrames: Number(state.rxFrames),
    txDropped: Number(state.txDropped),
    failures: t.failures,
  }),
);
close(tap.fd);
