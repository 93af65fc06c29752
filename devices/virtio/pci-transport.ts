// The virtio-pci transport, virtio 1.x "modern" only (virtio 1.2, 4.1): a PCI function with vendor 0x1af4 and
// device 0x1040 + type whose vendor capabilities point at the common configuration, notification, ISR and
// device-specific regions of one 64-bit BAR (BAR 4), with the MSI-X table and PBA in a 32-bit BAR (BAR 1) — QEMU's
// layout, so a guest sees what it sees under QEMU. The back end (devices/virtio/types.ts) knows nothing of PCI.
//
// Threads. A vCPU thread runs config-space and BAR accesses (feature negotiation, queue set-up, status); queue work
// runs on the I/O thread only: a queue notification is an ioeventfd the I/O thread watches (a notification that
// exits is turned into a write to the same eventfd), and the back end is activated there, lazily, when the I/O
// thread sees that `activation` moved. So a back end's per-thread objects (its VirtioContext, its queues) exist in
// exactly one thread, and everything a checkpoint needs is in the records: this transport's (below) and the back
// end's own.
//
// Bad guest behaviour never throws out of a handler: a queue the device cannot use (size not a power of two, rings
// outside RAM or misaligned), DRIVER_OK without FEATURES_OK, or a back end's fail() sets DEVICE_NEEDS_RESET and
// the device stops using its queues until the driver resets it. FEATURES_OK with features the device did not offer
// or without VERSION_1 is refused the spec's way: the bit does not stick.
import {
  u8,
  u16,
  u32,
  u64,
  bool,
  array,
  bytes,
  struct,
  structArray,
  within,
  withHooks,
  type Descriptor,
  type StateOf,
} from '../../cpr/vmstate/vmstate.js';
import type { IoHandler } from '../../src/bus/types.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import type { IoEventSlots, IoWatch, MsiVectors } from '../../src/bus/pci-types.js';
import { PciConfigSpace, touches } from '../pci/config-space.js';
import { MsixCapability, msixFields } from '../pci/msix.js';
import type { MappedBar, PciFunction, PciSlot } from '../pci/types.js';
import * as P from '../pci/constants.js';
import type { IoThreadHold } from '../registration.js';
import {
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_RING_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_BLOCK,
  VIRTIO_ID_CONSOLE,
  VIRTIO_ID_NET,
  VIRTIO_ID_RNG,
  type VirtQueue,
  type VirtioBackend,
  type VirtioContext,
} from './types.js';
import {
  SplitQueue,
  resetVirtqueueState,
  virtqueueStateDescriptor,
  descTableBytes,
  availRingBytes,
  usedRingBytes,
  VIRTQ_DESC_ALIGN,
  VIRTQ_AVAIL_ALIGN,
  VIRTQ_USED_ALIGN,
  VIRTQ_MAX_SIZE,
  type VirtqueueState,
} from './queue.js';
import { isPowerOfTwo } from '../../src/util/power-of-two.js';

// ---- identifiers and layout ---------------------------------------------------------------------------------------

export const VIRTIO_PCI_VENDOR_ID = 0x1af4; // Red Hat / Qumranet
export const VIRTIO_PCI_MODERN_DEVICE_BASE = 0x1040; // device ID = 0x1040 + virtio device type
export const VIRTIO_PCI_REVISION = 1; // non-transitional devices have revision >= 1
export const VIRTIO_PCI_SUBSYSTEM_ID = 0x1100; // QEMU's subsystem device ID

/** virtio_pci_cap.cfg_type */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;
/** Bytes of struct virtio_pci_cap and of virtio_pci_notify_cap (which adds notify_off_multiplier). */
export const VIRTIO_PCI_CAP_LEN = 16;
export const VIRTIO_PCI_NOTIFY_CAP_LEN = 20;
/** Offsets inside a virtio_pci_cap. */
export const VIRTIO_PCI_CAP_CFG_TYPE = 3;
export const VIRTIO_PCI_CAP_BAR = 4;
export const VIRTIO_PCI_CAP_OFFSET = 8;
export const VIRTIO_PCI_CAP_LENGTH = 12;
export const VIRTIO_PCI_NOTIFY_CAP_MULT = 16;

