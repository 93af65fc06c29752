// devices/virtio/net.ts — virtio-net (virtio 1.x, 5.1 "Network Device") over a tap device or any packet fd.
//
// Queues: receiveq (0) and transmitq (1); no control queue, no multiqueue. Offered: MAC (the address in config
// space), STATUS (link state in config space), and MRG_RXBUF unless disabled (a frame may span several receive
// buffers; `num_buffers` in its header says how many). No checksum or segmentation offloads are offered, so the guest
// sends complete frames, and the tap (no TUNSETOFFLOAD) hands us complete, checksummed ones.
//
// Every frame in a ring is preceded by a 12-byte struct virtio_net_hdr_v1 (VERSION_1 always has num_buffers). The
// host fd either carries the same header (a tap opened with IFF_VNET_HDR and TUNSETVNETHDRSZ 12: src/sys/tun.ts —
// the default), or plain frames (`vnetHeader: false`, e.g. a SOCK_SEQPACKET socket): the header is then stripped on
// transmit and a zeroed one is made up on receive.
//
// Transmit (notify(1), any thread): each chain's readable bytes are one header + frame, written to the fd with one
// write(2). Frames the fd refuses (EAGAIN, a tap that is down) are dropped and counted, as a NIC drops on a full
// link. Receive (pollHost, main thread, when the fd is readable; and notify(0) when the driver adds buffers): a frame
// is read only when a receive buffer is available — otherwise it stays in the tap (the kernel queues, then drops).
// A frame read but not deliverable at once (mergeable buffers ran out mid-frame) is kept in the record
// (`rxPending`) and delivered first when buffers arrive, so a checkpoint in between loses nothing.
//
// State (record): link state, the pending frame, counters. The fd, MAC and options are configuration.
import { bool, bytes, u32, u64, type Descriptor, type StateOf } from '../../cpr/vmstate/vmstate.js';
import { read as sysRead, write as sysWrite } from '../../src/sys/libc.js';
import { SysError } from '../../src/sys/errno.js';
import { forEachSegment, serveQueue, VirtqueueError } from './queue.js';
import {
  VIRTIO_ID_NET,
  readConfigImage,
  type DescriptorChain,
  type VirtQueue,
  type VirtioBackend,
  type VirtioBackendRegistration,
  type VirtioContext,
} from './types.js';

// ---- feature bits (5.1.3) ----------------------------------------------------------------------------------------
export const VIRTIO_NET_F_CSUM = 0n; // device handles partial checksums (not offered)
export const VIRTIO_NET_F_GUEST_CSUM = 1n; // driver handles partial checksums (not offered)
export const VIRTIO_NET_F_MAC = 5n; // mac is valid in config space
export const VIRTIO_NET_F_GUEST_TSO4 = 7n; // driver takes TSOv4 frames (not offered)
export const VIRTIO_NET_F_MRG_RXBUF = 15n; // a received frame may span several buffers
export const VIRTIO_NET_F_STATUS = 16n; // status is valid in config space
export const VIRTIO_NET_F_CTRL_VQ = 17n; // control queue (not offered)

export const VIRTIO_NET_S_LINK_UP = 1; // config status: link is up

// ---- struct virtio_net_hdr_v1 (5.1.6) ----------------------------------------------------------------------------
export const NET_HDR_SIZE = 12;
export const NET_HDR_FLAGS = 0; // u8
export const NET_HDR_GSO_TYPE = 1; // u8
export const NET_HDR_CSUM_START = 6; // le16
export const NET_HDR_CSUM_OFFSET = 8; // le16
export const NET_HDR_NUM_BUFFERS = 10; // le16
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1; // csum_start/csum_offset describe a checksum still to compute
export const VIRTIO_NET_HDR_GSO_NONE = 0;

// ---- configuration space (struct virtio_net_config, 5.1.4) -------------------------------------------------------
export const NET_CFG_MAC = 0; // u8[6]
export const NET_CFG_STATUS = 6; // le16
export const VIRTIO_NET_CONFIG_SIZE = 8; // mac + status (max_virtqueue_pairs and later need features not offered)

