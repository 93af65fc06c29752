// The seam between the virtio-pci transport (devices/virtio/pci-transport.ts: capabilities, feature negotiation,
// status, queue configuration, MSI-X) and the virtio device back ends (blk, net, console, rng). A back end knows
// nothing of PCI: it sees its queues, guest memory and a way to interrupt the driver.
//
// Threads: a back end runs on whichever thread the machine chooses (the I/O thread for queue notifications and
// host-side events, a vCPU thread for config-space accesses), always under the machine lock. Like every device,
// its mutable state lives in a vmstate record (see cpr/vmstate/vmstate.ts); host resources (an image file's fd, a tap fd)
// are configuration, re-opened by a new process.
import type { Descriptor } from '../../cpr/vmstate/vmstate.js';
import type { IoWatch } from '../../src/bus/pci-types.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import type { DeviceEnvironment } from '../registration.js';

/** Virtio device types (virtio 1.x, 5 "Device Types"). */
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_RNG = 4;

/** Feature bits the transport owns (virtio 1.x, 6 "Reserved Feature Bits"). */
export const VIRTIO_F_RING_INDIRECT_DESC = 28n;
export const VIRTIO_F_RING_EVENT_IDX = 29n;
export const VIRTIO_F_VERSION_1 = 32n;

/** A guest-physical byte range of a descriptor, already checked to lie inside guest RAM. */
export interface GuestBuffer {
  readonly gpa: number;
  readonly length: number;
}

/**
 * One available descriptor chain, validated (every address and length inside RAM, no loops, indirect tables well
 * formed, readable buffers before writable ones). `head` identifies it when it is returned with push().
 */
