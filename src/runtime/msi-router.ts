// MSI delivery through KVM: each device vector is a GSI (firstGsi + index) with an MSI entry in KVM's GSI routing
// table and an irqfd (an eventfd KVM_IRQFD binds to the GSI), so raising a vector is one eventfd write from any
// thread and KVM injects the interrupt without the VMM on the path.
//
// KVM_SET_GSI_ROUTING replaces the whole table, and the table KVM_CREATE_IRQCHIP installed routes the PIC and IOAPIC
// pins. So the router keeps the whole table: those irqchip entries (KVM's default unless the machine gives its own)
// plus every programmed MSI entry, and hands KVM the full table whenever an MSI entry changes.
//
// Threads: the MSI entries live in a SharedArrayBuffer, the eventfds are created by the main thread before any
// other thread starts (allocate), and every thread attaches its own router to the same table and fds (init / attach).
// Changes are made under the machine lock (they come from device handlers), so two threads never rebuild at once.
import * as libc from '../sys/libc.js';
import * as K from '../../kvm/bindings/ioctls.js';
import {
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_IOAPIC_NUM_PINS,
  KVM_IRQFD_FLAG_DEASSIGN,
} from '../../kvm/bindings/constants.js';
import { encodeIrqRouting, encodeIrqfd } from '../../kvm/bindings/codec-vm.js';
import type { IrqRoute, Irqfd } from '../../kvm/bindings/types.js';
import type { MsiBlock, MsiVectors } from '../bus/pci-types.js';

/** The KVM calls the router makes (a fake in unit tests). */
export interface MsiRoutingOps {
  setGsiRouting(routes: readonly IrqRoute[]): void;
  irqfd(f: Irqfd): void;
}

/** The ioctls on a VM fd, usable from any thread. */
export function vmRoutingOps(vmFd: number): MsiRoutingOps {
  return {
    setGsiRouting: (routes) => {
      libc.ioctlPtr(vmFd, K.KVM_SET_GSI_ROUTING, encodeIrqRouting(routes), 'KVM_SET_GSI_ROUTING');
    },
    irqfd: (f) => {
      libc.ioctlPtr(vmFd, K.KVM_IRQFD, encodeIrqfd(f), 'KVM_IRQFD');
    },
  };
}

/**
 * The routing KVM_CREATE_IRQCHIP installs on x86 (virt/kvm/irqchip.c, kvm_setup_default_irq_routing): GSIs 0-15
 * to the PIC pair (pin gsi mod 8) and to the IOAPIC pin of the same number, GSIs 16-23 to IOAPIC pins 16-23.
 */
export function defaultIrqchipRoutes(): IrqRoute[] {
  const routes: IrqRoute[] = [];
  for (let gsi = 0; gsi < KVM_IOAPIC_NUM_PINS; gsi++) {
    if (gsi < 16)
      routes.push({
        gsi,
        type: 'irqchip',
        irqchip: gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
        pin: gsi % 8,
      });
    routes.push({ gsi, type: 'irqchip', irqchip: KVM_IRQCHIP_IOAPIC, pin: gsi });
  }
  return routes;
}

/** KVM's limit on routing entries and GSI numbers on x86. */
export const KVM_MAX_IRQ_ROUTES = 4096;
/** The first GSI after the IOAPIC's pins: where MSI vectors start by default. */
export const MSI_FIRST_GSI = 24;

/** What another thread needs to attach to the same router: plain data and a SharedArrayBuffer. */
export interface MsiRouterInit {
  readonly vmFd: number;
  readonly table: SharedArrayBuffer;
  readonly firstGsi: number;
  readonly fds: readonly number[];
  readonly irqchipRoutes: readonly IrqRoute[];
}

// Table layout: one 16-byte entry per vector: valid flag, address low, address high, data.
const ENTRY_WORDS = 4;
const VALID = 0,
  ADDR_LO = 1,
  ADDR_HI = 2,
  DATA = 3;

const LAPIC_WINDOW = 0xfee00000n;
const LAPIC_WINDOW_MASK = 0xfff00000n;

export class MsiRouter {
  private readonly words: Uint32Array;
  private readonly fds: number[];
  private readonly one = new BigUint64Array([1n]);
  readonly maxVectors: number;
  /** How many times this thread handed KVM a new table (tests and diagnostics). */
  tableUpdates = 0;

  private constructor(
    readonly vmFd: number,
    readonly table: SharedArrayBuffer,
    readonly firstGsi: number,
    fds: readonly number[],
    readonly irqchipRoutes: readonly IrqRoute[],
    private readonly ops: MsiRoutingOps,
    private readonly owner: boolean,
  ) {
    this.words = new Uint32Array(table);
    this.fds = [...fds];
    this.maxVectors = this.words.length / ENTRY_WORDS;
  }

  /** Main thread: a router for `vmFd` with room for `maxVectors` vectors from GSI `firstGsi`. */
  static create(
    vmFd: number,
    options: { firstGsi?: number; maxVectors?: number; irqchipRoutes?: readonly IrqRoute[]; ops?: MsiRoutingOps } = {},
  ): MsiRouter {
    const firstGsi = options.firstGsi ?? MSI_FIRST_GSI;
    const maxVectors = options.maxVectors ?? 256;
    if (!Number.isInteger(maxVectors) || maxVectors < 1 || firstGsi < 0 || firstGsi + maxVectors > KVM_MAX_IRQ_ROUTES) {
      throw new RangeError(
        `MSI router: ${maxVectors} vectors from GSI ${firstGsi} exceed KVM's ${KVM_MAX_IRQ_ROUTES} routes`,
      );
    }
    const irqchipRoutes = options.irqchipRoutes ?? defaultIrqchipRoutes();
    if (irqchipRoutes.some((r) => r.gsi >= firstGsi))
      throw new RangeError(`MSI router: irqchip routes overlap GSI ${firstGsi}`);
    const table = new SharedArrayBuffer(maxVectors * ENTRY_WORDS * 4);
    return new MsiRouter(vmFd, table, firstGsi, [], irqchipRoutes, options.ops ?? vmRoutingOps(vmFd), true);
  }

