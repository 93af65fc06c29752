// Notification eventfds (KVM_IOEVENTFD): a guest write to a registered MMIO address signals an eventfd inside KVM,
// without an exit; the I/O thread (src/io/) watches the eventfds and runs the device's handler under the machine
// lock. Used for virtio queue notifications.
//
// The eventfds are created by the main thread when the machine is planned (allocate), before any other thread
// starts; which address each is bound to lives in a SharedArrayBuffer, so whichever thread moves a BAR (a vCPU
// thread handling a config write, the main thread restoring a checkpoint) can move the binding: KVM's deassign
// must name exactly what was assigned, and every thread knows it.
import * as libc from '../sys/libc.js';
import * as K from '../../kvm/bindings/ioctls.js';
import { KVM_IOEVENTFD_FLAG_DATAMATCH, KVM_IOEVENTFD_FLAG_DEASSIGN } from '../../kvm/bindings/constants.js';
import { encodeIoeventfd } from '../../kvm/bindings/codec-vm.js';
import type { Ioeventfd } from '../../kvm/bindings/types.js';
import type { IoEventAddress, IoEventBlock, IoEventSlots } from '../bus/pci-types.js';

/** The KVM call the registry makes (a fake in unit tests). */
export interface IoEventOps {
  ioeventfd(e: Ioeventfd): void;
}

export function vmIoEventOps(vmFd: number): IoEventOps {
  return {
    ioeventfd: (e) => {
      libc.ioctlPtr(vmFd, K.KVM_IOEVENTFD, encodeIoeventfd(e), 'KVM_IOEVENTFD');
    },
  };
}

export interface IoEventRegistryInit {
  readonly vmFd: number;
  readonly table: SharedArrayBuffer;
  readonly fds: readonly number[];
}

// Table layout per slot (32 bytes): u32 bound, u32 length, u32 datamatch flag, u32 pad, u64 address, u64 datamatch.
const SLOT_BYTES = 32;
const BOUND = 0,
  LENGTH = 1,
  MATCH = 2;
const ADDRESS = 2,
  DATAMATCH = 3; // in u64 words

export class IoEventRegistry {
  private readonly words: Uint32Array;
  private readonly wide: BigUint64Array;
  private readonly fds: number[];
  private readonly one = new BigUint64Array([1n]);
  readonly maxSlots: number;
  /** Bindings KVM refused (an address already taken: overlapping BARs); the guest's writes then exit instead. */
  refused = 0;

  private constructor(
    readonly vmFd: number,
    readonly table: SharedArrayBuffer,
    fds: readonly number[],
    private readonly ops: IoEventOps,
    private readonly owner: boolean,
  ) {
    this.words = new Uint32Array(table);
    this.wide = new BigUint64Array(table);
    this.fds = [...fds];
    this.maxSlots = table.byteLength / SLOT_BYTES;
  }

  static create(vmFd: number, options: { maxSlots?: number; ops?: IoEventOps } = {}): IoEventRegistry {
    const maxSlots = options.maxSlots ?? 256;
    if (!Number.isInteger(maxSlots) || maxSlots < 1) throw new RangeError(`ioeventfd registry: ${maxSlots} slots`);
    return new IoEventRegistry(
      vmFd,
      new SharedArrayBuffer(maxSlots * SLOT_BYTES),
      [],
      options.ops ?? vmIoEventOps(vmFd),
      true,
    );
  }

  static attach(init: IoEventRegistryInit, ops?: IoEventOps): IoEventRegistry {
    return new IoEventRegistry(init.vmFd, init.table, init.fds, ops ?? vmIoEventOps(init.vmFd), false);
  }

  get init(): IoEventRegistryInit {
    return { vmFd: this.vmFd, table: this.table, fds: [...this.fds] };
  }

  get allocated(): number {
    return this.fds.length;
  }

