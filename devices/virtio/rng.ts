// devices/virtio/rng.ts — virtio-rng / entropy device (virtio 1.x, 5.4 "Entropy Device").
//
// One request queue of device-writable buffers; the device fills them with random bytes from the host (node:crypto
// randomFillSync: the kernel's getrandom) and returns how many it wrote. At most `requestMax` bytes per request
// (default 64 KiB): the spec lets the device return fewer bytes than asked, and the bound keeps one request from
// holding the machine lock long. No configuration space, no feature bits, no state of its own (so no vmstate record).
import { randomFillSync } from 'node:crypto';
import type { Descriptor } from '../../cpr/vmstate/vmstate.js';
import { forEachSegment, serveQueue } from './queue.js';
import { VIRTIO_ID_RNG, type VirtioBackend, type VirtioBackendRegistration, type VirtioContext } from './types.js';

export const RNG_QUEUE_SIZE = 256;
export const RNG_REQUEST_MAX = 64 << 10;

export interface VirtioRngOptions {
  /** Bytes per request at most (default RNG_REQUEST_MAX). */
  readonly requestMax?: number;
  /** The entropy source (default crypto.randomFillSync); tests may inject one. */
  readonly fill?: (into: Uint8Array) => void;
}

export class VirtioRng implements VirtioBackend {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueMaxSizes = [RNG_QUEUE_SIZE] as const;
  readonly deviceFeatures = 0n;
  readonly configSize = 0;
  private readonly requestMax: number;
  private readonly fill: (into: Uint8Array) => void;
  private context: VirtioContext | null = null;

  constructor(options: VirtioRngOptions = {}) {
    this.requestMax = options.requestMax ?? RNG_REQUEST_MAX;
    this.fill =
      options.fill ??
      ((into) => {
        randomFillSync(into);
      });
  }

  readConfig(): number {
    return 0;
  }
  writeConfig(): void {}

  activate(context: VirtioContext): void {
    this.context = context;
  }
  reset(): void {
    this.context = null;
  }

  notify(index: number): void {
    const context = this.context;
    if (!context || index !== 0) return;
    serveQueue(context, 0, (chain) => {
      // A request with readable buffers is not one the spec allows, but nothing is read from them: only the
      // writable part is filled.
      const length = Math.min(chain.writableBytes, this.requestMax);
      return forEachSegment(chain.writable, 0, length, (gpa, n) => this.fill(context.memory.slice(gpa, n)));
    });
  }
}

/** The back end keeps no record of its own. */
export const virtioRngState = {
  name: 'virtio-rng',
  version: 1,
  minVersion: 1,
  fields: [],
} as const satisfies Descriptor;

/** The back-end part of a virtio-rng-pci spec: nothing to configure. */
export interface VirtioRngSpec {
  readonly type: 'rng';
}

/** -device virtio-rng-pci: one request queue, filled from the host's getrandom. */
export const virtioRngBackend: VirtioBackendRegistration<VirtioRngSpec, unknown> = {
  type: 'rng',
  pciName: 'virtio-rng-pci',
  state: virtioRngState,
  queues: 1,
  create: () => ({ backend: new VirtioRng() }),
};