export const NET_RECEIVEQ = 0;
export const NET_TRANSMITQ = 1;
export const NET_QUEUE_SIZE = 256;
/** Largest header + frame accepted or received: a 64 KiB MTU, an Ethernet header and a VLAN tag. */
export const NET_MAX_PACKET = NET_HDR_SIZE + 65535 + 14 + 4;
/** Frames received per pollHost() call at most, so one busy tap cannot hold the main thread. */
export const NET_RX_BURST = 256;
/** QEMU's default MAC (52:54:00 is its locally administered prefix). */
export const DEFAULT_MAC = '52:54:00:12:34:56';

export const virtioNetState = {
  name: 'virtio-net',
  version: 1,
  minVersion: 1,
  fields: [
    bool('linkUp'),
    u32('rxPendingLength'), // bytes of header + frame in rxPending (0: none)
    bytes('rxPending', NET_MAX_PACKET, { lengthField: 'rxPendingLength' }),
    u64('rxFrames'),
    u64('txFrames'),
    u64('rxDropped'), // frames read from the host that the guest could not take (too big, GSO, no room at all)
    u64('txDropped'), // frames the guest sent that were malformed or that the host refused
  ],
} as const satisfies Descriptor;

export type VirtioNetState = StateOf<typeof virtioNetState>;

export interface VirtioNetOptions {
  /** The host side: a tap fd (non-blocking) or any fd that reads and writes whole frames. */
  readonly fd: number;
  /** MAC address: 6 bytes or 'xx:xx:xx:xx:xx:xx' (default 52:54:00:12:34:56). */
  readonly mac?: Uint8Array | string;
  /** The fd's frames carry a 12-byte virtio_net_hdr (default true: a tap from openTap). */
  readonly vnetHeader?: boolean;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  readonly mergeableRxBuffers?: boolean;
}