/** struct virtio_pci_common_cfg (virtio 1.2 4.1.4.3). */
export const VIRTIO_PCI_COMMON_DFSELECT = 0x00; // u32 device_feature_select
export const VIRTIO_PCI_COMMON_DF = 0x04; // u32 device_feature (read-only)
export const VIRTIO_PCI_COMMON_GFSELECT = 0x08; // u32 driver_feature_select
export const VIRTIO_PCI_COMMON_GF = 0x0c; // u32 driver_feature
export const VIRTIO_PCI_COMMON_MSIX = 0x10; // u16 config_msix_vector
export const VIRTIO_PCI_COMMON_NUMQ = 0x12; // u16 num_queues (read-only)
export const VIRTIO_PCI_COMMON_STATUS = 0x14; // u8 device_status
export const VIRTIO_PCI_COMMON_CFGGENERATION = 0x15; // u8 config_generation (read-only)
export const VIRTIO_PCI_COMMON_Q_SELECT = 0x16; // u16 queue_select
export const VIRTIO_PCI_COMMON_Q_SIZE = 0x18; // u16 queue_size
export const VIRTIO_PCI_COMMON_Q_MSIX = 0x1a; // u16 queue_msix_vector
export const VIRTIO_PCI_COMMON_Q_ENABLE = 0x1c; // u16 queue_enable
export const VIRTIO_PCI_COMMON_Q_NOFF = 0x1e; // u16 queue_notify_off (read-only)
export const VIRTIO_PCI_COMMON_Q_DESCLO = 0x20; // u64 queue_desc
export const VIRTIO_PCI_COMMON_Q_DESCHI = 0x24;
export const VIRTIO_PCI_COMMON_Q_AVAILLO = 0x28; // u64 queue_driver (the available ring)
export const VIRTIO_PCI_COMMON_Q_AVAILHI = 0x2c;
export const VIRTIO_PCI_COMMON_Q_USEDLO = 0x30; // u64 queue_device (the used ring)
export const VIRTIO_PCI_COMMON_Q_USEDHI = 0x34;
/** Bytes of the common configuration structure as virtio 1.0 defines it (Linux requires at least this much). */
export const VIRTIO_PCI_COMMON_CFG_SIZE = 0x38;

/** device_status bits (virtio 1.2 2.1). */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 0x01;
export const VIRTIO_CONFIG_S_DRIVER = 0x02;
export const VIRTIO_CONFIG_S_DRIVER_OK = 0x04;
export const VIRTIO_CONFIG_S_FEATURES_OK = 0x08;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

/** ISR status bits: a queue interrupt, a configuration change. Reading the ISR clears it and lowers INTx. */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

/** "No MSI-X vector" in config_msix_vector / queue_msix_vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** BAR 1: MSI-X table at 0, PBA at 0x800 (QEMU's layout). */
export const VIRTIO_PCI_MSIX_BAR = 1;
export const VIRTIO_PCI_MSIX_BAR_SIZE = 0x1000;
export const VIRTIO_PCI_MSIX_TABLE_OFFSET = 0;
export const VIRTIO_PCI_MSIX_PBA_OFFSET = 0x800;
/** BAR 4 (64-bit, prefetchable): four 4 KiB regions. */
export const VIRTIO_PCI_MODERN_BAR = 4;
export const VIRTIO_PCI_MODERN_BAR_SIZE = 0x4000;
export const VIRTIO_PCI_COMMON_OFFSET = 0x0000;
export const VIRTIO_PCI_ISR_OFFSET = 0x1000;
export const VIRTIO_PCI_DEVICE_OFFSET = 0x2000;
export const VIRTIO_PCI_NOTIFY_OFFSET = 0x3000;
export const VIRTIO_PCI_REGION_SIZE = 0x1000;
/** Queue q is notified by a 16-bit write at notify region + q * 4 (queue_notify_off = q). */
export const VIRTIO_PCI_NOTIFY_MULTIPLIER = 4;

/** The most queues (and MSI-X vectors: one per queue plus the configuration vector) a transport record holds. */
export const VIRTIO_PCI_MAX_QUEUES = 32;
export const VIRTIO_PCI_MAX_VECTORS = VIRTIO_PCI_MAX_QUEUES + 1;

/** PCI class codes QEMU gives each device type (so a guest's view matches QEMU's). */
const CLASS_CODES: Record<number, number> = {
  [VIRTIO_ID_NET]: 0x020000, // network controller, Ethernet
  [VIRTIO_ID_BLOCK]: 0x010000, // mass storage, SCSI
  [VIRTIO_ID_CONSOLE]: 0x078000, // communication controller, other
  [VIRTIO_ID_RNG]: 0x00ff00, // unclassified
};

/** The transport-owned feature bits offered on top of the back end's. */
export const VIRTIO_PCI_TRANSPORT_FEATURES =
  (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_RING_INDIRECT_DESC) | (1n << VIRTIO_F_RING_EVENT_IDX);

// ---- state ------------------------------------------------------------------------------------------------------

