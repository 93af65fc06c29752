// devices/virtio/queue.ts — the device side of a split virtqueue (virtio 1.x, 2.7 "Split Virtqueues").
//
// Guest memory holds three areas the driver allocates: the descriptor table (16-byte descriptors), the available
// ring (driver → device: chain heads) and the used ring (device → driver: finished chains with the byte count
// written). The device's side of the bookkeeping — where the areas are, how far it has consumed the available ring,
// the used index it has published, what it last signalled — lives in a `VirtqueueState` record (vmstate), which the
// transport embeds in its own state and fills from the driver's queue configuration. A `SplitQueue` is a stateless
// view over (guest memory, record, negotiated features): any thread may build one over the shared record, and a
// checkpoint that copies the record and RAM resumes the queue exactly.
//
// Everything the guest wrote is untrusted. Before any access the queue checks, and otherwise throws a
// VirtqueueError naming the queue and the problem: ring areas inside RAM with the spec's alignment, the queue size a
// power of two ≤ 32768, the available index at most `size` ahead of what the device consumed, every head and `next`
// index below the table size, every buffer inside one RAM region (GuestMemory.contains), chains no longer than the
// queue size (which also ends loops), indirect tables only when negotiated, not nested, not combined with NEXT, a
// multiple of 16 bytes and at most MAX_INDIRECT_DESCRIPTORS long, readable buffers before writable ones, and at
// most 2^32 bytes per chain. Nothing outside guest RAM is ever read or written.
//
// Memory ordering. Guest RAM is plain memory shared with vCPUs running concurrently (not a JS SharedArrayBuffer, so
// Atomics cannot be used on it). On x86 (TSO) stores become visible in program order and loads are not reordered
// with older loads, and V8 emits the typed-array loads and stores of one function in program order; so writing a
// used element before the used index, and reading the available index before the ring entry it covers, is enough.
// The one reordering x86 does allow — a later load passing an earlier store — matters twice: after publishing the
// used index we read `used_event`/flags to decide on an interrupt, and after publishing `avail_event` we re-read
// the available index. Both places call `fullBarrier()`, an Atomics read-modify-write on a private
// SharedArrayBuffer, which V8 compiles to a locked instruction (a full fence on x86).
import {
  u16,
  u64,
  bool,
  clearRecord,
  within,
  withHooks,
  VmstateError,
  type Descriptor,
  type StateOf,
} from '../../cpr/vmstate/vmstate.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import {
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_RING_INDIRECT_DESC,
  type DescriptorChain,
  type GuestBuffer,
  type VirtQueue,
  type VirtioContext,
} from './types.js';
import { hex } from '../../src/util/hex.js';
import { isPowerOfTwo } from '../../src/util/power-of-two.js';

// ---- descriptor flags (struct virtq_desc.flags) ------------------------------------------------------------
export const VIRTQ_DESC_F_NEXT = 1; // the chain continues with the descriptor in `next`
export const VIRTQ_DESC_F_WRITE = 2; // the buffer is device-writable (otherwise device-readable)
export const VIRTQ_DESC_F_INDIRECT = 4; // the buffer holds a table of descriptors

// ---- ring flags ---------------------------------------------------------------------------------------------
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1; // avail.flags: the driver does not want used-buffer interrupts
export const VIRTQ_USED_F_NO_NOTIFY = 1; // used.flags: the device does not want kicks (never set by us)

// ---- layout (2.7.2, 2.7.5, 2.7.6, 2.7.8) --------------------------------------------------------------------
/** Largest split queue (2.7 "Queue Size ... 32768"). */
export const VIRTQ_MAX_SIZE = 32768;
export const VIRTQ_DESC_SIZE = 16; // le64 addr, le32 len, le16 flags, le16 next
export const VIRTQ_DESC_ALIGN = 16;
export const VIRTQ_AVAIL_ALIGN = 2;
export const VIRTQ_USED_ALIGN = 4;
export const VIRTQ_USED_ELEM_SIZE = 8; // le32 id, le32 len
const RING_HEADER = 4; // le16 flags, le16 idx (both rings)
/**
 * Longest indirect table accepted. The spec asks drivers to keep a chain within the queue size; like QEMU (whose
 * VIRTQUEUE_MAX_SIZE bounds a request to 1024 buffers) we accept indirect tables up to this fixed bound instead,
 * so a driver with a small ring and many scatter-gather entries still works.
 */
export const MAX_INDIRECT_DESCRIPTORS = 1024;
/** "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total" (2.7.5.1). */
export const MAX_CHAIN_BYTES = 2 ** 32;

