// A virtio back end served from guest RAM the fuzzer writes: the transport (the back-end tests' FakeTransport) sets
// up small queues at fixed addresses from 0x1000, then the input's bytes become RAM from address 0 on — descriptor
// tables, rings, indices, indirect tables and buffers alike — and the driver kicks every queue a few times while the
// host side does its part. The rules: the back end throws nothing (a broken ring fails the device, it does not
// throw), and no access of its reaches outside RAM (CheckedMemory records even one that was caught).
import type { VirtioBackend } from '../../devices/virtio/types.js';
import type { BufferSpec } from '../../devices/virtio/testing/driver.js';
import { FakeTransport } from '../../devices/virtio/testing/transport.js';
import { invariant } from './contract.js';

export const RAM_BYTES = 64 << 10;
/** Queue size the driver picks: small, so the rings sit in the input's first bytes. */
export const QUEUE_SIZE = 8;

export interface Serving {
  backend: VirtioBackend;
  /** The host side's turn after each round of kicks (input arriving, output drained), steered by `control`. */
  host?: (control: number) => void;
}

function transport(backend: VirtioBackend): FakeTransport {
  return new FakeTransport(backend, { ramSize: RAM_BYTES, queueSizes: backend.queueMaxSizes.map(() => QUEUE_SIZE) });
}

/** Input: one control byte (rounds of kicks, the host's moves), then RAM from address 0. */
export function serveFromRam(serving: Serving, data: Uint8Array): void {
  const control = data[0] ?? 0;
  const t = transport(serving.backend);
  t.memory.write(0, data.subarray(1, 1 + RAM_BYTES));
  t.start();
  for (let round = 0; round <= (control & 3); round++) {
    for (let q = 0; q < serving.backend.queueMaxSizes.length; q++) t.kick(q);
    serving.host?.(control >> (2 + round));
  }
  invariant(t.memory.violations.length === 0, `access outside RAM: ${JSON.stringify(t.memory.violations[0])}`);
}

/** A seed: the RAM a well-behaved driver leaves after adding `chains` (queue index, buffers), before it kicks. */
export function ramSeed(
  backend: VirtioBackend,
  control: number,
  chains: [number, BufferSpec[], boolean?][],
): Uint8Array {
  const t = transport(backend);
  for (const [q, specs, indirect] of chains) t.drivers[q].add(specs, { indirect: indirect ?? false });
  const used = RAM_BYTES - t.allocator.room;
  const out = new Uint8Array(1 + used);
  out[0] = control;
  out.set(t.memory.read(0, used), 1);
  return out;
}