export const virtioPciState = withHooks(
  {
    name: 'virtio-pci',
    version: 1,
    minVersion: 1,
    fields: [
      bytes('config', P.PCIE_CONFIG_SPACE_SIZE),
      ...msixFields(VIRTIO_PCI_MAX_VECTORS),
      u32('deviceFeatureSelect'),
      u32('driverFeatureSelect'),
      u64('driverFeatures'),
      u8('status'),
      u8('configGeneration'),
      u8('isr'),
      u16('configMsixVector'),
      u16('queueSelect'),
      // Bumped on every activation, reset and failure: the I/O thread (re)builds its queues when it moves.
      u32('activation'),
      bool('active'),
      // Each queue's configuration and ring progress (devices/virtio/queue.ts's record) and its MSI-X vector.
      structArray('queues', virtqueueStateDescriptor, VIRTIO_PCI_MAX_QUEUES),
      array('queueMsixVectors', 'u16', VIRTIO_PCI_MAX_QUEUES),
    ],
  } as const satisfies Descriptor,
  {
    // The driver can only select a vector of the MSI-X table (the register write keeps NO_VECTOR otherwise), and
    // an interrupt is sent to the vector a record names.
    check(s) {
      const vector = (v: number, field: string) => {
        if (v !== VIRTIO_MSI_NO_VECTOR)
          within(v, VIRTIO_PCI_MAX_VECTORS - 1, field, `the MSI-X table has at most ${VIRTIO_PCI_MAX_VECTORS} vectors`);
      };
      vector(s.configMsixVector, 'configMsixVector');
      for (const [q, v] of s.queueMsixVectors.entries()) vector(v, `queueMsixVectors[${q}]`);
    },
  },
);

export type VirtioPciRecord = StateOf<typeof virtioPciState>;

/** A virtio-pci device's whole record: the transport's and the back end's, saved as one checkpoint section. */
export function virtioPciDescriptor<D extends Descriptor>(name: string, device: D) {
  return {
    name,
    version: 1,
    minVersion: 1,
    fields: [struct('transport', virtioPciState), struct('device', device)],
  } as const satisfies Descriptor;
}

// ---- options ----------------------------------------------------------------------------------------------------

export interface VirtioPciOptions {
  /** The bus to attach to and the slot. */
  readonly pci: { attach(slot: number, fn: PciFunction): PciSlot };
  readonly slot: number;
  readonly memory: GuestMemory;
  /** At least num_queues + 1 vectors (queue vectors, then the configuration vector). */
  readonly msi: MsiVectors;
  /** One notification eventfd per queue. */
  readonly notify: IoEventSlots;
  /**
   * The addresses firmware would have given the BARs (see src/machine/pci-plan.ts); with them the device comes out
   * of reset with memory decoding on. Without them the BARs read 0 until the guest assigns them.
   */
  readonly bars?: { readonly msix: number; readonly modern: number };
  /** For messages ("virtio-net-pci@03"). */
  readonly name?: string;
  /**
   * The machine lock, in the thread that runs queue work (the I/O thread), which holds it while a back end runs:
   * VirtioContext.outsideLock releases it around slow host I/O. Elsewhere absent (the I/O runs with the lock held).
   */
  readonly ioLock?: IoThreadHold;
  /**
   * False (QEMU's ioeventfd=off): queue notifications are never bound to eventfds in the kernel; every one exits to
   * the notify region's handler, which signals the same eventfd. Default true.
   */
  readonly ioeventfd?: boolean;
  /** One-line notices (a device that needs a reset, and why). */
  readonly log?: (line: string) => void;
}

// ---- the transport ------------------------------------------------------------------------------------------------

export class VirtioPciTransport implements PciFunction {
  readonly name: string;
  readonly config: PciConfigSpace;
  readonly msix: MsixCapability;
  readonly slot: PciSlot;
  readonly numQueues: number;
  /** Everything offered: the back end's features and the transport's. */
  readonly offeredFeatures: bigint;
  private readonly log: (line: string) => void;
  private readonly modernBar: IoHandler;
  private readonly msixBar: IoHandler;
  private readonly commonRegs: readonly CommonRegister[];
  private readonly commonByte: (CommonRegister | undefined)[];
  /** This thread's queues while the back end is active here (the I/O thread only). */
  private queues: (VirtQueue | null)[] | null = null;
  private seenActivation = -1;
  private readonly context: VirtioContext;

