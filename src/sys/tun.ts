// TUN/TAP: the ioctl numbers and struct ifreq layout of <linux/if_tun.h> / <net/if.h> (checked against the headers
// by tun-abi.test.ts), and opening a tap device for virtio-net.
//
// A tap opened here carries Ethernet frames without the packet-information prefix (IFF_NO_PI) and, with a vnet
// header size, each frame is preceded by a struct virtio_net_hdr of that size (IFF_VNET_HDR + TUNSETVNETHDRSZ):
// 12 bytes is virtio 1.x's virtio_net_hdr_v1, so frames pass between the tap and the guest's rings unchanged.
// No offloads are enabled (no TUNSETOFFLOAD), so the kernel hands us only complete, checksummed frames.
import { open, close, ioctlPtr, O_RDWR, O_NONBLOCK, O_CLOEXEC } from './libc.js';
import { ioc, IOC_READ, IOC_WRITE } from './ioc.js';

/** The ioctl type (magic) byte of every TUN/TAP request: 'T'. */
const TUNIO = 'T'.charCodeAt(0);

export const TUNSETIFF = ioc(IOC_WRITE, TUNIO, 202, 4); // attach the fd to a tun/tap interface (struct ifreq *)
export const TUNGETFEATURES = ioc(IOC_READ, TUNIO, 207, 4); // IFF_* flags the driver supports (unsigned int *)
export const TUNSETOFFLOAD = ioc(IOC_WRITE, TUNIO, 208, 4); // TUN_F_* offloads we can take (unsigned int, by value)
export const TUNGETIFF = ioc(IOC_READ, TUNIO, 210, 4); // the attached interface's name and flags (struct ifreq *)
export const TUNGETVNETHDRSZ = ioc(IOC_READ, TUNIO, 215, 4); // vnet header size (int *)
export const TUNSETVNETHDRSZ = ioc(IOC_WRITE, TUNIO, 216, 4); // set the vnet header size, ≥ 10 (int *)

export const IFF_TUN = 0x0001; // layer-3 device: IP packets
export const IFF_TAP = 0x0002; // layer-2 device: Ethernet frames
export const IFF_NO_PI = 0x1000; // no struct tun_pi before each packet
export const IFF_VNET_HDR = 0x4000; // a struct virtio_net_hdr before each packet

export const TUN_F_CSUM = 0x01; // we accept frames with partial checksums
export const TUN_F_TSO4 = 0x02; // we accept TCPv4 segmentation offload
export const TUN_F_TSO6 = 0x04; // we accept TCPv6 segmentation offload

/** Interface name buffer, including the NUL. */
export const IFNAMSIZ = 16;
/** sizeof(struct ifreq) on x86-64. */
export const IFREQ_SIZE = 40;
/** offsetof(struct ifreq, ifr_flags) (the union after ifr_name). */
export const IFREQ_FLAGS_OFFSET = 16;

/** The virtio 1.x header (struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_*, num_buffers). */
export const VIRTIO_NET_HDR_V1_SIZE = 12;

export const TUN_DEVICE = '/dev/net/tun';

export interface TapDevice {
  /** Non-blocking, close-on-exec. The caller owns it. */
  readonly fd: number;
  /** The interface name the kernel chose or confirmed. */
  readonly name: string;
  /** Bytes of virtio_net_hdr before each frame (0: none). */
  readonly vnetHeaderSize: number;
}

/**
 * Opens (creating if needed) tap interface `name` ('' lets the kernel pick tapN). With `vnetHeaderSize` (default
 * 12) each frame read or written carries a virtio_net_hdr of that size; 0 disables the header.
 */
export function openTap(name: string, options: { vnetHeaderSize?: number } = {}): TapDevice {
  const vnetHeaderSize = options.vnetHeaderSize ?? VIRTIO_NET_HDR_V1_SIZE;
  const nameBytes = new TextEncoder().encode(name);
  if (nameBytes.length >= IFNAMSIZ) throw new RangeError(`tap name '${name}' is longer than ${IFNAMSIZ - 1} bytes`);
  const fd = open(TUN_DEVICE, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  try {
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(nameBytes, 0);
    new DataView(ifr.buffer).setUint16(
      IFREQ_FLAGS_OFFSET,
      IFF_TAP | IFF_NO_PI | (vnetHeaderSize ? IFF_VNET_HDR : 0),
      true,
    );
    ioctlPtr(fd, TUNSETIFF, ifr, 'TUNSETIFF');
    if (vnetHeaderSize) ioctlPtr(fd, TUNSETVNETHDRSZ, Int32Array.of(vnetHeaderSize), 'TUNSETVNETHDRSZ');
    const end = ifr.indexOf(0);
    return { fd, name: new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end)), vnetHeaderSize };
  } catch (e) {
    close(fd);
    throw e;
  }
}

/** The vnet header size the kernel uses for `fd` (TUNGETVNETHDRSZ). */
export function tapVnetHeaderSize(fd: number): number {
  const size = new Int32Array(1);
  ioctlPtr(fd, TUNGETVNETHDRSZ, size, 'TUNGETVNETHDRSZ');
  return size[0];
}