export const descTableBytes = (size: number): number => VIRTQ_DESC_SIZE * size;
/** flags, idx, ring[size], used_event. */
export const availRingBytes = (size: number): number => RING_HEADER + 2 * size + 2;
/** flags, idx, ring[size] of {id, len}, avail_event. */
export const usedRingBytes = (size: number): number => RING_HEADER + VIRTQ_USED_ELEM_SIZE * size + 2;

/**
 * vring_need_event (2.7.10 / <linux/virtio_ring.h>): with EVENT_IDX, the other side asked to be told once the index
 * passes `eventIdx`; `newIdx` is the index now, `oldIdx` the index at the last notification decision.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

// ---- state ------------------------------------------------------------------------------------------------------

/**
 * One virtqueue's device-side state. The transport writes size/ready/addresses from the driver's queue
 * configuration (queue_size, queue_enable, queue_desc/driver/device) and embeds this descriptor, e.g. as
 * `structArray('queues', virtqueueStateDescriptor, n)`.
 */
export const virtqueueStateDescriptor = withHooks(
  {
    name: 'virtqueue',
    version: 1,
    minVersion: 1,
    fields: [
      u64('descAddr'), // guest-physical address of the descriptor table (queue_desc)
      u64('availAddr'), // the available ring (queue_driver)
      u64('usedAddr'), // the used ring (queue_device)
      u16('size'), // queue size the driver chose (queue_size)
      u16('lastAvailIdx'), // free-running count of available entries consumed by the device
      u16('usedIdx'), // free-running used index the device has published
      u16('signalledUsed'), // usedIdx when the last interrupt decision was taken (EVENT_IDX's old_idx)
      bool('ready'), // queue_enable was written 1
      bool('signalledUsedValid'), // signalledUsed means something (false after reset: the first push always interrupts)
    ],
  } as const satisfies Descriptor,
  {
    // An enabled queue was checked when the driver enabled it (layout()): its size is a power of two, and the
    // device never has more chains taken and not yet used than the ring holds. A disabled one may hold anything
    // the driver wrote; layout() checks it when it is enabled.
    check(s) {
      if (!s.ready) return;
      if (!isPowerOfTwo(s.size) || s.size > VIRTQ_MAX_SIZE)
        throw new VmstateError(`field 'size' is ${s.size}: an enabled queue's is a power of two ≤ ${VIRTQ_MAX_SIZE}`);
      within((s.lastAvailIdx - s.usedIdx) & 0xffff, s.size, 'lastAvailIdx - usedIdx', 'chains in flight fit the ring');
    },
  },
);

export type VirtqueueState = StateOf<typeof virtqueueStateDescriptor>;

/** Power-on / device-reset state: disabled, addresses 0, size = the device's maximum (what queue_size reads). */
export function resetVirtqueueState(state: VirtqueueState, maxSize: number): void {
  clearRecord(state);
  state.size = maxSize;
}

/** A guest broke the virtqueue rules. `queue` names the queue, `problem` says what was wrong. */
export class VirtqueueError extends Error {
  override readonly name = 'VirtqueueError';
  constructor(
    readonly queue: string,
    readonly problem: string,
  ) {
    super(`${queue}: ${problem}`);
  }
}

const fenceCell = new Int32Array(new SharedArrayBuffer(4));
/** A full memory barrier (StoreLoad included): a locked read-modify-write on x86-64. */
export function fullBarrier(): void {
  Atomics.add(fenceCell, 0, 0);
}

interface QueueLayout {
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
}

/** A split virtqueue over guest memory and its state record. */
export class SplitQueue implements VirtQueue {
  readonly index: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private readonly label: string;
  // The record is the truth; this caches its last validated layout (re-validated whenever the record changes, so
  // a queue reconfigured from another thread, or restored, is never used with stale or unchecked addresses).
  private cached: QueueLayout | null = null;
  private cachedKey = { size: -1, desc: -1n, avail: -1n, used: -1n };

  /**
   * `features`: the negotiated feature bits (RING_INDIRECT_DESC and RING_EVENT_IDX are read from them).
   * `label` names the queue in errors (default `virtqueue <index>`). Throws a VirtqueueError if the record says the
   * queue is ready but its layout is invalid.
   */
  constructor(
    private readonly memory: GuestMemory,
    private readonly state: VirtqueueState,
    features: bigint,
    index = 0,
    label?: string,
  ) {
    this.index = index;
    this.label = label ?? `virtqueue ${index}`;
    this.eventIdx = (features & (1n << VIRTIO_F_RING_EVENT_IDX)) !== 0n;
    this.indirect = (features & (1n << VIRTIO_F_RING_INDIRECT_DESC)) !== 0n;
    if (state.ready) this.layout();
  }