  /** Another thread's router over the same table and eventfds. */
  static attach(init: MsiRouterInit, ops?: MsiRoutingOps): MsiRouter {
    return new MsiRouter(
      init.vmFd,
      init.table,
      init.firstGsi,
      init.fds,
      init.irqchipRoutes,
      ops ?? vmRoutingOps(init.vmFd),
      false,
    );
  }

  get init(): MsiRouterInit {
    return {
      vmFd: this.vmFd,
      table: this.table,
      firstGsi: this.firstGsi,
      fds: [...this.fds],
      irqchipRoutes: this.irqchipRoutes,
    };
  }

  /** Vectors allocated so far. */
  get allocated(): number {
    return this.fds.length;
  }

  /**
   * Main thread, before other threads attach: `count` new vectors, each with its eventfd bound to its GSI by
   * KVM_IRQFD. Returns plain data for the device's spec.
   */
  allocate(count: number): MsiBlock {
    if (!this.owner) throw new Error('MSI router: vectors are allocated by the main thread before the others attach');
    if (!Number.isInteger(count) || count < 1 || this.fds.length + count > this.maxVectors) {
      throw new RangeError(
        `MSI router: cannot allocate ${count} vectors (${this.fds.length} of ${this.maxVectors} used)`,
      );
    }
    const first = this.fds.length;
    for (let i = 0; i < count; i++) {
      const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      try {
        this.ops.irqfd({ fd, gsi: this.firstGsi + first + i });
      } catch (e) {
        libc.close(fd);
        throw e;
      }
      this.fds.push(fd);
    }
    return { first, count };
  }

  /** The GSI of vector `index` (router-wide index, i.e. block.first + vector). */
  gsi(index: number): number {
    return this.firstGsi + index;
  }

  /** A device's view of its block. */
  vectors(block: MsiBlock): MsiVectors {
    if (block.first < 0 || block.first + block.count > this.fds.length)
      throw new RangeError(`MSI router: block ${block.first}+${block.count} was not allocated`);
    return {
      count: block.count,
      route: (vector, address, data) => {
        if (Number.isInteger(vector) && vector >= 0 && vector < block.count)
          this.route(block.first + vector, address, data);
      },
      fire: (vector) => {
        if (Number.isInteger(vector) && vector >= 0 && vector < block.count) this.fire(block.first + vector);
      },
    };
  }

  /** Sets entry `index` to the message; outside the LAPIC window the entry is removed. Rebuilds only on change. */
  route(index: number, address: bigint, data: number): void {
    const at = index * ENTRY_WORDS;
    const w = this.words;
    const valid = (address & LAPIC_WINDOW_MASK) === LAPIC_WINDOW;
    const lo = Number(address & 0xffffffffn) >>> 0;
    const hi = Number((address >> 32n) & 0xffffffffn) >>> 0;
    if (!valid) {
      if (Atomics.load(w, at + VALID) === 0) return;
      Atomics.store(w, at + VALID, 0);
    } else {
      if (
        Atomics.load(w, at + VALID) === 1 &&
        w[at + ADDR_LO] === lo &&
        w[at + ADDR_HI] === hi &&
        w[at + DATA] === data >>> 0
      )
        return;
      w[at + ADDR_LO] = lo;
      w[at + ADDR_HI] = hi;
      w[at + DATA] = data >>> 0;
      Atomics.store(w, at + VALID, 1);
    }
    this.install();
  }

  /** The full table as KVM should have it now. */
  routes(): IrqRoute[] {
    const routes: IrqRoute[] = [...this.irqchipRoutes];
    const w = this.words;
    for (let i = 0; i < this.maxVectors; i++) {
      const at = i * ENTRY_WORDS;
      if (Atomics.load(w, at + VALID) !== 1) continue;
      routes.push({
        gsi: this.firstGsi + i,
        type: 'msi',
        addressLo: w[at + ADDR_LO],
        addressHi: w[at + ADDR_HI],
        data: w[at + DATA],
      });
    }
    return routes;
  }

  /** Hands KVM the whole table (after a change, or in a new process after a restore). */
  install(): void {
    this.ops.setGsiRouting(this.routes());
    this.tableUpdates++;
  }

  /** Raises vector `index`: one eventfd write (KVM delivers through the vector's route). Any thread. */
  fire(index: number): void {
    const fd = this.fds[index];
    if (fd === undefined) return;
    libc.write(fd, this.one);
  }

  /** Main thread, after the VM is gone or before it closes: irqfds unbound, eventfds closed. */
  close(): void {
    if (!this.owner) return;
    for (const [i, fd] of this.fds.entries()) {
      try {
        this.ops.irqfd({ fd, gsi: this.firstGsi + i, flags: KVM_IRQFD_FLAG_DEASSIGN });
      } catch {
        /* the VM may be closed already */
      }
      try {
        libc.close(fd);
      } catch {
        /* already closed */
      }
    }
    this.fds.length = 0;
  }
}
