// What a PCI device model sees of the machine's interrupt and notification plumbing (implemented in
// src/runtime/msi-router.ts and src/runtime/ioevent-registry.ts, run by the I/O thread in src/io/). Like
// src/bus/types.ts, nothing here knows about KVM: device tests drive these with plain fakes.
//
// The eventfds behind both are created once by the main thread when the machine is planned; their numbers are
// plain data every thread receives, so any thread (a vCPU thread handling an MSI-X table write or a BAR move, the
// I/O thread delivering a queue interrupt) can program a route or move a notification address itself.

/** A block of MSI vectors one device owns: vector i is GSI `first + i` in the machine's routing table. */
export interface MsiBlock {
  readonly first: number;
  readonly count: number;
}

/** A device's MSI vectors: routes kept in KVM's GSI routing table, each raised through its own irqfd. */
export interface MsiVectors {
  readonly count: number;
  /**
   * Makes vector `vector` deliver the message (address, data). Cheap when nothing changed; the whole routing table
   * is rebuilt and handed to KVM only when it did. Messages outside the LAPIC window (0xfee00000-0xfeefffff) are
   * not interrupts: such a vector delivers nothing.
   */
  route(vector: number, address: bigint, data: number): void;
  /** Raises the vector (an eventfd write; KVM injects). Any thread; no lock needed. */
  fire(vector: number): void;
}

/** A thread's view of the machine's MSI routing table (src/runtime/msi-router.ts): a device's block as vectors. */
export interface MsiVectorTable {
  vectors(block: MsiBlock): MsiVectors;
}

/** A block of notification eventfds one device owns (one per virtqueue for virtio). */
export interface IoEventBlock {
  readonly first: number;
  readonly count: number;
}

/** Where a guest write signals a notification eventfd instead of exiting (KVM_IOEVENTFD). */
export interface IoEventAddress {
  /** Guest-physical MMIO address. */
  readonly address: number;
  /** Access width that matches: 1, 2, 4 or 8 bytes. */
  readonly length: 1 | 2 | 4 | 8;
  /** Signal only when the written value equals this. */
  readonly datamatch?: bigint;
}

/** A device's notification eventfds. Binding runs under the machine lock; any thread. */
export interface IoEventSlots {
  readonly count: number;
  /** The eventfd of slot `index` (the I/O thread watches it). */
  fd(index: number): number;
  /** (Re)binds slot `index` to a guest address; a no-op when already bound there. */
  bind(index: number, at: IoEventAddress): void;
  /** Stops guest writes from signalling slot `index` (they exit to the device's MMIO handler instead). */
  unbind(index: number): void;
  /** Signals slot `index` as a matching guest write would (a notification that did exit reaches the I/O thread). */
  signal(index: number): void;
}

/** A thread's view of the machine's notification eventfds (src/runtime/ioevent-registry.ts): a device's block. */
export interface IoEventTable {
  slots(block: IoEventBlock): IoEventSlots;
}

/**
 * Work the I/O thread does for a device: when `fd` becomes readable, run `ready()` under the machine lock.
 * An `eventfd` watch has its counter read (cleared) first; a `readable` watch (a tap fd, a socket) leaves reading to
 * the handler, which returns false when it could not take everything (no guest buffers): the fd is then not
 * watched again until an eventfd watch of the same `group` fires (the guest made buffers available).
 */
export interface IoWatch {
  readonly name: string;
  readonly fd: number;
  readonly kind: 'eventfd' | 'readable';
  readonly group: string;
  ready(): boolean | void;
}
