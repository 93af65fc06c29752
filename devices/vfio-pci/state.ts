// A passed-through function's guest-visible state: its vmstate record. The virtual config space (BAR addresses,
// COMMAND, MSI and MSI-X registers), the emulated MSI-X table and PBA, what VFIO has been told about interrupts and
// where each mmapped BAR window sits in guest space. Everything per thread is derived from this and the spec, so any
// thread handles any access, and a checkpoint (CPR with VFIO) carries it.
import { array, bytes, u8, u16, u32, type Descriptor, type StateOf } from '../../cpr/vmstate/vmstate.js';
import * as R from '../pci/constants.js';
import { msixFields } from '../pci/msix.js';

/** MSI-X vectors a record has room for (the PCI maximum). */
export const VFIO_PCI_MAX_VECTORS = R.PCI_MSIX_MAX_VECTORS;
/** mmapped BAR windows a record tracks (a BAR split around its MSI-X pages gives two or three). */
export const VFIO_PCI_MAX_WINDOWS = 24;

/** record.irqMode: which interrupt VFIO is delivering (VFIO allows one index at a time). */
export const IRQ_NONE = 0;
export const IRQ_INTX = 1;
export const IRQ_MSI = 2;
export const IRQ_MSIX = 3;

export const vfioPciState = {
  name: 'vfio-pci',
  version: 1,
  minVersion: 1,
  fields: [
    bytes('config', R.PCIE_CONFIG_SPACE_SIZE),
    ...msixFields(VFIO_PCI_MAX_VECTORS),
    u8('irqMode'),
    // Vectors enabled in VFIO (MSI: 2^MME; MSI-X: the table size).
    u16('irqVectors'),
    // Per vector, 1 while VFIO signals the vector's irqfd (unmasked), 0 while it signals the pending eventfd.
    bytes('vectorLive', VFIO_PCI_MAX_VECTORS / 8),
    // MSI's pending bits (per-vector masking), mirrored in the capability's pending register.
    u32('msiPending'),
    // Where each BAR window is mapped in guest space (0: not mapped).
    array('windowGpa', 'u64', VFIO_PCI_MAX_WINDOWS),
  ],
} as const satisfies Descriptor;

export type VfioPciRecord = StateOf<typeof vfioPciState>;
