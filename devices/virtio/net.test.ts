import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, recordBytes } from '../../cpr/vmstate/vmstate.js';
import { close, read, write } from '../../src/sys/libc.js';
import { socketPair, SOCK_SEQPACKET } from '../../src/sys/socket.js';
import {
  VirtioNet,
  virtioNetState,
  parseMac,
  completeChecksum,
  NET_RECEIVEQ,
  NET_TRANSMITQ,
  NET_HDR_SIZE,
  NET_CFG_MAC,
  NET_CFG_STATUS,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  type VirtioNetState,
} from './net.js';
import { VIRTIO_ID_NET } from './types.js';
import { FakeTransport, readConfigBytes } from './testing/transport.js';
import { ethernetFrame, ipv4Checksum } from './testing/frames.js';

const fds: number[] = [];

function setup(
  options: { vnetHeader?: boolean; mergeable?: boolean; withoutFeatures?: bigint; state?: VirtioNetState } = {},
) {
  const [ours, peer] = socketPair({ type: SOCK_SEQPACKET, nonBlocking: true });
  fds.push(ours, peer);
  const state = options.state ?? newRecord(virtioNetState);
  const net = new VirtioNet(state, {
    fd: ours,
    mac: '52:54:00:ab:cd:ef',
    vnetHeader: options.vnetHeader,
    mergeableRxBuffers: options.mergeable,
  });
  if (!options.state) net.powerOn();
  const t = new FakeTransport(net, { withoutFeatures: options.withoutFeatures }).start();
  const rx = t.drivers[NET_RECEIVEQ];
  const tx = t.drivers[NET_TRANSMITQ];
  /** What the host side received (one packet), or null. */
  const hostReceive = (): Uint8Array | null => {
    const buf = new Uint8Array(70000);
    const n = read(peer, buf);
    return n > 0 ? buf.slice(0, n) : null;
  };
  const hostSend = (bytes: Uint8Array) => assert.is(write(peer, bytes), bytes.length);
  return { state, net, t, rx, tx, peer, hostReceive, hostSend };
}

const header = (fill: Partial<{ flags: number; gsoType: number; csumStart: number; csumOffset: number }> = {}) => {
  const h = new Uint8Array(NET_HDR_SIZE);
  const v = new DataView(h.buffer);
  h[0] = fill.flags ?? 0;
  h[1] = fill.gsoType ?? 0;
  v.setUint16(6, fill.csumStart ?? 0, true);
  v.setUint16(8, fill.csumOffset ?? 0, true);
  return h;
};
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const frame = (length: number, seed = 1) =>
  ethernetFrame({
    dst: parseMac('52:54:00:ab:cd:ef'),
    src: parseMac('02:00:00:00:00:01'),
    type: 0x88b5,
    payload: Uint8Array.from({ length: length - 14 }, (_, i) => (i * 13 + seed) & 0xff),
  });

