// The driver's side of a split virtqueue, for tests: lays out a descriptor table, available ring and used ring in
// guest memory the way a virtio driver does (2.7.13 "Supplying Buffers to The Device"), places buffers, publishes
// chains (direct or through an indirect table) and reads back what the device used. It writes real rings, so the
// device code under test sees exactly what a guest would give it.
import type { GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_ELEM_SIZE,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
  type VirtqueueState,
} from '../queue.js';
import type { GuestBuffer } from '../types.js';

/** Hands out guest-physical ranges from [start, end), aligned; never frees (tests are short). */
export class GuestAllocator {
  constructor(
    private next: number,
    private readonly end: number,
  ) {}

  /** Bytes still free (at the given alignment, roughly). */
  get room(): number {
    return Math.max(0, this.end - this.next);
  }

  alloc(bytes: number, align = 16): number {
    const at = Math.ceil(this.next / align) * align;
    if (at + bytes > this.end) throw new Error(`test allocator: no room for ${bytes} bytes`);
    this.next = at + bytes;
    return at;
  }
}

/** One buffer of a chain: `data` to place in it (driver → device), or `length` bytes of room; `write` = device-writable. */
export interface BufferSpec {
  readonly data?: Uint8Array;
  readonly length?: number;
  readonly write?: boolean;
  /** Place the buffer here instead of allocating. */
  readonly gpa?: number;
}

export interface UsedElement {
  readonly id: number;
  readonly len: number;
}

export interface AddedChain {
  readonly head: number;
  /** Where each buffer was placed, in the order given. */
  readonly buffers: readonly GuestBuffer[];
}

export class DriverQueue {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private readonly free: number[];
  private readonly chains = new Map<number, number[]>();
  private availIdx = 0;
  private lastUsed = 0;

  constructor(
    readonly memory: GuestMemory,
    private readonly alloc: GuestAllocator,
    readonly size: number,
  ) {
    this.desc = alloc.alloc(descTableBytes(size), 16);
    this.avail = alloc.alloc(availRingBytes(size), 2);
    this.used = alloc.alloc(usedRingBytes(size), 4);
    memory.fill(this.desc, descTableBytes(size), 0);
    memory.fill(this.avail, availRingBytes(size), 0);
    memory.fill(this.used, usedRingBytes(size), 0);
    this.free = Array.from({ length: size }, (_, i) => i);
  }

  /** Writes the queue's configuration into the device's record, as the transport does for queue_* writes. */
  configure(state: VirtqueueState): void {
    state.size = this.size;
    state.descAddr = BigInt(this.desc);
    state.availAddr = BigInt(this.avail);
    state.usedAddr = BigInt(this.used);
    state.ready = true;
  }

  get freeDescriptors(): number {
    return this.free.length;
  }

  /** Places the buffers and makes the chain available (readable buffers must come first, as the spec requires). */
  add(specs: readonly BufferSpec[], options: { indirect?: boolean; publish?: boolean } = {}): AddedChain {
    const buffers = specs.map((s) => {
      const length = s.data?.length ?? s.length ?? 0;
      const gpa = s.gpa ?? this.alloc.alloc(Math.max(length, 1), 8);
      if (s.data) this.memory.write(gpa, s.data);
      return { gpa, length };
    });
    let head: number;
    if (options.indirect) {
      const table = this.alloc.alloc(VIRTQ_DESC_SIZE * specs.length, 16);
      for (const [i, s] of specs.entries()) {
        this.writeDesc(
          table,
          i,
          buffers[i].gpa,
          buffers[i].length,
          (s.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < specs.length ? VIRTQ_DESC_F_NEXT : 0),
          i + 1 < specs.length ? i + 1 : 0,
        );
      }
      head = this.take(1)[0];
      this.writeDesc(this.desc, head, table, VIRTQ_DESC_SIZE * specs.length, VIRTQ_DESC_F_INDIRECT, 0);
      this.chains.set(head, [head]);
    } else {
      const ids = this.take(specs.length);
      for (const [i, s] of specs.entries()) {
        this.writeDesc(
          this.desc,
          ids[i],
          buffers[i].gpa,
          buffers[i].length,
          (s.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < ids.length ? VIRTQ_DESC_F_NEXT : 0),
          i + 1 < ids.length ? ids[i + 1] : 0,
        );
      }
      head = ids[0];
      this.chains.set(head, ids);
    }
    this.memory.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    if (options.publish !== false) this.publish();
    return { head, buffers };
  }

  /** Writes the driver's available index (after the ring entries). */
  publish(): void {
    this.memory.writeU16(this.avail + 2, this.availIdx);
  }

  /** Used elements the device returned since the last call; their descriptors become free again. */
  takeUsed(): UsedElement[] {
    const out: UsedElement[] = [];
    const usedIdx = this.memory.readU16(this.used + 2);
    while (this.lastUsed !== usedIdx) {
      const at = this.used + 4 + VIRTQ_USED_ELEM_SIZE * (this.lastUsed % this.size);
      const e = { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
      const ids = this.chains.get(e.id);
      if (ids) {
        this.free.push(...ids);
        this.chains.delete(e.id);
      }
      out.push(e);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** avail.flags (VIRTQ_AVAIL_F_NO_INTERRUPT). */
  setAvailFlags(flags: number): void {
    this.memory.writeU16(this.avail, flags);
  }

  /** EVENT_IDX: interrupt me when the used index passes `value`. */
  setUsedEvent(value: number): void {
    this.memory.writeU16(this.avail + 4 + 2 * this.size, value & 0xffff);
  }

  /** EVENT_IDX: the device's avail_event. */
  availEvent(): number {
    return this.memory.readU16(this.used + 4 + VIRTQ_USED_ELEM_SIZE * this.size);
  }

  usedIdx(): number {
    return this.memory.readU16(this.used + 2);
  }

  /** Raw descriptor write, for tests that build malformed chains. */
  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const at = table + VIRTQ_DESC_SIZE * i;
    this.memory.writeU64(at, BigInt(addr));
    this.memory.writeU32(at + 8, len);
    this.memory.writeU16(at + 12, flags);
    this.memory.writeU16(at + 14, next);
  }

  /** Raw available-ring write: entry `head` at the driver's next index, published. */
  pushHead(head: number): void {
    this.memory.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.publish();
  }

  /** Raw available index write (for tests of a driver that runs ahead). */
  setAvailIdx(value: number): void {
    this.availIdx = value & 0xffff;
    this.publish();
  }

  private take(n: number): number[] {
    if (n > this.free.length) throw new Error(`test driver: ${n} descriptors wanted, ${this.free.length} free`);
    return this.free.splice(0, n);
  }
}
