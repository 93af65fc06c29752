// A stand-in for the virtio-pci transport in back-end tests: owns the queue records, negotiates features (all the
// device offers, plus VERSION_1, RING_INDIRECT_DESC and RING_EVENT_IDX unless told otherwise), activates the back
// end and records what it asks of the transport (interrupts, config changes, failures). Together with DriverQueue
// it lets a test play the guest driver against a real back end over real rings.
import { newRecord } from '../../../cpr/vmstate/vmstate.js';
import { SplitQueue, resetVirtqueueState, virtqueueStateDescriptor, type VirtqueueState } from '../queue.js';
import {
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_RING_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  type VirtQueue,
  type VirtioBackend,
  type VirtioContext,
} from '../types.js';
import { CheckedMemory } from './checked-memory.js';
import { DriverQueue, GuestAllocator } from './driver.js';

export const TRANSPORT_FEATURES =
  (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_RING_INDIRECT_DESC) | (1n << VIRTIO_F_RING_EVENT_IDX);

export interface FakeTransportOptions {
  /** RAM size (default 4 MiB). */
  ramSize?: number;
  /** Negotiated features (default: everything the back end offers plus TRANSPORT_FEATURES). */
  features?: bigint;
  /** Drop these bits from the default negotiation. */
  withoutFeatures?: bigint;
  /** Queue sizes the driver chooses (default: each queue's maximum, capped at 64 to keep tests small). */
  queueSizes?: readonly number[];
  /**
   * A transport in a new process after a checkpoint: the guest's RAM (kept, as a shared RAM file is) and the queue
   * records loaded from the saved state. The driver side is the guest's, already in that RAM: no drivers are made.
   */
  restoredFrom?: { readonly memory: CheckedMemory; readonly records: VirtqueueState[] };
}

export class FakeTransport implements VirtioContext {
  readonly memory: CheckedMemory;
  readonly features: bigint;
  readonly allocator: GuestAllocator;
  readonly records: VirtqueueState[];
  readonly drivers: DriverQueue[];
  readonly interrupts: number[] = [];
  readonly failures: string[] = [];
  configChanges = 0;
  private readonly queues: SplitQueue[] = [];

  constructor(
    readonly backend: VirtioBackend,
    options: FakeTransportOptions = {},
  ) {
    const ramSize = options.restoredFrom?.memory.totalSize ?? options.ramSize ?? 4 << 20;
    this.memory = options.restoredFrom?.memory ?? new CheckedMemory(ramSize);
    this.allocator = new GuestAllocator(0x1000, ramSize);
    const offered = backend.deviceFeatures | TRANSPORT_FEATURES;
    this.features = options.features ?? offered & ~(options.withoutFeatures ?? 0n);
    if (options.restoredFrom) {
      this.records = options.restoredFrom.records;
      this.drivers = [];
      return;
    }
    this.records = backend.queueMaxSizes.map((max) => {
      const r = newRecord(virtqueueStateDescriptor);
      resetVirtqueueState(r, max);
      return r;
    });
    this.drivers = backend.queueMaxSizes.map((max, i) => {
      const d = new DriverQueue(this.memory, this.allocator, options.queueSizes?.[i] ?? Math.min(max, 64));
      d.configure(this.records[i]);
      return d;
    });
  }

  /** The driver sets DRIVER_OK. */
  start(): this {
    this.backend.activate(this);
    return this;
  }

  /** The driver notifies queue `index`. */
  kick(index: number): void {
    this.backend.notify(index);
  }

  /** Interrupts recorded since the last call, by queue index. */
  takeInterrupts(): number[] {
    return this.interrupts.splice(0);
  }

  // ---- VirtioContext ----
  queue(index: number): VirtQueue {
    if (index < 0 || index >= this.records.length) throw new RangeError(`fake transport: no queue ${index}`);
    this.queues[index] ??= new SplitQueue(this.memory, this.records[index], this.features, index);
    return this.queues[index];
  }

  interrupt(index: number): void {
    this.interrupts.push(index);
  }

  configChanged(): void {
    this.configChanges++;
  }

  fail(reason: string): void {
    this.failures.push(reason);
  }

  /** Host I/O the back ends ran through outsideLock, and a hook a test uses to act while it "runs unlocked". */
  outsideLockCalls = 0;
  duringOutsideLock: (() => boolean) | null = null;

  /** Plays the main thread asking for a park: parkRequested() answers it (a test sets it, or a function of time). */
  parkWanted: () => boolean = () => false;
  /** Queues serveQueue asked to serve again later, in order. */
  readonly servedLater: number[] = [];

  parkRequested(): boolean {
    return this.parkWanted();
  }

  serveLater(index: number): void {
    this.servedLater.push(index);
  }

  outsideLock(io: () => void): boolean {
    this.outsideLockCalls++;
    io();
    // The hook plays another thread resetting the device meanwhile: false = the device went away.
    return this.duringOutsideLock?.() ?? true;
  }
}

/** Little-endian config-space reads as a driver does them (`size` bytes at `offset`). */
export function readConfigBytes(backend: VirtioBackend, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = backend.readConfig(offset + i, 1);
  return out;
}
