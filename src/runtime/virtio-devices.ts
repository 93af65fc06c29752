// The virtio back ends a machine can have, as device-table data: the spec each kind carries (host fds opened once by
// the main thread, chardev ids), its vmstate descriptor (transport + back end, one checkpoint section), its queue
// count (the machine allocates MSI vectors and notification eventfds before any thread builds the device), and how a
// thread builds the back end over its record.
import type { Descriptor, RecordInternals, StateArena } from '../../cpr/vmstate/vmstate.js';
import type { CharOut } from '../bus/types.js';
import { virtioPciDescriptor, type VirtioPciRecord } from '../../devices/virtio/pci-transport.js';
import type { VirtioBackend } from '../../devices/virtio/types.js';
import { VirtioBlk } from '../../devices/virtio/blk.js';
import { VirtioNet, virtioNetState, resetVirtioNet, type VirtioNetState } from '../../devices/virtio/net.js';
import {
  VirtioConsole,
  virtioConsoleState,
  resetVirtioConsole,
  type VirtioConsoleState,
} from '../../devices/virtio/console.js';
import { VirtioRng } from '../../devices/virtio/rng.js';
import type { VirtioPciPlacement } from './pci-devices.js';
import type { IoWatch } from '../bus/pci-types.js';
import { ByteRing, type ByteRingInit } from '../chardev/byte-ring.js';

/** The back end part of a 'virtio-pci' device spec: plain data (it crosses to every thread). */
export type VirtioBackendSpec =
  | { type: 'blk'; fd: number; readOnly: boolean; serial: string | null; sizeBytes: number }
  | { type: 'net'; fd: number; mac: string }
  | { type: 'rng' }
  | { type: 'console'; output: string; input: ByteRingInit };

export interface VirtioPciSpec {
  readonly kind: 'virtio-pci';
  readonly id: string;
  readonly placement: VirtioPciPlacement;
  readonly backend: VirtioBackendSpec;
}

/** A back end with no mutable state of its own (everything is in the transport's record or guest memory). */
const stateless = (name: string) => ({ name, version: 1, minVersion: 1, fields: [] }) as const satisfies Descriptor;

const backendDescriptors = {
  blk: stateless('virtio-blk'),
  net: virtioNetState,
  rng: stateless('virtio-rng'),
  console: virtioConsoleState,
} as const;

/** One descriptor per back end type, named as QEMU names the device ('virtio-blk-pci'…). */
export const virtioPciDescriptors = {
  blk: virtioPciDescriptor('virtio-blk-pci', backendDescriptors.blk),
  net: virtioPciDescriptor('virtio-net-pci', backendDescriptors.net),
  rng: virtioPciDescriptor('virtio-rng-pci', backendDescriptors.rng),
  console: virtioPciDescriptor('virtio-serial-pci', backendDescriptors.console),
} as const;

/** Virtqueues of each back end (QEMU's: blk one request queue, net rx+tx, console rx+tx without multiport, rng one). */
export const VIRTIO_QUEUE_COUNTS: Record<VirtioBackendSpec['type'], number> = { blk: 1, net: 2, rng: 1, console: 2 };

/** A virtio-pci device's record: the transport's part and the back end's. */
export type VirtioPciDeviceRecord = RecordInternals & { readonly transport: VirtioPciRecord; readonly device: unknown };

/** This thread's record of the device. */
export function virtioRecord(spec: VirtioPciSpec, arena: StateArena, offset: number): VirtioPciDeviceRecord {
  return arena.record(virtioPciDescriptors[spec.backend.type], offset) as unknown as VirtioPciDeviceRecord;
}

/** A thread's back end: `resetState` returns its record to power-on; `watches` is extra I/O-thread work. */
export interface BuiltBackend {
  readonly backend: VirtioBackend;
  resetState(): void;
  readonly watches?: readonly IoWatch[];
}

/**
 * Builds this thread's back end over its record. `id` is the device's (the group its I/O watches belong to, so a
 * queue notification re-arms them).
 */
export function createVirtioBackend(
  id: string,
  spec: VirtioBackendSpec,
  device: unknown,
  output: (id: string) => CharOut,
): BuiltBackend {
  switch (spec.type) {
    case 'blk':
      return {
        backend: new VirtioBlk({
          fd: spec.fd,
          readOnly: spec.readOnly,
          serial: spec.serial ?? undefined,
          sizeBytes: spec.sizeBytes,
        }),
        resetState: () => {},
      };
    case 'net': {
      const state = device as VirtioNetState;
      return { backend: new VirtioNet(state, { fd: spec.fd, mac: spec.mac }), resetState: () => resetVirtioNet(state) };
    }
    case 'rng':
      return { backend: new VirtioRng(), resetState: () => {} };
    case 'console': {
      // Host input reaches the I/O thread through a ring the main thread fills (src/chardev/byte-ring.ts); it goes
      // into the receive queue as far as the driver's buffers allow, and the rest waits for the driver to add more.
      const state = device as VirtioConsoleState;
      const ring = ByteRing.attach(spec.input);
      const drain = () => {
        for (let bytes = ring.peek(); bytes.length > 0; bytes = ring.peek()) {
          const taken = backend.receive(bytes);
          ring.consume(taken);
          if (taken < bytes.length) break;
        }
      };
      const backend = new VirtioConsole(state, { out: output(spec.output), onInputSpace: drain });
      return {
        backend,
        resetState: () => resetVirtioConsole(state),
        watches: [{ name: `${id}/input`, fd: ring.fd, kind: 'eventfd', group: id, ready: drain }],
      };
    }
  }
}