  constructor(
    readonly state: VirtioPciRecord,
    readonly backend: VirtioBackend,
    private readonly options: VirtioPciOptions,
  ) {
    this.name = options.name ?? `virtio-${backend.deviceType}-pci@${options.slot.toString(16).padStart(2, '0')}`;
    this.log = options.log ?? (() => {});
    const n = backend.queueMaxSizes.length;
    if (n < 1 || n > VIRTIO_PCI_MAX_QUEUES)
      throw new RangeError(`${this.name}: ${n} queues (1..${VIRTIO_PCI_MAX_QUEUES})`);
    for (const [q, max] of backend.queueMaxSizes.entries()) {
      if (!isPowerOfTwo(max) || max > VIRTQ_MAX_SIZE)
        throw new RangeError(`${this.name}: queue ${q} maximum size ${max} is not a power of two <= ${VIRTQ_MAX_SIZE}`);
    }
    if (options.notify.count < n)
      throw new RangeError(`${this.name}: ${n} queues but ${options.notify.count} notification slots`);
    if (backend.configSize < 0 || backend.configSize > VIRTIO_PCI_REGION_SIZE)
      throw new RangeError(`${this.name}: device config of ${backend.configSize} bytes`);
    this.numQueues = n;
    this.offeredFeatures = BigInt.asUintN(64, backend.deviceFeatures) | VIRTIO_PCI_TRANSPORT_FEATURES;

    const bars = options.bars;
    this.config = new PciConfigSpace(
      state.config,
      {
        vendorId: VIRTIO_PCI_VENDOR_ID,
        deviceId: VIRTIO_PCI_MODERN_DEVICE_BASE + backend.deviceType,
        revision: VIRTIO_PCI_REVISION,
        classCode: CLASS_CODES[backend.deviceType] ?? 0xff0000,
        subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
        subsystemId: VIRTIO_PCI_SUBSYSTEM_ID,
        interruptPin: 1,
      },
      { command: bars ? P.PCI_COMMAND_MEMORY : 0 },
    );
    this.config.defineBar(VIRTIO_PCI_MSIX_BAR, { kind: 'mmio32', size: VIRTIO_PCI_MSIX_BAR_SIZE }, bars?.msix ?? 0);
    this.config.defineBar(
      VIRTIO_PCI_MODERN_BAR,
      { kind: 'mmio64', size: VIRTIO_PCI_MODERN_BAR_SIZE, prefetchable: true },
      bars?.modern ?? 0,
    );
    this.msix = new MsixCapability(
      this.config,
      {
        vectors: n + 1,
        tableBar: VIRTIO_PCI_MSIX_BAR,
        tableOffset: VIRTIO_PCI_MSIX_TABLE_OFFSET,
        pbaBar: VIRTIO_PCI_MSIX_BAR,
        pbaOffset: VIRTIO_PCI_MSIX_PBA_OFFSET,
      },
      state.msixTable,
      state.msixPba,
      options.msi,
    );
    this.addVirtioCap(VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_REGION_SIZE);
    this.addVirtioCap(VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFFSET, VIRTIO_PCI_REGION_SIZE);
    this.addVirtioCap(VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFFSET, VIRTIO_PCI_REGION_SIZE);
    this.addVirtioCap(VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFFSET, VIRTIO_PCI_REGION_SIZE);

    this.commonRegs = this.commonRegisters();
    this.commonByte = new Array(VIRTIO_PCI_COMMON_CFG_SIZE).fill(undefined);
    for (const r of this.commonRegs) for (let i = 0; i < r.size; i++) this.commonByte[r.at + i] = r;
    this.modernBar = { read: (o, s) => this.readModern(o, s), write: (o, s, v) => this.writeModern(o, s, v) };
    this.msixBar = this.msix.barHandler(VIRTIO_PCI_MSIX_BAR);

    const record = state;
    this.context = {
      memory: options.memory,
      get features() {
        return record.driverFeatures;
      },
      queue: (index) => {
        const q = this.queues?.[index];
        if (!q) throw new RangeError(`${this.name}: no queue ${index}, or the device is not active here`);
        return q;
      },
      interrupt: (index) => this.interruptQueue(index),
      configChanged: () => this.configChanged(),
      fail: (reason) => this.needsReset(reason),
      outsideLock: (io) => this.outsideLock(io),
      parkRequested: () => this.options.ioLock?.parkRequested() ?? false,
      // The queue's own notification eventfd: the I/O loop sees it in its next batch, after a pause if one is asked.
      serveLater: (index) => this.options.notify.signal(index),
    };
    this.slot = options.pci.attach(options.slot, this);
  }

  /** VirtioContext.outsideLock: `io` with the machine lock released; false if the device was reset meanwhile. */
  private outsideLock(io: () => void): boolean {
    const lock = this.options.ioLock;
    if (!lock) {
      io();
      return true;
    }
    const activation = this.state.activation;
    let failure: { error: unknown } | null = null;
    lock.unlock();
    try {
      io();
    } catch (error) {
      failure = { error };
    } finally {
      lock.lock();
    }
    // A reset, a failure or a restore bumps `activation`: the queues this request came from are gone.
    if (this.state.activation !== activation || !this.state.active) return false;
    if (failure) throw failure.error;
    return true;
  }

  /** A virtio vendor capability pointing at `length` bytes at `offset` of BAR 4. */
  private addVirtioCap(type: number, offset: number, length: number): void {
    const notify = type === VIRTIO_PCI_CAP_NOTIFY_CFG;
    const len = notify ? VIRTIO_PCI_NOTIFY_CAP_LEN : VIRTIO_PCI_CAP_LEN;
    const at = this.config.addCapability(P.PCI_CAP_ID_VNDR, len);
    this.config.setImage(at + 2, 1, len); // cap_len
    this.config.setImage(at + VIRTIO_PCI_CAP_CFG_TYPE, 1, type);
    this.config.setImage(at + VIRTIO_PCI_CAP_BAR, 1, VIRTIO_PCI_MODERN_BAR);
    this.config.setImage(at + VIRTIO_PCI_CAP_OFFSET, 4, offset);
    this.config.setImage(at + VIRTIO_PCI_CAP_LENGTH, 4, length);
    if (notify) this.config.setImage(at + VIRTIO_PCI_NOTIFY_CAP_MULT, 4, VIRTIO_PCI_NOTIFY_MULTIPLIER);
  }

