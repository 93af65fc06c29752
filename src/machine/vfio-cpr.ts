// CPR with VFIO (cpr-transfer and cpr-exec): what a machine's passed-through functions need to cross to a new
// process without the device noticing — QEMU's vfio cpr, in tsvmm's order of things.
//
//   old process: the container, group and device fds are named (vfio:container, vfio:group:N, vfio:device:BDF) and
//                handed over with guest RAM (SCM_RIGHTS on the cpr channel, or kept across the exec); once the guest
//                is stopped and captured, the DMA mappings' process addresses are invalidated
//                (VFIO_DMA_UNMAP_FLAG_VADDR: the IOMMU keeps every mapping, device DMA goes on); after a hand-over
//                the machine's teardown no longer unmaps DMA (the new process owns it).
//   new process: the plan adopts the fds instead of opening anything (no reset, no re-open, no SET_IOMMU, no
//                MAP_DMA), and during the pause, before the device records are restored, gives every mapping its new
//                address (VFIO_DMA_MAP_FLAG_VADDR); the restore then re-wires the interrupts onto this process's
//                eventfds (devices/vfio-pci: vfioAdoption) and re-creates the BAR memory slots.
//
// One machine per process has passed-through functions; its hand-over state is this module's.
import { Errno } from '../sys/errno.js';
import type { NamedFd } from '../sys/exec-fds.js';
import { vfioAdoption } from '../../devices/vfio-pci/host.js';

/**
 * The container operations a hand-over needs (vfio/container.ts). The kernel's rules (vfio_iommu_type1.c): an
 * invalidate needs every mapping of the range valid, an update needs the mapping invalid and exactly its range;
 * otherwise each fails with EINVAL (an error carrying `errno`), changing nothing.
 */
export interface VfioCprContainer {
  invalidateVaddr(iova: bigint, size: bigint): void;
  updateVaddr(iova: bigint, size: bigint, vaddr: bigint): void;
  /** VFIO_CHECK_EXTENSION(VFIO_UPDATE_VADDR). */
  canUpdateVaddr(): boolean;
}

export interface DmaRange {
  readonly iova: bigint;
  readonly size: bigint;
  readonly vaddr: bigint;
}

export class VfioHandover {
  /** The DMA addresses are invalid (between invalidate() and a hand-over's end, or revalidate()). */
  private invalid = false;
  /** The new process has them now: this one must not unmap DMA at its teardown. */
  handedOver = false;
  /** New process: the mappings still point at the old process's addresses (adopted, not yet updated). */
  private pendingUpdate: boolean;
  /**
   * New process: the guest was not restored here (yet). The old process may take the mappings back (a failed
   * hand-over), so this one must not unmap them at its teardown; closing its container fd only drops a reference.
   */
  private adoptionPending: boolean;

  constructor(
    private readonly container: VfioCprContainer,
    /** Guest RAM as mapped in this process (IOVA = gpa). */
    private readonly ranges: readonly DmaRange[],
    /** The fds a new process needs, by name. */
    readonly fds: readonly NamedFd[],
    adopted: boolean,
  ) {
    this.pendingUpdate = adopted;
    this.adoptionPending = adopted;
  }

  /** Throws (one line) when the kernel cannot re-point DMA at a new process's mapping. */
  check(): void {
    if (!this.container.canUpdateVaddr())
      throw new Error(
        'the host VFIO has no VFIO_UPDATE_VADDR: passed-through devices cannot cross to a new process with their DMA kept',
      );
  }

  /** Old process, guest stopped: the IOMMU keeps the mappings but forgets this process's addresses. */
  invalidate(): void {
    const done: DmaRange[] = [];
    try {
      for (const r of this.ranges) {
        this.container.invalidateVaddr(r.iova, r.size);
        done.push(r);
      }
    } catch (e) {
      for (const r of done) this.container.updateVaddr(r.iova, r.size, r.vaddr);
      throw e;
    }
    this.invalid = true;
  }

  /**
   * Old process, the hand-over failed: the mappings point at this process's RAM again. The new process may have
   * given some of them its own addresses before it failed (cpr-transfer: it updates them before it restores the
   * devices), and the kernel takes a new address only for an invalid one (EINVAL otherwise): such a mapping is
   * invalidated again, then updated. Every range is tried; the first failure is thrown after.
   */
  revalidate(): void {
    if (!this.invalid) return;
    let failure: unknown = null;
    for (const r of this.ranges) {
      try {
        try {
          this.container.updateVaddr(r.iova, r.size, r.vaddr);
        } catch (e) {
          if ((e as { errno?: unknown }).errno !== Errno.EINVAL) throw e;
          this.container.invalidateVaddr(r.iova, r.size);
          this.container.updateVaddr(r.iova, r.size, r.vaddr);
        }
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== null) throw failure;
    this.invalid = false;
  }

  /** Whether teardown may unmap the DMA (not once another process owns it, nor before an adoption completed). */
  get ownsDma(): boolean {
    return !this.handedOver && !this.adoptionPending;
  }

  /**
   * New process, guest state received (the old process has invalidated its addresses): DMA re-pointed at this
   * process's RAM, and the next device restore re-wires interrupts instead of starting over. Nothing when the
   * functions were opened here.
   */
  beginAdoption(): boolean {
    if (!this.pendingUpdate) return false;
    for (const r of this.ranges) this.container.updateVaddr(r.iova, r.size, r.vaddr);
    this.pendingUpdate = false;
    vfioAdoption.phase = 'rewire';
    return true;
  }

  /** After the restore, whether it succeeded or not: the devices' reset and restore drive VFIO as usual again. */
  endAdoption(): void {
    vfioAdoption.phase = 'none';
  }

  /** The guest was restored here: the functions and their DMA are this process's like any other. */
  completeAdoption(): void {
    this.adoptionPending = false;
  }
}

let current: VfioHandover | null = null;

/** The machine's hand-over state (null: no passed-through function). */
export function vfioHandover(): VfioHandover | null {
  return current;
}

export function setVfioHandover(h: VfioHandover | null): void {
  current = h;
}

/** Fd names (the same on both sides). */
export const VFIO_CONTAINER_FD = 'vfio:container';
export const vfioGroupFd = (group: number) => `vfio:group:${group}`;
export const vfioDeviceFd = (bdf: string) => `vfio:device:${bdf}`;
