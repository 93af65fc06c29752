// virtio-net (devices/virtio/net.ts) over guest RAM the fuzzer writes (support/virtio-ram.ts), its host side a
// SOCK_SEQPACKET pair: frames arrive from the peer between kicks and what the guest sends is drained.
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { VirtioNet, virtioNetState } from '../../devices/virtio/net.js';
import { read, write } from '../../src/sys/libc.js';
import { SOCK_SEQPACKET, socketPair } from '../../src/sys/socket.js';
import { ramSeed, serveFromRam } from '../support/virtio-ram.js';

export const instrumented = ['devices/virtio/net.js', 'devices/virtio/queue.js'];

let sockets: [number, number] | null = null;
const drain = new Uint8Array(70000);
const FRAME = Uint8Array.from({ length: 1514 }, (_, i) => i & 0xff);

function net(mergeable: boolean): VirtioNet {
  sockets ??= socketPair({ type: SOCK_SEQPACKET, nonBlocking: true });
  const n = new VirtioNet(newRecord(virtioNetState), { fd: sockets[0], mergeableRxBuffers: mergeable });
  n.powerOn();
  return n;
}

export function fuzz(data: Uint8Array): void {
  const n = net(((data[0] ?? 0) & 0x80) !== 0);
  const peer = sockets![1];
  serveFromRam(
    {
      backend: n,
      host(control) {
        if (control & 1) write(peer, FRAME.subarray(0, 14 + (control & 6) * 200));
        n.pollHost();
        while (read(peer, drain) > 0) {
          /* what the guest sent */
        }
      },
    },
    data,
  );
  while (read(sockets![0], drain) > 0) {
    /* a frame this input left unread must not reach the next */
  }
}

export const seeds = (): Uint8Array[] => {
  const hdr = new Uint8Array(12);
  return [
    ramSeed(net(true), 0x85, [
      [0, [{ length: 1526, write: true }]],
      [1, [{ data: hdr }, { data: FRAME.subarray(0, 60) }]],
    ]),
    ramSeed(net(false), 0x05, [
      [
        0,
        [
          { length: 12, write: true },
          { length: 1514, write: true },
        ],
        true,
      ],
      [1, [{ data: new Uint8Array([...hdr, ...FRAME.subarray(0, 42)]) }]],
    ]),
  ];
};