  // ---- PciFunction ----------------------------------------------------------------------------------------

  bar(index: number): IoHandler | undefined {
    if (index === VIRTIO_PCI_MODERN_BAR) return this.modernBar;
    if (index === VIRTIO_PCI_MSIX_BAR) return this.msixBar;
    return undefined;
  }

  configWritten(offset: number, size: number): void {
    this.msix.configWritten(offset, size);
    // With MSI-X on, INTx is not used: a pin left asserted from before would never be cleared by an ISR read.
    if (touches(offset, size, this.msix.offset + P.PCI_MSIX_FLAGS, 2) && this.msix.enabled) this.slot.intx.set(false);
  }

  /** The notification addresses follow BAR 4: one ioeventfd per queue at notify + q * multiplier. */
  barsMapped(bars: readonly (MappedBar | null)[]): void {
    const modern = this.options.ioeventfd === false ? null : bars[VIRTIO_PCI_MODERN_BAR];
    for (let q = 0; q < this.numQueues; q++) {
      if (modern) {
        this.options.notify.bind(q, {
          address: modern.address + VIRTIO_PCI_NOTIFY_OFFSET + q * VIRTIO_PCI_NOTIFY_MULTIPLIER,
          length: 2,
        });
      } else {
        this.options.notify.unbind(q);
      }
    }
  }

  // ---- life cycle -------------------------------------------------------------------------------------------

  /** Power-on (main thread, machine paused): the back end's record, the PCI function and the virtio device. */
  reset(): void {
    this.backend.powerOn?.();
    this.config.reset();
    this.msix.reset();
    this.resetDevice();
    this.slot.configChanged();
  }

  /**
   * After a checkpoint restored the record (or after reset): MSI routes and notification addresses re-registered
   * for this process, the INTx line re-driven, and the I/O thread told to rebuild its queues and re-activate the
   * back end (a restored device with DRIVER_OK resumes where it was).
   */
  restored(): void {
    this.msix.restored();
    this.slot.configChanged();
    this.slot.intx.set(!this.msix.enabled && this.state.isr !== 0);
    this.state.activation = (this.state.activation + 1) >>> 0;
    if (this.state.active) this.options.notify.signal(0);
  }

  /** The I/O thread's work for this device: a watch per queue notification, one per host fd. */
  ioWatches(): IoWatch[] {
    const watches: IoWatch[] = [];
    for (let q = 0; q < this.numQueues; q++) {
      watches.push({
        name: `${this.name}/queue${q}`,
        fd: this.options.notify.fd(q),
        kind: 'eventfd',
        group: this.name,
        ready: () => this.onNotify(q),
      });
    }
    const fd = this.backend.hostFd;
    if (fd !== undefined && fd >= 0) {
      watches.push({
        name: `${this.name}/host-fd${fd}`,
        fd,
        kind: 'readable',
        group: this.name,
        ready: () => this.onHostReadable(),
      });
    }
    return watches;
  }

  // ---- virtio device status ---------------------------------------------------------------------------------

  /** The virtio part of a reset (device_status written 0): the PCI function (BARs, MSI-X table) is untouched. */
  private resetDevice(): void {
    const s = this.state;
    s.deviceFeatureSelect = 0;
    s.driverFeatureSelect = 0;
    s.driverFeatures = 0n;
    s.status = 0;
    s.isr = 0;
    s.configMsixVector = VIRTIO_MSI_NO_VECTOR;
    s.queueSelect = 0;
    s.active = false;
    s.activation = (s.activation + 1) >>> 0;
    for (let q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++) {
      resetVirtqueueState(s.queues[q], q < this.numQueues ? this.backend.queueMaxSizes[q] : 0);
      s.queueMsixVectors[q] = VIRTIO_MSI_NO_VECTOR;
    }
    this.queues = null;
    this.slot.intx.set(false);
    this.backend.reset();
  }