/** Parses 'xx:xx:xx:xx:xx:xx' (or takes 6 bytes). */
export function parseMac(mac: Uint8Array | string): Uint8Array {
  if (typeof mac !== 'string') {
    if (mac.length !== 6) throw new RangeError(`MAC address needs 6 bytes, got ${mac.length}`);
    return Uint8Array.from(mac);
  }
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p)))
    throw new RangeError(`bad MAC address '${mac}'`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

type Delivery = 'delivered' | 'dropped' | 'no-room';

export class VirtioNet implements VirtioBackend {
  readonly deviceType = VIRTIO_ID_NET;
  readonly queueMaxSizes = [NET_QUEUE_SIZE, NET_QUEUE_SIZE] as const;
  readonly deviceFeatures: bigint;
  readonly configSize = VIRTIO_NET_CONFIG_SIZE;
  readonly hostFd: number;
  readonly mac: Uint8Array;
  private readonly vnetHeader: boolean;
  private readonly config = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
  private readonly rxScratch = new Uint8Array(NET_MAX_PACKET);
  private readonly txScratch = new Uint8Array(NET_MAX_PACKET);
  private context: VirtioContext | null = null;

  constructor(
    private readonly state: VirtioNetState,
    options: VirtioNetOptions,
  ) {
    this.hostFd = options.fd;
    this.mac = parseMac(options.mac ?? DEFAULT_MAC);
    this.vnetHeader = options.vnetHeader ?? true;
    this.deviceFeatures =
      (1n << VIRTIO_NET_F_MAC) |
      (1n << VIRTIO_NET_F_STATUS) |
      ((options.mergeableRxBuffers ?? true) ? 1n << VIRTIO_NET_F_MRG_RXBUF : 0n);
    this.config.set(this.mac, NET_CFG_MAC);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    new DataView(this.config.buffer).setUint16(NET_CFG_STATUS, this.state.linkUp ? VIRTIO_NET_S_LINK_UP : 0, true);
    return readConfigImage(this.config, offset, size);
  }

  writeConfig(): void {
    // The MAC is read-only in virtio 1.x (changing it needs the control queue's CTRL_MAC_ADDR): writes are ignored.
  }

  activate(context: VirtioContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
    this.state.rxPendingLength = 0; // the guest's buffers are gone; a half-delivered frame is dropped with them
  }

  /** Power-on state: link up, nothing pending, counters zero (a device reset keeps the link and the counters). */
  powerOn(): void {
    const s = this.state;
    s.linkUp = true;
    s.rxPendingLength = 0;
    s.rxFrames = s.txFrames = s.rxDropped = s.txDropped = 0n;
  }

  /** Host-side link change (QMP set_link): updates the status field and tells the driver. */
  setLink(up: boolean): void {
    if (this.state.linkUp === up) return;
    this.state.linkUp = up;
    this.context?.configChanged();
  }

  notify(index: number): void {
    const context = this.context;
    if (!context) return;
    if (index === NET_TRANSMITQ) this.transmit(context);
    else if (index === NET_RECEIVEQ) this.receive(context);
  }

  pollHost(): boolean {
    const context = this.context;
    if (!context) return false;
    return this.receive(context);
  }

  // ---- transmit ----------------------------------------------------------------------------------------------

  private transmit(context: VirtioContext): void {
    serveQueue(context, NET_TRANSMITQ, (chain) => {
      if (!this.state.linkUp || chain.readableBytes < NET_HDR_SIZE || chain.readableBytes > NET_MAX_PACKET) {
        this.state.txDropped++;
        return 0;
      }
      const packet = this.txScratch.subarray(0, chain.readableBytes);
      forEachSegment(chain.readable, 0, packet.length, (gpa, n, at) => packet.set(context.memory.slice(gpa, n), at));
      const out = this.vnetHeader ? packet : packet.subarray(NET_HDR_SIZE);
      let sent: number;
      try {
        sent = sysWrite(this.hostFd, out, out.length);
      } catch (e) {
        if (!(e instanceof SysError)) throw e;
        sent = -e.errno; // EIO (tap down), EINVAL (a header the tap refuses), ENOBUFS …: the frame is lost
      }
      if (sent === out.length) this.state.txFrames++;
      else this.state.txDropped++;
      return 0; // nothing is written into a transmit buffer
    });
  }

  // ---- receive -----------------------------------------------------------------------------------------------

  /** Moves frames from the host into receive buffers; returns false when the guest has no room for more. */
  private receive(context: VirtioContext): boolean {
    const queue = context.queue(NET_RECEIVEQ);
    const s = this.state;
    let delivered = 0;
    let room = true;
    try {
      for (let burst = 0; burst < NET_RX_BURST; burst++) {
        let packet: Uint8Array;
        const pending = s.rxPendingLength > 0;
        if (pending) {
          packet = s.rxPending.subarray(0, s.rxPendingLength);
        } else {
          if (!s.linkUp) break; // a downed link receives nothing: frames stay in the tap
          if (!hasBuffer(queue)) {
            room = false;
            break;
          } // leave frames in the tap
          const n = this.readPacket();
          if (n === 0) break;
          packet = this.rxScratch.subarray(0, n);
        }
        const result = this.deliver(context, queue, packet);
        if (result === 'no-room') {
          if (!pending) {
            s.rxPending.set(packet);
            s.rxPendingLength = packet.length;
          }
          room = false;
          break;
        }
        if (pending) s.rxPendingLength = 0;
        if (result === 'delivered') {
          s.rxFrames++;
          delivered++;
        } else s.rxDropped++;
      }
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      context.fail(e.message);
      return false;
    }
    if (delivered > 0 && queue.needsInterrupt()) context.interrupt(NET_RECEIVEQ);
    return room;
  }

  /** Reads one packet (header + frame) into rxScratch; returns its length, 0 if none is waiting. */
  private readPacket(): number {
    const into = this.vnetHeader ? this.rxScratch : this.rxScratch.subarray(NET_HDR_SIZE);
    let n: number;
    try {
      n = sysRead(this.hostFd, into, into.length);
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
      return 0; // the host side failed (a tap that went away): nothing to receive
    }
    if (n <= 0) return 0; // -EAGAIN: nothing waiting; 0: the peer closed
    if (this.vnetHeader) {
      return n < NET_HDR_SIZE ? 0 : n;
    }
    this.rxScratch.fill(0, 0, NET_HDR_SIZE);
    return n + NET_HDR_SIZE;
  }

  /**
   * Puts one packet into receive buffers: one chain, or with MRG_RXBUF as many as it needs. 'no-room' gives back
   * every chain it took (the packet can be retried); 'dropped' means the guest can never take it.
   */
  private deliver(context: VirtioContext, queue: VirtQueue, packet: Uint8Array): Delivery {
    if (!this.fixHeader(packet)) return 'dropped';
    const mergeable = (context.features & (1n << VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
    const chains: DescriptorChain[] = [];
    let room = 0;
    while (room < packet.length) {
      if ((!mergeable && chains.length === 1) || chains.length >= queue.size) {
        queue.rewind(chains.length);
        return 'dropped'; // larger than a single buffer, or than the whole ring
      }
      const chain = queue.pop();
      if (!chain) {
        queue.rewind(chains.length);
        return 'no-room';
      }
      chains.push(chain);
      room += chain.writableBytes;
    }
    new DataView(packet.buffer, packet.byteOffset).setUint16(NET_HDR_NUM_BUFFERS, chains.length, true);
    let offset = 0;
    for (const chain of chains) {
      const n = queue.writeTo(chain, 0, packet.subarray(offset));
      queue.push(chain, n);
      offset += n;
    }
    return 'delivered';
  }

  /**
   * Makes the header one this driver may see: no offload was negotiated, so a partial checksum is completed here
   * (as QEMU does), a GSO frame cannot be delivered, and every offload field reads 0. False: drop the frame.
   */
  private fixHeader(packet: Uint8Array): boolean {
    if (packet.length < NET_HDR_SIZE) return false;
    if (packet[NET_HDR_GSO_TYPE] !== VIRTIO_NET_HDR_GSO_NONE) return false;
    if (packet[NET_HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      const v = new DataView(packet.buffer, packet.byteOffset, packet.length);
      if (
        !completeChecksum(
          packet.subarray(NET_HDR_SIZE),
          v.getUint16(NET_HDR_CSUM_START, true),
          v.getUint16(NET_HDR_CSUM_OFFSET, true),
        )
      )
        return false;
    }
    packet.fill(0, 0, NET_HDR_NUM_BUFFERS);
    return true;
  }
}

/** Whether a receive buffer is available (without consuming it). */
function hasBuffer(queue: VirtQueue): boolean {
  if (!queue.pop()) return false;
  queue.rewind(1);
  return true;
}

/**
 * Completes a partial checksum (CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the Internet checksum of
 * frame[start..] goes at start + offset). False if the offsets do not fit the frame.
 */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): boolean {
  const at = start + offset;
  if (start >= frame.length || at + 2 > frame.length) return false;
  let sum = 0;
  for (let i = start; i + 1 < frame.length; i += 2) sum += (frame[i] << 8) | frame[i + 1];
  if ((frame.length - start) & 1) sum += frame[frame.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const checksum = ~sum & 0xffff;
  frame[at] = checksum >> 8;
  frame[at + 1] = checksum & 0xff;
  return true;
}

/** The back-end part of a virtio-net-pci spec: the tap the machine opened, and the guest's MAC. */
export interface VirtioNetSpec {
  readonly type: 'net';
  readonly fd: number;
  readonly mac: string;
}

/** -device virtio-net-pci,netdev=… over -netdev tap: receive and transmit queues (no control queue). */
export const virtioNetBackend: VirtioBackendRegistration<VirtioNetSpec, VirtioNetState> = {
  type: 'net',
  pciName: 'virtio-net-pci',
  state: virtioNetState,
  queues: 2,
  create: (state, _env, spec) => ({ backend: new VirtioNet(state, { fd: spec.fd, mac: spec.mac }) }),
};