  /** Main thread, before other threads attach: `count` new eventfds (unbound). */
  allocate(count: number): IoEventBlock {
    if (!this.owner)
      throw new Error('ioeventfd registry: slots are allocated by the main thread before the others attach');
    if (!Number.isInteger(count) || count < 1 || this.fds.length + count > this.maxSlots) {
      throw new RangeError(
        `ioeventfd registry: cannot allocate ${count} slots (${this.fds.length} of ${this.maxSlots} used)`,
      );
    }
    const first = this.fds.length;
    for (let i = 0; i < count; i++) this.fds.push(libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    return { first, count };
  }

  fd(index: number): number {
    const fd = this.fds[index];
    if (fd === undefined) throw new RangeError(`ioeventfd registry: slot ${index} was not allocated`);
    return fd;
  }

  /** A device's view of its block. */
  slots(block: IoEventBlock): IoEventSlots {
    if (block.first < 0 || block.first + block.count > this.fds.length)
      throw new RangeError(`ioeventfd registry: block ${block.first}+${block.count} was not allocated`);
    const check = (i: number) => Number.isInteger(i) && i >= 0 && i < block.count;
    return {
      count: block.count,
      fd: (i) => {
        if (!check(i)) throw new RangeError(`ioeventfd slot ${i} outside its block of ${block.count}`);
        return this.fd(block.first + i);
      },
      bind: (i, at) => {
        if (check(i)) this.bind(block.first + i, at);
      },
      unbind: (i) => {
        if (check(i)) this.unbind(block.first + i);
      },
      signal: (i) => {
        if (check(i)) this.signal(block.first + i);
      },
    };
  }

  /** Where slot `index` is bound, or null. */
  binding(index: number): IoEventAddress | null {
    const w = index * (SLOT_BYTES / 4);
    if (Atomics.load(this.words, w + BOUND) === 0) return null;
    const q = index * (SLOT_BYTES / 8);
    const length = this.words[w + LENGTH] as 1 | 2 | 4 | 8;
    const address = Number(this.wide[q + ADDRESS]);
    return this.words[w + MATCH] ? { address, length, datamatch: this.wide[q + DATAMATCH] } : { address, length };
  }

  private request(index: number, at: IoEventAddress, deassign: boolean): Ioeventfd {
    const match = at.datamatch !== undefined;
    return {
      fd: this.fd(index),
      addr: BigInt(at.address),
      len: at.length,
      datamatch: at.datamatch ?? 0n,
      flags: (match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
    };
  }

  bind(index: number, at: IoEventAddress): void {
    if (!Number.isSafeInteger(at.address) || at.address < 0 || ![1, 2, 4, 8].includes(at.length)) {
      throw new RangeError(`ioeventfd: bad binding 0x${at.address.toString(16)}/${at.length}`);
    }
    const current = this.binding(index);
    if (current && current.address === at.address && current.length === at.length && current.datamatch === at.datamatch)
      return;
    if (current) this.unbind(index);
    try {
      this.ops.ioeventfd(this.request(index, at, false));
    } catch {
      // KVM refuses a second ioeventfd on the same address and length (a guest that overlapped two BARs): the
      // writes then exit to the MMIO handler, which signals the eventfd itself.
      this.refused++;
      return;
    }
    const w = index * (SLOT_BYTES / 4);
    const q = index * (SLOT_BYTES / 8);
    this.words[w + LENGTH] = at.length;
    this.words[w + MATCH] = at.datamatch !== undefined ? 1 : 0;
    this.wide[q + ADDRESS] = BigInt(at.address);
    this.wide[q + DATAMATCH] = at.datamatch ?? 0n;
    Atomics.store(this.words, w + BOUND, 1);
  }

  unbind(index: number): void {
    const current = this.binding(index);
    if (!current) return;
    Atomics.store(this.words, index * (SLOT_BYTES / 4) + BOUND, 0);
    try {
      this.ops.ioeventfd(this.request(index, current, true));
    } catch {
      /* the VM may be gone */
    }
  }

  /** A notification as if the guest's write had matched (any thread). */
  signal(index: number): void {
    const fd = this.fds[index];
    if (fd !== undefined) libc.write(fd, this.one);
  }

  /** Main thread, when the machine ends: bindings dropped, eventfds closed. */
  close(): void {
    if (!this.owner) return;
    for (let i = 0; i < this.fds.length; i++) this.unbind(i);
    for (const fd of this.fds) {
      try {
        libc.close(fd);
      } catch {
        /* already closed */
      }
    }
    this.fds.length = 0;
  }
}