  private writeStatus(value: number): void {
    const s = this.state;
    value &= 0xff;
    if (value === 0) {
      this.resetDevice();
      return;
    }
    const old = s.status;
    // The device owns NEEDS_RESET: the driver can neither set nor clear it (only a reset does).
    let next = (value & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
    if (next & VIRTIO_CONFIG_S_FEATURES_OK && !(old & VIRTIO_CONFIG_S_FEATURES_OK) && !this.featuresAcceptable()) {
      next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    s.status = next;
    if (next & VIRTIO_CONFIG_S_DRIVER_OK && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) this.driverOk();
  }

  /** FEATURES_OK sticks only for a subset of what was offered that includes VERSION_1 (modern devices). */
  private featuresAcceptable(): boolean {
    const f = this.state.driverFeatures;
    if ((f & ~this.offeredFeatures) !== 0n) {
      this.log(`${this.name}: driver accepted features 0x${f.toString(16)} beyond those offered; FEATURES_OK refused`);
      return false;
    }
    if ((f & (1n << VIRTIO_F_VERSION_1)) === 0n) {
      this.log(
        `${this.name}: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported); FEATURES_OK refused`,
      );
      return false;
    }
    return true;
  }

  /** DRIVER_OK: check every enabled queue, then hand activation to the I/O thread. */
  private driverOk(): void {
    const s = this.state;
    if (s.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    if (!(s.status & VIRTIO_CONFIG_S_FEATURES_OK)) {
      this.needsReset('DRIVER_OK without FEATURES_OK');
      return;
    }
    for (let q = 0; q < this.numQueues; q++) {
      if (!s.queues[q].ready) continue;
      const why = this.queueProblem(q);
      if (why) {
        this.needsReset(`queue ${q}: ${why}`);
        return;
      }
    }
    s.active = true;
    s.activation = (s.activation + 1) >>> 0;
    // Wake the I/O thread: it activates the back end and processes whatever the driver queued already.
    this.options.notify.signal(this.firstEnabledQueue());
  }

  private firstEnabledQueue(): number {
    for (let q = 0; q < this.numQueues; q++) if (this.state.queues[q].ready) return q;
    return 0;
  }

  /** Why queue q cannot be used as configured, or null. */
  private queueProblem(q: number): string | null {
    const r = this.state.queues[q];
    const size = r.size;
    const max = this.backend.queueMaxSizes[q];
    if (!isPowerOfTwo(size) || size > max) return `size ${size} is not a power of two in 1..${max}`;
    const memory = this.options.memory;
    const parts: [string, bigint, number, number][] = [
      ['descriptor table', r.descAddr, descTableBytes(size), VIRTQ_DESC_ALIGN],
      ['available ring', r.availAddr, availRingBytes(size), VIRTQ_AVAIL_ALIGN],
      ['used ring', r.usedAddr, usedRingBytes(size), VIRTQ_USED_ALIGN],
    ];
    for (const [what, address, length, align] of parts) {
      if (address > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(address), length)) {
        return `${what} at 0x${address.toString(16)} (+0x${length.toString(16)}) is outside guest RAM`;
      }
      if (Number(address % BigInt(align)) !== 0)
        return `${what} at 0x${address.toString(16)} is not ${align}-byte aligned`;
    }
    return null;
  }

  /** The device cannot go on: DEVICE_NEEDS_RESET, queues dropped, the driver told through a config interrupt. */
  private needsReset(reason: string): void {
    const s = this.state;
    this.log(`${this.name}: device needs reset: ${reason}`);
    const wasOk = (s.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0;
    s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    s.active = false;
    s.activation = (s.activation + 1) >>> 0;
    this.queues = null;
    if (wasOk) this.configChanged();
  }

  // ---- interrupts -------------------------------------------------------------------------------------------

  private interruptQueue(q: number): void {
    if (!Number.isInteger(q) || q < 0 || q >= this.numQueues) return;
    if (this.msix.enabled) {
      const vector = this.state.queueMsixVectors[q];
      if (vector !== VIRTIO_MSI_NO_VECTOR) this.msix.notify(vector);
      return;
    }
    this.state.isr |= VIRTIO_PCI_ISR_QUEUE;
    this.slot.intx.set(true);
  }

  private configChanged(): void {
    const s = this.state;
    s.configGeneration = (s.configGeneration + 1) & 0xff;
    if (this.msix.enabled) {
      if (s.configMsixVector !== VIRTIO_MSI_NO_VECTOR) this.msix.notify(s.configMsixVector);
      return;
    }
    s.isr |= VIRTIO_PCI_ISR_CONFIG;
    this.slot.intx.set(true);
  }

  // ---- I/O thread -------------------------------------------------------------------------------------------

  /**
   * Follows `activation`: when it moved, this thread's queues are rebuilt from the record and the back end is
   * activated here, then every enabled queue is processed once (buffers made available before DRIVER_OK, or
   * notifications lost across a restart). Returns true while the device is active in this thread.
   */
  private sync(): boolean {
    const s = this.state;
    if (s.activation === this.seenActivation) return this.queues !== null;
    this.seenActivation = s.activation;
    this.queues = null;
    if (!s.active) return false;
    const built: VirtQueue[] = [];
    try {
      // A view per queue (one that is not enabled pops nothing); each validates its ring layout from the record.
      for (let q = 0; q < this.numQueues; q++)
        built.push(new SplitQueue(this.options.memory, s.queues[q], s.driverFeatures, q, `${this.name} queue ${q}`));
      this.queues = built;
      this.backend.activate(this.context);
      for (let q = 0; q < this.numQueues && this.queues; q++) if (s.queues[q].ready) this.backend.notify(q);
    } catch (e) {
      this.needsReset(`activation failed: ${(e as Error)?.message ?? e}`);
      return false;
    }
    return this.queues !== null;
  }

  /** Queue q's notification eventfd fired (I/O thread, machine lock held). */
  private onNotify(q: number): void {
    if (!this.sync()) return;
    if (!this.state.queues[q].ready || !this.queues) return;
    try {
      this.backend.notify(q);
    } catch (e) {
      this.needsReset(`queue ${q}: ${(e as Error)?.message ?? e}`);
    }
  }

  /** A host fd of the back end is readable. False: stop watching it until the guest notifies a queue. */
  private onHostReadable(): boolean {
    if (!this.sync() || !this.backend.pollHost) return false;
    try {
      return this.backend.pollHost();
    } catch (e) {
      this.needsReset(`host input: ${(e as Error)?.message ?? e}`);
      return false;
    }
  }

  // ---- BAR 4: common config, ISR, device config, notifications ----------------------------------------------

  private readModern(offset: number, size: number): number {
    const region = offset & ~(VIRTIO_PCI_REGION_SIZE - 1);
    const at = offset - region;
    switch (region) {
      case VIRTIO_PCI_COMMON_OFFSET:
        return this.readCommon(at, size);
      case VIRTIO_PCI_ISR_OFFSET: {
        if (at !== 0) return 0;
        // Reading the ISR acknowledges it: the bits clear and the INTx line drops.
        const isr = this.state.isr;
        this.state.isr = 0;
        if (isr) this.slot.intx.set(false);
        return isr;
      }
      case VIRTIO_PCI_DEVICE_OFFSET:
        if ((size !== 1 && size !== 2 && size !== 4) || at + size > this.backend.configSize) return 0;
        return this.backend.readConfig(at, size) >>> 0;
      default:
        return 0;
    }
  }

  private writeModern(offset: number, size: number, value: number): void {
    const region = offset & ~(VIRTIO_PCI_REGION_SIZE - 1);
    const at = offset - region;
    switch (region) {
      case VIRTIO_PCI_COMMON_OFFSET:
        this.writeCommon(at, size, value);
        break;
      case VIRTIO_PCI_DEVICE_OFFSET:
        if ((size === 1 || size === 2 || size === 4) && at + size <= this.backend.configSize)
          this.backend.writeConfig(at, size, value);
        break;
      case VIRTIO_PCI_NOTIFY_OFFSET: {
        // A notification that exited (its ioeventfd is not bound, or the width did not match): the same eventfd.
        const q = at / VIRTIO_PCI_NOTIFY_MULTIPLIER;
        if (Number.isInteger(q) && q < this.numQueues) this.options.notify.signal(q);
        break;
      }
      default:
        break; // the ISR is read-only
    }
  }

  private readCommon(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size && i < 4; i++) {
      const r = this.commonByte[offset + i];
      if (!r) continue;
      value |= ((r.read() >>> (8 * (offset + i - r.at))) & 0xff) << (8 * i);
    }
    return value >>> 0;
  }

  /** A write of any width: each register it touches gets its bytes merged into its current value. */
  private writeCommon(offset: number, size: number, value: number): void {
    const touched: CommonRegister[] = [];
    for (let i = 0; i < size && i < 4; i++) {
      const r = this.commonByte[offset + i];
      if (r && !touched.includes(r)) touched.push(r);
    }
    for (const r of touched) {
      if (!r.write) continue;
      let next = r.read();
      for (let i = 0; i < size && i < 4; i++) {
        const at = offset + i - r.at;
        if (at < 0 || at >= r.size) continue;
        next = (next & ~(0xff << (8 * at))) | (((value >>> (8 * i)) & 0xff) << (8 * at));
      }
      r.write(next >>> 0);
    }
  }

  private get selected(): VirtqueueState | null {
    const q = this.state.queueSelect;
    return q < this.numQueues ? this.state.queues[q] : null;
  }

  /** The common configuration registers: offset, width, read, write (absent: read-only). */
  private commonRegisters(): CommonRegister[] {
    const s = this.state;
    const vector = (v: number) => (v === VIRTIO_MSI_NO_VECTOR || v < this.msix.vectors ? v : VIRTIO_MSI_NO_VECTOR);
    // Queue registers change only while the queue is not enabled (and the selected queue exists).
    const queueField = (get: (r: VirtqueueState) => number, set: (r: VirtqueueState, v: number) => void) => ({
      read: () => {
        const r = this.selected;
        return r ? get(r) : 0;
      },
      write: (v: number) => {
        const r = this.selected;
        if (r && !r.ready) set(r, v);
      },
    });
    const half = (field: 'descAddr' | 'availAddr' | 'usedAddr', high: boolean) =>
      queueField(
        (r) => Number(high ? r[field] >> 32n : r[field] & 0xffffffffn),
        (r, v) => {
          r[field] = high
            ? (r[field] & 0xffffffffn) | (BigInt(v >>> 0) << 32n)
            : (r[field] & ~0xffffffffn) | BigInt(v >>> 0);
        },
      );
    const featureWord = (features: bigint, select: number) =>
      select < 2 ? Number((features >> BigInt(32 * select)) & 0xffffffffn) : 0;
    return [
      {
        at: VIRTIO_PCI_COMMON_DFSELECT,
        size: 4,
        read: () => s.deviceFeatureSelect,
        write: (v) => {
          s.deviceFeatureSelect = v;
        },
      },
      { at: VIRTIO_PCI_COMMON_DF, size: 4, read: () => featureWord(this.offeredFeatures, s.deviceFeatureSelect) },
      {
        at: VIRTIO_PCI_COMMON_GFSELECT,
        size: 4,
        read: () => s.driverFeatureSelect,
        write: (v) => {
          s.driverFeatureSelect = v;
        },
      },
      {
        at: VIRTIO_PCI_COMMON_GF,
        size: 4,
        read: () => featureWord(s.driverFeatures, s.driverFeatureSelect),
        write: (v) => {
          // Features are fixed once FEATURES_OK stuck; words past the second do not exist.
          const select = s.driverFeatureSelect;
          if (s.status & VIRTIO_CONFIG_S_FEATURES_OK || select > 1) return;
          const shift = BigInt(32 * select);
          s.driverFeatures = (s.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(v >>> 0) << shift);
        },
      },
      {
        at: VIRTIO_PCI_COMMON_MSIX,
        size: 2,
        read: () => s.configMsixVector,
        write: (v) => {
          s.configMsixVector = vector(v);
        },
      },
      { at: VIRTIO_PCI_COMMON_NUMQ, size: 2, read: () => this.numQueues },
      { at: VIRTIO_PCI_COMMON_STATUS, size: 1, read: () => s.status, write: (v) => this.writeStatus(v) },
      { at: VIRTIO_PCI_COMMON_CFGGENERATION, size: 1, read: () => s.configGeneration },
      {
        at: VIRTIO_PCI_COMMON_Q_SELECT,
        size: 2,
        read: () => s.queueSelect,
        write: (v) => {
          s.queueSelect = v;
        },
      },
      {
        at: VIRTIO_PCI_COMMON_Q_SIZE,
        size: 2,
        ...queueField(
          (r) => r.size,
          (r, v) => {
            r.size = v;
          },
        ),
      },
      {
        at: VIRTIO_PCI_COMMON_Q_MSIX,
        size: 2,
        read: () => (this.selected ? s.queueMsixVectors[s.queueSelect] : VIRTIO_MSI_NO_VECTOR),
        write: (v) => {
          if (this.selected) s.queueMsixVectors[s.queueSelect] = vector(v);
        },
      },
      {
        at: VIRTIO_PCI_COMMON_Q_ENABLE,
        size: 2,
        read: () => (this.selected?.ready ? 1 : 0),
        write: (v) => this.enableQueue(v),
      },
      { at: VIRTIO_PCI_COMMON_Q_NOFF, size: 2, read: () => (this.selected ? s.queueSelect : 0) },
      { at: VIRTIO_PCI_COMMON_Q_DESCLO, size: 4, ...half('descAddr', false) },
      { at: VIRTIO_PCI_COMMON_Q_DESCHI, size: 4, ...half('descAddr', true) },
      { at: VIRTIO_PCI_COMMON_Q_AVAILLO, size: 4, ...half('availAddr', false) },
      { at: VIRTIO_PCI_COMMON_Q_AVAILHI, size: 4, ...half('availAddr', true) },
      { at: VIRTIO_PCI_COMMON_Q_USEDLO, size: 4, ...half('usedAddr', false) },
      { at: VIRTIO_PCI_COMMON_Q_USEDHI, size: 4, ...half('usedAddr', true) },
    ];
  }

  /** queue_enable = 1 (0 is not a thing the driver may write in virtio 1.x; ignored). */
  private enableQueue(value: number): void {
    const r = this.selected;
    if (!r || r.ready || value !== 1) return;
    const why = this.queueProblem(this.state.queueSelect);
    if (why) {
      this.needsReset(`queue ${this.state.queueSelect}: ${why}`);
      return;
    }
    r.lastAvailIdx = 0;
    r.usedIdx = 0;
    r.signalledUsed = 0;
    r.signalledUsedValid = false;
    r.ready = true;
  }
}

interface CommonRegister {
  readonly at: number;
  readonly size: 1 | 2 | 4;
  read(): number;
  write?(value: number): void;
}
