// Building and reading the few Ethernet frames the virtio-net tests send: raw frames, ARP requests, ICMP echo
// requests, and the Internet checksum (RFC 1071) they need.

export const ETH_P_IPV4 = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_HEADER = 14;

export function ethernetFrame(f: { dst: Uint8Array; src: Uint8Array; type: number; payload: Uint8Array }): Uint8Array {
  const out = new Uint8Array(ETH_HEADER + f.payload.length);
  out.set(f.dst, 0);
  out.set(f.src, 6);
  out[12] = f.type >> 8;
  out[13] = f.type & 0xff;
  out.set(f.payload, ETH_HEADER);
  return out;
}

/** The Internet checksum of `bytes` (ones' complement of the ones' complement sum of 16-bit big-endian words). */
export function ipv4Checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length & 1) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const ip4 = (text: string): Uint8Array => Uint8Array.from(text.split('.').map(Number));
const BROADCAST = new Uint8Array(6).fill(0xff);

/** ARP "who has targetIp, tell senderIp" (RFC 826, Ethernet/IPv4). */
export function arpRequest(senderMac: Uint8Array, senderIp: Uint8Array, targetIp: Uint8Array): Uint8Array {
  const arp = new Uint8Array(28);
  arp.set([0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, sizes, opcode 1 (request)
  arp.set(senderMac, 8);
  arp.set(senderIp, 14);
  arp.set(targetIp, 24);
  return ethernetFrame({ dst: BROADCAST, src: senderMac, type: ETH_P_ARP, payload: arp });
}

export interface ArpReply {
  senderMac: Uint8Array;
  senderIp: Uint8Array;
  targetMac: Uint8Array;
  targetIp: Uint8Array;
}

/** The ARP reply in `frame`, or null. */
export function parseArpReply(frame: Uint8Array): ArpReply | null {
  if (frame.length < ETH_HEADER + 28 || ((frame[12] << 8) | frame[13]) !== ETH_P_ARP) return null;
  const arp = frame.subarray(ETH_HEADER);
  if (((arp[6] << 8) | arp[7]) !== 2) return null;
  return {
    senderMac: arp.slice(8, 14),
    senderIp: arp.slice(14, 18),
    targetMac: arp.slice(18, 24),
    targetIp: arp.slice(24, 28),
  };
}

/** An ICMP echo request in an IPv4 packet in an Ethernet frame, every checksum filled in. */
export function icmpEchoRequest(o: {
  srcMac: Uint8Array;
  dstMac: Uint8Array;
  srcIp: Uint8Array;
  dstIp: Uint8Array;
  id: number;
  seq: number;
  data: Uint8Array;
}): Uint8Array {
  const icmp = new Uint8Array(8 + o.data.length);
  icmp.set([8, 0, 0, 0, o.id >> 8, o.id & 0xff, o.seq >> 8, o.seq & 0xff]);
  icmp.set(o.data, 8);
  const c = ipv4Checksum(icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  const ip = new Uint8Array(20 + icmp.length);
  ip.set([0x45, 0, ip.length >> 8, ip.length & 0xff, 0, 1, 0x40, 0, 64, 1, 0, 0]); // DF, TTL 64, protocol ICMP
  ip.set(o.srcIp, 12);
  ip.set(o.dstIp, 16);
  const h = ipv4Checksum(ip.subarray(0, 20));
  ip[10] = h >> 8;
  ip[11] = h & 0xff;
  ip.set(icmp, 20);
  return ethernetFrame({ dst: o.dstMac, src: o.srcMac, type: ETH_P_IPV4, payload: ip });
}

/** { id, seq, data } of an ICMP echo reply in `frame` whose IP and ICMP checksums verify, or null. */
export function parseIcmpEchoReply(
  frame: Uint8Array,
): { id: number; seq: number; data: Uint8Array; from: Uint8Array } | null {
  if (frame.length < ETH_HEADER + 28 || ((frame[12] << 8) | frame[13]) !== ETH_P_IPV4) return null;
  const ip = frame.subarray(ETH_HEADER);
  const ihl = (ip[0] & 0x0f) * 4;
  const total = (ip[2] << 8) | ip[3];
  if (ip[9] !== 1 || total > ip.length || ipv4Checksum(ip.subarray(0, ihl)) !== 0) return null;
  const icmp = ip.subarray(ihl, total);
  if (icmp[0] !== 0 || ipv4Checksum(icmp) !== 0) return null;
  return { id: (icmp[4] << 8) | icmp[5], seq: (icmp[6] << 8) | icmp[7], data: icmp.slice(8), from: ip.slice(12, 16) };
}
