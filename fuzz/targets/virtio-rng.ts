// virtio-rng (devices/virtio/rng.ts) over guest RAM the fuzzer writes (support/virtio-ram.ts).
import { VirtioRng } from '../../devices/virtio/rng.js';
import type { VirtioBackend } from '../../devices/virtio/types.js';
import { ramSeed, serveFromRam } from '../support/virtio-ram.js';

export const instrumented = ['devices/virtio/rng.js', 'devices/virtio/queue.js'];

export function fuzz(data: Uint8Array): void {
  serveFromRam({ backend: new VirtioRng() as VirtioBackend }, data);
}

export const seeds = (): Uint8Array[] => [
  ramSeed(new VirtioRng() as VirtioBackend, 0, [[0, [{ length: 64, write: true }]]]),
  ramSeed(new VirtioRng() as VirtioBackend, 1, [
    [
      0,
      [
        { length: 16, write: true },
        { length: 300, write: true },
      ],
      true,
    ],
    [0, [{ length: 1, write: true }]],
  ]),
];