export interface DescriptorChain {
  readonly head: number;
  /** Driver → device buffers, in order. */
  readonly readable: readonly GuestBuffer[];
  /** Device → driver buffers, in order. */
  readonly writable: readonly GuestBuffer[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/** A split virtqueue as a back end uses it. */
export interface VirtQueue {
  readonly index: number;
  readonly size: number;
  /**
   * The next available chain, or null when the driver has made none available (or the queue is not enabled). A
   * malformed chain throws a VirtqueueError (devices/virtio/queue.ts); back ends catch it and call
   * `context.fail(error.message)` (see serveQueue), so the device is marked DEVICE_NEEDS_RESET and the VMM goes on.
   * With EVENT_IDX, pop() also publishes avail_event (a null result re-arms the driver's kick).
   */
  pop(): DescriptorChain | null;
  /**
   * Gives the last `count` popped chains back unused (they are not pushed; the next pop() returns them again).
   * For a back end that took buffers it then could not fill (virtio-net: no frame waiting, or a merged frame that
   * did not fit).
   */
  rewind(count: number): void;
  /**
   * Returns a chain to the driver with the number of bytes written into its writable buffers (clamped to
   * 0..writableBytes). The used element is written before the used index.
   */
  push(chain: DescriptorChain, written: number): void;
  /**
   * After one or more pushes: whether the driver wants an interrupt now (VIRTQ_AVAIL_F_NO_INTERRUPT without
   * EVENT_IDX, the used_event rule with it). False when nothing was pushed since the last call.
   */
  needsInterrupt(): boolean;
  /** Reads the chain's readable bytes from `offset` into a new array (bounded by `max`). */
  readFrom(chain: DescriptorChain, offset: number, max: number): Uint8Array;
  /** Writes into the chain's writable buffers from `offset`; returns how many bytes fit. */
  writeTo(chain: DescriptorChain, offset: number, bytes: Uint8Array): number;
}

/** What the transport gives a back end once the driver has set DRIVER_OK. */
export interface VirtioContext {
  readonly memory: GuestMemory;
  /** Features both sides agreed on (device-specific and transport bits). */
  readonly features: bigint;
  queue(index: number): VirtQueue;
  /** Interrupt the driver for queue `index` (its MSI-X vector, or INTx with ISR bit 0). */
  interrupt(index: number): void;
  /** The device configuration changed (ISR bit 1 / the config MSI-X vector). */
  configChanged(): void;
  /** Something the guest did cannot be handled: set DEVICE_NEEDS_RESET and stop using the queues. */
  fail(reason: string): void;
  /**
   * Runs slow host I/O (a disk read, write or flush) with the machine lock released, so vCPUs are not held up by
   * it. `io` may touch only guest RAM and the back end's own host fd: no queue, no record writes. Returns false
   * when the device was reset or deactivated meanwhile: the request must then be dropped, not pushed (throw
   * QueueAbandoned). An exception from `io` is rethrown once the lock is held again (unless the device went away).
   */
  outsideLock(io: () => void): boolean;
  /**
   * True once the thread serving the queues has been asked to park (a pause, a checkpoint, a reset): long work
   * stops at its next safe point — between chains, or between pieces of a request's host I/O (throw QueueYield) —
   * so a guest cannot keep the VMM from stopping it. Safe to call inside outsideLock's `io`.
   */
  parkRequested(): boolean;
  /** Queue `index` still has chains this turn left (bounded work, or a park): serve it again in a later turn. */
  serveLater(index: number): void;
}

/** A virtio device back end. */
export interface VirtioBackend {
  readonly deviceType: number;
  /** How many virtqueues and the largest size each may have. */
  readonly queueMaxSizes: readonly number[];
  /** Device-specific feature bits offered (the transport adds VERSION_1, RING_INDIRECT_DESC, RING_EVENT_IDX). */
  readonly deviceFeatures: bigint;
  /** Bytes of device-specific configuration space. */
  readonly configSize: number;
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /**
   * The driver set DRIVER_OK (or the state was restored with it set): start using the queues. Called on every
   * instance that will serve the device (one per thread) and again after a restore, so it only keeps the context
   * and never changes guest-visible or recorded state.
   */
  activate(context: VirtioContext): void;
  /**
   * Device reset (status written 0, or machine reset): forget the context, return the back end's own record to
   * power-on state. The transport resets the queue records (resetVirtqueueState).
   */
  reset(): void;
  /**
   * Machine reset only, before the device reset: the record fields a device reset keeps (virtio-net's link state and
   * counters) back to their power-on values. Absent when a device reset already covers everything.
   */
  powerOn?(): void;
  /**
   * The driver notified queue `index`: process what it made available. Never throws for anything the guest did: a
   * malformed request fails that request (a status byte) or the device (`context.fail`).
   */
  notify(index: number): void;
  /**
   * A host fd whose readability means host-side input for the device (virtio-net: the tap). The machine watches it
   * and calls pollHost(). Optional.
   */
  readonly hostFd?: number;
  /**
   * Main thread: host-side input may be pending (the hostFd became readable). Returns whether the device can take
   * more now; false means the driver has no room (no receive buffers) — the machine may stop watching hostFd until
   * the next notify() of the device, so a level-triggered fd does not spin. Optional.
   */
  pollHost?(): boolean;
}

/**
 * A little-endian read of `size` bytes at `offset` from a device configuration image (the layout of the device's
 * virtio_*_config struct). Bytes beyond the image read as 0, so any driver access is answered and none throws.
 */
export function readConfigImage(image: Uint8Array, offset: number, size: 1 | 2 | 4): number {
  let value = 0;
  for (let i = size - 1; i >= 0; i--) {
    const at = offset + i;
    value = value * 256 + (at >= 0 && at < image.length ? image[at] : 0);
  }
  return value;
}

/** A back end as a thread built it for the virtio-pci transport. */
export interface BuiltBackend {
  readonly backend: VirtioBackend;
  /** Extra I/O-thread work besides the queue notifications and `hostFd` (a console's host input). */
  readonly watches?: readonly IoWatch[];
}

/**
 * One kind of virtio back end, as devices/virtio/virtio-pci.ts lists them: `Spec` is the back-end part of a
 * 'virtio-pci' device spec (plain data; host fds the machine opened), `State` its part of the device's record.
 */
export interface VirtioBackendRegistration<Spec extends { readonly type: string }, State> {
  readonly type: Spec['type'];
  /** QEMU's name of the PCI device ('virtio-blk-pci'): the checkpoint section of the whole device. */
  readonly pciName: string;
  /** The back end's own record (an empty descriptor when it keeps none). */
  readonly state: Descriptor;
  /** Virtqueues: the machine gives the device one MSI vector and one notification eventfd per queue. */
  readonly queues: number;
  /** This thread's back end over its part of the record. `id` is the device's (its I/O watches' group). */
  create(state: State, env: DeviceEnvironment, spec: Spec, id: string): BuiltBackend;
}