test('virtio-net: features, MAC and link status in config space', () => {
  const { net } = setup();
  assert.is(net.deviceType, VIRTIO_ID_NET);
  assert.equal(net.queueMaxSizes, [256, 256]);
  for (const f of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF])
    assert.ok(net.deviceFeatures & (1n << f));
  assert.equal([...readConfigBytes(net, NET_CFG_MAC, 6)], [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
  assert.is(net.readConfig(NET_CFG_STATUS, 2), VIRTIO_NET_S_LINK_UP);
  assert.is(net.readConfig(NET_CFG_MAC, 4), 0xab005452);
  net.writeConfig();
  assert.not.ok(setup({ mergeable: false }).net.deviceFeatures & (1n << VIRTIO_NET_F_MRG_RXBUF));
  assert.throws(() => parseMac('52:54:00:12:34'), /bad MAC/);
  assert.equal([...parseMac('02-00-00-00-00-0A')], [2, 0, 0, 0, 0, 10]);
});

test('virtio-net: a transmitted chain (header + frame, any split) reaches the host as one packet', () => {
  const { tx, t, hostReceive, state } = setup();
  const f = frame(200);
  tx.add([{ data: header() }, { data: f.subarray(0, 50) }, { data: f.subarray(50) }]);
  tx.add([{ data: concat(header(), frame(60, 2)) }], { indirect: true });
  t.kick(NET_TRANSMITQ);
  assert.equal(hostReceive(), concat(header(), f));
  assert.equal(hostReceive(), concat(header(), frame(60, 2)));
  assert.is(hostReceive(), null);
  assert.equal(
    tx.takeUsed().map((e) => e.len),
    [0, 0],
  );
  assert.equal(t.takeInterrupts(), [NET_TRANSMITQ]);
  assert.is(state.txFrames, 2n);
});

test('virtio-net: without a vnet header on the fd, the header is stripped on transmit and made up on receive', () => {
  const { tx, rx, t, net, hostReceive, hostSend } = setup({ vnetHeader: false });
  tx.add([{ data: concat(header(), frame(64)) }]);
  t.kick(NET_TRANSMITQ);
  assert.equal(hostReceive(), frame(64));
  const buf = rx.add([{ length: 1526, write: true }]);
  hostSend(frame(100, 7));
  net.pollHost();
  assert.equal(rx.takeUsed(), [{ id: buf.head, len: NET_HDR_SIZE + 100 }]);
  const got = t.memory.read(buf.buffers[0].gpa, NET_HDR_SIZE + 100);
  assert.equal([...got.subarray(0, NET_HDR_SIZE)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 'zero header, num_buffers 1');
  assert.equal(got.subarray(NET_HDR_SIZE), frame(100, 7));
});

test('virtio-net: malformed transmit chains are dropped and counted, not sent', () => {
  const { tx, t, hostReceive, state } = setup();
  tx.add([{ data: new Uint8Array(5) }]); // shorter than the header
  tx.add([{ length: 64, write: true }]); // nothing readable
  t.kick(NET_TRANSMITQ);
  assert.is(hostReceive(), null);
  assert.is(state.txDropped, 2n);
  assert.is(tx.takeUsed().length, 2);
});

test('virtio-net: a received frame lands in a receive buffer with num_buffers 1 and an interrupt', () => {
  const { rx, t, net, hostSend, state } = setup();
  const buf = rx.add([{ length: 1526, write: true }]);
  rx.add([{ length: 1526, write: true }]);
  hostSend(concat(header(), frame(300)));
  assert.ok(net.pollHost(), 'a buffer is left: more can be taken');
  assert.equal(rx.takeUsed(), [{ id: buf.head, len: NET_HDR_SIZE + 300 }]);
  const got = t.memory.read(buf.buffers[0].gpa, NET_HDR_SIZE + 300);
  assert.is(new DataView(got.buffer).getUint16(10, true), 1);
  assert.equal(got.subarray(NET_HDR_SIZE), frame(300));
  assert.equal(t.takeInterrupts(), [NET_RECEIVEQ]);
  assert.is(state.rxFrames, 1n);
});

test('virtio-net: with no receive buffers frames stay on the host side until the driver adds some', () => {
  const { rx, t, net, hostSend, state } = setup();
  hostSend(concat(header(), frame(80, 1)));
  hostSend(concat(header(), frame(90, 2)));
  assert.is(net.pollHost(), false, 'no room: the machine may stop watching the fd');
  assert.is(state.rxFrames, 0n);
  assert.is(state.rxPendingLength, 0, 'nothing was read');
  const a = rx.add([{ length: 1526, write: true }]);
  const b = rx.add([{ length: 1526, write: true }]);
  t.kick(NET_RECEIVEQ); // the driver's notification delivers what waits
  assert.equal(rx.takeUsed(), [
    { id: a.head, len: 92 },
    { id: b.head, len: 102 },
  ]);
  assert.equal(t.memory.read(b.buffers[0].gpa + NET_HDR_SIZE, 90), frame(90, 2));
});

test('virtio-net: with MRG_RXBUF a large frame spans several buffers and num_buffers says how many', () => {
  const { rx, t, net, hostSend } = setup();
  const bufs = [
    rx.add([{ length: 1000, write: true }]),
    rx.add([{ length: 1000, write: true }]),
    rx.add([{ length: 1000, write: true }]),
  ];
  hostSend(concat(header(), frame(1500)));
  net.pollHost();
  assert.equal(rx.takeUsed(), [
    { id: bufs[0].head, len: 1000 },
    { id: bufs[1].head, len: 512 },
  ]);
  const first = t.memory.read(bufs[0].buffers[0].gpa, 1000);
  assert.is(new DataView(first.buffer).getUint16(10, true), 2);
  assert.equal(concat(first.subarray(NET_HDR_SIZE), t.memory.read(bufs[1].buffers[0].gpa, 512)), frame(1500));
});

test('virtio-net: a frame that runs out of mergeable buffers waits in the record and survives a restore', () => {
  const { rx, t, net, hostSend, state } = setup();
  rx.add([{ length: 600, write: true }]);
  hostSend(concat(header(), frame(1400)));
  assert.is(net.pollHost(), false);
  assert.equal(rx.takeUsed(), [], 'the one buffer was given back');
  assert.is(state.rxPendingLength, NET_HDR_SIZE + 1400);
  // A new process restores the record and the rings (here: a second instance over a copy of the record).
  const restored = newRecord(virtioNetState);
  recordBytes(restored).set(recordBytes(state));
  const net2 = new VirtioNet(restored, { fd: net.hostFd, mac: net.mac });
  net2.activate(t);
  rx.add([{ length: 600, write: true }]);
  rx.add([{ length: 600, write: true }]);
  net2.notify(NET_RECEIVEQ);
  assert.equal(
    rx.takeUsed().map((e) => e.len),
    [600, 600, 212],
  );
  assert.is(restored.rxPendingLength, 0);
  assert.is(restored.rxFrames, 1n);
});

test('virtio-net: without MRG_RXBUF a frame larger than the buffer is dropped and the buffer kept', () => {
  const { rx, t, net, hostSend, state } = setup({ withoutFeatures: 1n << VIRTIO_NET_F_MRG_RXBUF });
  const buf = rx.add([{ length: 200, write: true }]);
  hostSend(concat(header(), frame(400)));
  hostSend(concat(header(), frame(100, 3)));
  net.pollHost();
  assert.equal(rx.takeUsed(), [{ id: buf.head, len: 112 }]);
  assert.is(state.rxDropped, 1n);
  assert.equal(t.memory.read(buf.buffers[0].gpa + NET_HDR_SIZE, 100), frame(100, 3));
});

test('virtio-net: a partial checksum from the host is completed; GSO frames are dropped', () => {
  const { rx, t, net, hostSend, state } = setup();
  // IPv4 + UDP with the UDP checksum left partial (the pseudo-header sum in the field), as CHECKSUM_PARTIAL.
  const udp = ethernetFrame({
    dst: parseMac('52:54:00:ab:cd:ef'),
    src: parseMac('02:00:00:00:00:01'),
    type: 0x0800,
    payload: new Uint8Array(20 + 8 + 5),
  });
  const ip = udp.subarray(14);
  ip.set([0x45, 0, 0, 33, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
  new DataView(ip.buffer, ip.byteOffset).setUint16(10, ipv4Checksum(ip.subarray(0, 20)));
  ip.set([0x30, 0x39, 0x00, 0x35, 0, 13, 0, 0, 104, 101, 108, 108, 111], 20); // ports 12345 → 53, "hello"
  const pseudo = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 13;
  new DataView(ip.buffer, ip.byteOffset).setUint16(26, pseudo);
  const expected = udp.slice();
  new DataView(expected.buffer).setUint16(14 + 26, 0);
  const full = ipv4Checksum(concat(Uint8Array.of(10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 13), expected.subarray(14 + 20)));
  new DataView(expected.buffer).setUint16(14 + 26, full);
  const buf = rx.add([{ length: 1526, write: true }]);
  rx.add([{ length: 1526, write: true }]);
  hostSend(concat(header({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 }), udp));
  hostSend(concat(header({ gsoType: 1 }), frame(100)));
  net.pollHost();
  assert.equal(
    rx.takeUsed().map((e) => e.len),
    [NET_HDR_SIZE + udp.length],
  );
  const got = t.memory.read(buf.buffers[0].gpa, NET_HDR_SIZE + udp.length);
  assert.is(got[0], 0, 'NEEDS_CSUM cleared');
  assert.equal(got.subarray(NET_HDR_SIZE), expected);
  assert.is(state.rxDropped, 1n, 'the GSO frame');
  assert.not.ok(completeChecksum(new Uint8Array(10), 8, 2), 'offsets beyond the frame are refused');
});

test('virtio-net: a downed link drops transmits, receives nothing and tells the driver', () => {
  const { tx, rx, t, net, hostSend, hostReceive, state } = setup();
  net.setLink(false);
  assert.is(t.configChanges, 1);
  assert.is(net.readConfig(NET_CFG_STATUS, 2), 0);
  tx.add([{ data: concat(header(), frame(60)) }]);
  t.kick(NET_TRANSMITQ);
  assert.is(hostReceive(), null);
  assert.is(state.txDropped, 1n);
  rx.add([{ length: 1526, write: true }]);
  hostSend(concat(header(), frame(60)));
  net.pollHost();
  assert.equal(rx.takeUsed(), []);
  net.setLink(true);
  net.pollHost();
  assert.is(rx.takeUsed().length, 1);
});

test('virtio-net: reset forgets a pending frame; a malformed receive chain fails the device', () => {
  const { rx, t, net, hostSend, state } = setup();
  rx.add([{ length: 100, write: true }]);
  hostSend(concat(header(), frame(500)));
  net.pollHost();
  assert.ok(state.rxPendingLength > 0);
  net.reset();
  assert.is(state.rxPendingLength, 0);
  net.activate(t);
  rx.pushHead(999);
  hostSend(concat(header(), frame(60)));
  assert.is(net.pollHost(), false);
  assert.is(t.failures.length, 1);
  assert.match(t.failures[0], /virtqueue 0: .*beyond the queue size/);
});

test.after(() => {
  for (const fd of fds) close(fd);
});

test.run();
