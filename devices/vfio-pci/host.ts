// What a vfio-pci device model sees of its host device and of the VM, as plain interfaces (like src/bus/pci-types.ts
// for MSI and ioeventfds): the runtime implements them over vfio/ and the VM fd (src/runtime/vfio-services.ts), unit
// tests with fakes. Nothing here opens or ioctls anything, so a device handler on any thread can use them.
//
// Everything a spec carries is plain data: the main thread opens the container, group and device, maps guest RAM for
// DMA, mmaps the BARs and makes the eventfds while the machine is planned (src/machine/vfio-plan.ts); every thread
// then reaches the same process-wide fds and mappings through the numbers below.
import type { MsiBlock } from '../../src/bus/pci-types.js';

/** VFIO's PCI region indices (<linux/vfio.h> VFIO_PCI_*_REGION_INDEX). */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
/** VFIO's PCI interrupt indices (VFIO_PCI_*_IRQ_INDEX). */
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;

/** The host device as the model drives it (any thread; errors throw, with the operation and errno). */
export interface VfioDeviceOps {
  /** pread of a region (a BAR, the ROM, config space) at `offset` into `into`. */
  read(region: number, offset: number, into: Uint8Array): void;
  /** pwrite of `bytes` to a region at `offset`. */
  write(region: number, offset: number, bytes: Uint8Array): void;
  /** VFIO_DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER: sub-interrupts start.. signal these eventfds (-1: none). */
  setIrqs(index: number, start: number, fds: readonly number[]): void;
  /** VFIO_DEVICE_SET_IRQS, DATA_NONE | ACTION_TRIGGER, count 0: the index disabled. */
  disableIrqs(index: number): void;
  /** INTx's unmask eventfd (KVM's resample fd: the guest's EOI unmasks the line in the kernel); -1: none. */
  setIntxResample(fd: number): void;
  /** VFIO_DEVICE_RESET (false when the device cannot reset). */
  reset(): boolean;
}

/** Guest-physical windows backed by mmapped BAR pieces: KVM memory slots the model places and removes. */
export interface VfioBarSlots {
  /** Window `window` (an index in the spec's `windows`) appears at `gpa`; moves it when it is elsewhere. */
  map(window: number, gpa: number): void;
  /** Window `window` disappears from guest space (nothing when it is not mapped). */
  unmap(window: number): void;
}

/** What a thread gives the vfio-pci devices it builds (DeviceEnvironment.vfio). */
export interface VfioServices {
  device(spec: VfioPciSpec): { ops: VfioDeviceOps; slots: VfioBarSlots };
}

/** A BAR as the host device has it (from its VFIO region and its BAR register's type bits). */
export interface VfioBarInfo {
  readonly index: number;
  readonly kind: 'mmio32' | 'mmio64' | 'io';
  readonly size: number;
  readonly prefetchable: boolean;
}

/** A piece of a BAR mmapped into tsvmm: mapped into the guest as a KVM memory slot while the BAR decodes. */
export interface VfioBarWindow {
  readonly bar: number;
  /** Offset and size inside the BAR (page-aligned). */
  readonly offset: number;
  readonly size: number;
  /** tsvmm's mapping of it (process-wide). */
  readonly hostAddress: number;
  /** Its KVM memory slot. */
  readonly memslot: number;
}

/** Everything a thread needs to build the model of one passed-through function: plain data. */
export interface VfioPciSpec {
  readonly kind: 'vfio-pci';
  readonly id: string;
  /** The host function, as 0000:00:03.0 (messages and query-pci). */
  readonly host: string;
  readonly slot: number;
  /** The device fd (process-wide; VFIO_GROUP_GET_DEVICE_FD). */
  readonly deviceFd: number;
  /** The host function's configuration space as read at start-up (256 bytes; identity and capabilities). */
  readonly config: readonly number[];
  readonly bars: readonly VfioBarInfo[];
  /** BAR addresses as firmware would assign them (index → address). */
  readonly barAddresses: readonly (readonly [number, number])[];
  readonly windows: readonly VfioBarWindow[];
  /** Bytes of the expansion ROM the guest sees (VFIO's ROM region; 0: none, or rombar=0). */
  readonly romSize: number;
  /** MSI / MSI-X vectors: GSI routes + irqfds, one per vector (the larger of the two capabilities' counts). */
  readonly msi: MsiBlock | null;
  /** The irqfds' eventfds (what VFIO signals for an unmasked vector), per vector. */
  readonly vectorFds: readonly number[];
  /** Per vector, an eventfd VFIO signals while the guest masks the vector (the I/O thread sets its pending bit). */
  readonly pendingFds: readonly number[];
  /** INTx: the eventfd VFIO signals and KVM's resample fd (a resampling irqfd on the pin's GSI), or null. */
  readonly intx: { readonly trigger: number; readonly resample: number } | null;
  /** Whether VFIO_DEVICE_RESET works on it. */
  readonly canReset: boolean;
}

/**
 * CPR with VFIO, process-wide (src/machine/vfio-cpr.ts sets it): 'inherited' while the functions were adopted from
 * an old process (cpr-transfer, cpr-exec) and its state is not restored yet — the device runs on, so reset and
 * restore leave VFIO alone; 'rewire' during that restore — interrupts are moved onto this process's eventfds without
 * being disabled; 'none' otherwise.
 */
export const vfioAdoption: { phase: 'none' | 'inherited' | 'rewire' } = { phase: 'none' };