  /** The queue size (0 while the queue is not enabled). */
  get size(): number {
    return this.state.ready ? this.state.size : 0;
  }

  get ready(): boolean {
    return this.state.ready;
  }

  private fail(problem: string): never {
    throw new VirtqueueError(this.label, problem);
  }

  /** The validated layout, or null when the queue is not enabled. */
  private layout(): QueueLayout | null {
    const s = this.state;
    if (!s.ready) return null;
    const size = s.size;
    const desc = s.descAddr;
    const avail = s.availAddr;
    const used = s.usedAddr;
    const k = this.cachedKey;
    if (this.cached && k.size === size && k.desc === desc && k.avail === avail && k.used === used) return this.cached;
    this.cached = null;
    if (!isPowerOfTwo(size) || size > VIRTQ_MAX_SIZE)
      this.fail(`queue size ${size} is not a power of two ≤ ${VIRTQ_MAX_SIZE}`);
    const area = (what: string, addr: bigint, bytes: number, align: number): number => {
      if (addr > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} at 0x${addr.toString(16)} is not in guest RAM`);
      const gpa = Number(addr);
      if (gpa % align !== 0) this.fail(`${what} at ${hex(gpa)} is not ${align}-byte aligned`);
      if (!this.memory.contains(gpa, bytes)) this.fail(`${what} ${hex(gpa)}+${hex(bytes)} is not in guest RAM`);
      return gpa;
    };
    const layout: QueueLayout = {
      size,
      desc: area('descriptor table', desc, descTableBytes(size), VIRTQ_DESC_ALIGN),
      avail: area('available ring', avail, availRingBytes(size), VIRTQ_AVAIL_ALIGN),
      used: area('used ring', used, usedRingBytes(size), VIRTQ_USED_ALIGN),
    };
    this.cachedKey = { size, desc, avail, used };
    this.cached = layout;
    return layout;
  }

  /** How many entries the driver has made available beyond what the device consumed (validated). */
  private pendingEntries(l: QueueLayout): number {
    const availIdx = this.memory.readU16(l.avail + 2);
    const last = this.state.lastAvailIdx;
    const pending = (availIdx - last) & 0xffff;
    if (pending > l.size) {
      this.fail(
        `available index ${availIdx} is ${pending} entries ahead of the ${last} consumed (queue size ${l.size})`,
      );
    }
    return pending;
  }

  /** With EVENT_IDX: ask for a kick once the driver makes entry `lastAvailIdx` available. */
  private publishAvailEvent(l: QueueLayout): void {
    if (this.eventIdx)
      this.memory.writeU16(l.used + RING_HEADER + VIRTQ_USED_ELEM_SIZE * l.size, this.state.lastAvailIdx);
  }

  pop(): DescriptorChain | null {
    const l = this.layout();
    if (!l) return null;
    let pending = this.pendingEntries(l);
    if (pending === 0) {
      if (!this.eventIdx) return null;
      // Re-arm the kick, then look again: the driver may have added an entry after our read of idx and before it
      // could see the new avail_event (it would not kick for it).
      this.publishAvailEvent(l);
      fullBarrier();
      pending = this.pendingEntries(l);
      if (pending === 0) return null;
    }
    const last = this.state.lastAvailIdx;
    const head = this.memory.readU16(l.avail + RING_HEADER + 2 * (last % l.size));
    const chain = this.walk(l, head);
    this.state.lastAvailIdx = (last + 1) & 0xffff;
    this.publishAvailEvent(l);
    return chain;
  }

  rewind(count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > this.size) {
      throw new RangeError(`${this.label}: cannot rewind ${count} entries`);
    }
    // avail_event is left where pop() put it: the entries given back are already available, so no kick is needed
    // for them, and lowering it would make the driver skip the kick for the next new entry.
    this.state.lastAvailIdx = (this.state.lastAvailIdx - count) & 0xffff;
  }

  /** Walks and validates the chain that starts at descriptor `head`. */
  private walk(l: QueueLayout, head: number): DescriptorChain {
    if (head >= l.size) this.fail(`available ring entry names descriptor ${head}, beyond the queue size ${l.size}`);
    const m = this.memory;
    const readable: GuestBuffer[] = [];
    const writable: GuestBuffer[] = [];
    let readableBytes = 0;
    let writableBytes = 0;
    let sawWritable = false;

    let table = l.desc; // where descriptors are read from: the queue's table, then perhaps one indirect table
    let tableSize = l.size;
    let inIndirect = false;
    let walked = 0; // descriptors walked in the current table: more than its size means a loop
    let i = head;
    for (;;) {
      if (++walked > tableSize) {
        this.fail(
          inIndirect
            ? `indirect table of ${tableSize} descriptors (chain from head ${head}) loops`
            : `chain from head ${head} is longer than the queue size ${l.size} (a loop)`,
        );
      }
      const at = table + VIRTQ_DESC_SIZE * i;
      const lo = m.readU32(at);
      const hi = m.readU32(at + 4);
      const len = m.readU32(at + 8);
      const flags = m.readU16(at + 12);
      const next = m.readU16(at + 14);
      const where = inIndirect ? `indirect descriptor ${i} (chain from head ${head})` : `descriptor ${i}`;
      // Addresses beyond 2^53 cannot be in RAM; treat them as such before turning them into a number.
      const addr = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 2 ** 32 + lo;

      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirect) this.fail(`${where} is indirect, but RING_INDIRECT_DESC was not negotiated`);
        if (inIndirect) this.fail(`${where} is indirect inside an indirect table`);
        if (flags & VIRTQ_DESC_F_NEXT) this.fail(`${where} sets both INDIRECT and NEXT`);
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0)
          this.fail(`${where}: indirect table length ${len} is not a non-zero multiple of 16`);
        if (len / VIRTQ_DESC_SIZE > MAX_INDIRECT_DESCRIPTORS) {
          this.fail(
            `${where}: indirect table of ${len / VIRTQ_DESC_SIZE} descriptors exceeds ${MAX_INDIRECT_DESCRIPTORS}`,
          );
        }
        if (!m.contains(addr, len)) this.fail(`${where}: indirect table ${hex(addr)}+${hex(len)} is not in guest RAM`);
        // The WRITE flag of the descriptor that refers to a table is ignored (2.7.5.3.2).
        table = addr;
        tableSize = len / VIRTQ_DESC_SIZE;
        inIndirect = true;
        walked = 0;
        i = 0;
        continue;
      }

      if (flags & VIRTQ_DESC_F_WRITE) {
        sawWritable = true;
      } else if (sawWritable) {
        this.fail(`${where} is device-readable but follows a device-writable one`);
      }
      // A zero-length buffer carries nothing and is never accessed: it is dropped, whatever its address.
      if (len > 0) {
        if (!m.contains(addr, len)) this.fail(`${where}: buffer ${hex(addr)}+${hex(len)} is not in guest RAM`);
        if (readableBytes + writableBytes + len > MAX_CHAIN_BYTES)
          this.fail(`chain from head ${head} is longer than 2^32 bytes`);
        if (flags & VIRTQ_DESC_F_WRITE) {
          writable.push({ gpa: addr, length: len });
          writableBytes += len;
        } else {
          readable.push({ gpa: addr, length: len });
          readableBytes += len;
        }
      }

      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      if (next >= tableSize) {
        this.fail(`${where}: next ${next} is beyond the ${inIndirect ? 'indirect table' : 'queue'} size ${tableSize}`);
      }
      i = next;
    }
    return { head, readable, writable, readableBytes, writableBytes };
  }

  push(chain: DescriptorChain, written: number): void {
    const l = this.layout();
    if (!l) return; // the queue was disabled or reset under the back end: nothing to return the chain to
    const len = Math.max(0, Math.min(Math.floor(written) || 0, chain.writableBytes));
    const usedIdx = this.state.usedIdx;
    const elem = l.used + RING_HEADER + VIRTQ_USED_ELEM_SIZE * (usedIdx % l.size);
    this.memory.writeU32(elem, chain.head);
    this.memory.writeU32(elem + 4, len);
    // The element is written before the index (x86 keeps stores in order; see the header comment).
    const next = (usedIdx + 1) & 0xffff;
    this.state.usedIdx = next;
    this.memory.writeU16(l.used + 2, next);
  }

  needsInterrupt(): boolean {
    const l = this.layout();
    if (!l) return false;
    const s = this.state;
    const newIdx = s.usedIdx;
    const oldIdx = s.signalledUsed;
    const valid = s.signalledUsedValid;
    if (valid && newIdx === oldIdx) return false; // nothing used since the last decision
    s.signalledUsed = newIdx;
    s.signalledUsedValid = true;
    fullBarrier(); // our used idx store must be visible before we read the driver's suppression fields
    if (!this.eventIdx) return (this.memory.readU16(l.avail) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    if (!valid) return true;
    const usedEvent = this.memory.readU16(l.avail + RING_HEADER + 2 * l.size);
    return vringNeedEvent(usedEvent, newIdx, oldIdx);
  }

  readFrom(chain: DescriptorChain, offset: number, max: number): Uint8Array {
    const total = Math.max(0, Math.min(max, chain.readableBytes - offset));
    const out = new Uint8Array(total);
    let at = 0;
    forEachSegment(chain.readable, offset, total, (gpa, length) => {
      out.set(this.memory.slice(gpa, length), at);
      at += length;
    });
    return out;
  }

  writeTo(chain: DescriptorChain, offset: number, bytes: Uint8Array): number {
    const total = Math.max(0, Math.min(bytes.length, chain.writableBytes - offset));
    let at = 0;
    forEachSegment(chain.writable, offset, total, (gpa, length) => {
      this.memory.write(gpa, bytes.subarray(at, at + length));
      at += length;
    });
    return total;
  }
}

/**
 * Calls `fn(gpa, length, at)` for each piece of `buffers` covering bytes [offset, offset + length) of their
 * concatenation (`at` is the piece's position within that range). Stops at the end of the buffers. Returns the
 * bytes covered. Back ends use it for zero-copy I/O into `memory.slice(gpa, length)`.
 */
export function forEachSegment(
  buffers: readonly GuestBuffer[],
  offset: number,
  length: number,
  fn: (gpa: number, length: number, at: number) => void,
): number {
  let skip = Math.max(0, offset);
  let left = Math.max(0, length);
  let at = 0;
  for (const b of buffers) {
    if (left === 0) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, left);
    fn(b.gpa + skip, n, at);
    skip = 0;
    left -= n;
    at += n;
  }
  return at;
}

/** Thrown by a back end whose device was reset while a request's host I/O ran outside the lock: drop the request. */
export class QueueAbandoned extends Error {
  constructor(what: string) {
    super(`${what}: the device was reset during the request`);
    this.name = 'QueueAbandoned';
  }
}

/** Thrown by a back end whose thread was asked to park mid-request: the chain is given back and served later. */
export class QueueYield extends Error {
  constructor(what: string) {
    super(`${what}: the request was interrupted to let the thread park; it is served again later`);
    this.name = 'QueueYield';
  }
}

/**
 * How much one serveQueue call does before it lets the thread go on (other devices' watches, a pause request):
 * a guest can make 256 chains of up to 4 GiB available at once, and the I/O thread parks only between batches.
 */
export const SERVE_MAX_CHAINS = 32;
export const SERVE_MAX_BYTES = 16 << 20;

/**
 * Serves the chains available on queue `index`, a bounded amount per call: `handle(chain)` returns the bytes
 * written into the chain (the used length). It stops after SERVE_MAX_CHAINS chains or SERVE_MAX_BYTES bytes of
 * chains, or as soon as the thread is asked to park (before the next chain, or mid-request when the back end throws
 * QueueYield: that chain goes back to the ring), and then asks for the queue to be served again later
 * (context.serveLater), so nothing is lost. Interrupts the driver once at the end if it wants one. A VirtqueueError
 * (a malformed chain) marks the device broken through `context.fail` and stops; returns false then.
 */
export function serveQueue(
  context: VirtioContext,
  index: number,
  handle: (chain: DescriptorChain, queue: VirtQueue) => number,
): boolean {
  const queue = context.queue(index);
  let pushed = 0;
  let bytes = 0;
  try {
    for (;;) {
      if (pushed >= SERVE_MAX_CHAINS || bytes >= SERVE_MAX_BYTES || context.parkRequested()) {
        context.serveLater(index);
        break;
      }
      const chain = queue.pop();
      if (!chain) break;
      let written: number;
      try {
        written = handle(chain, queue);
      } catch (e) {
        if (!(e instanceof QueueYield)) throw e;
        queue.rewind(1);
        context.serveLater(index);
        break;
      }
      queue.push(chain, written);
      pushed++;
      bytes += chain.readableBytes + chain.writableBytes;
    }
  } catch (e) {
    // The device was reset under a request (QueueAbandoned): its queues are gone, nothing more is pushed.
    if (e instanceof QueueAbandoned) return false;
    if (!(e instanceof VirtqueueError)) throw e;
    context.fail(e.message); // the driver must reset the device: no interrupt for what was pushed before
    return false;
  }
  if (pushed > 0 && queue.needsInterrupt()) context.interrupt(index);
  return true;
}
