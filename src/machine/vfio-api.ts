// The VFIO objects the plan opens (vfio/: one container per machine, a group per IOMMU group, the devices), behind
// the plan's VfioApi: region indices instead of region objects, so the plan reads as the steps it takes.
import { VfioContainer } from '../../vfio/container.js';
import { VfioDevice, type VfioRegion } from '../../vfio/device.js';
import { VFIO_UPDATE_VADDR } from '../../vfio/bindings/ioctls.js';
import { VfioGroup } from '../../vfio/group.js';
import type { VfioApi, VfioPlanContainer, VfioPlanDevice, VfioPlanGroup } from './vfio-plan.js';

class PlanDevice implements VfioPlanDevice {
  private readonly regions = new Map<number, VfioRegion>();
  constructor(private readonly device: VfioDevice) {}
  get fd(): number {
    return this.device.fd;
  }
  info() {
    return this.device.info();
  }
  region(index: number): VfioRegion {
    let r = this.regions.get(index);
    if (!r) {
      r = this.device.region(index);
      this.regions.set(index, r);
    }
    return r;
  }
  read(region: number, offset: bigint, bytes: Uint8Array): void {
    this.device.read(this.region(region), Number(offset), bytes);
  }
  mmap(region: number, offset: bigint, size: bigint) {
    return this.device.mmap(this.region(region), offset, size);
  }
  irqInfo(index: number) {
    return this.device.irqInfo(index);
  }
  close(): void {
    this.device.close();
  }
}

class PlanContainer implements VfioPlanContainer {
  constructor(readonly container: VfioContainer) {}
  get fd(): number {
    return this.container.fd;
  }
  invalidateVaddr(iova: bigint, size: bigint): void {
    this.container.invalidateVaddr(iova, size);
  }
  updateVaddr(iova: bigint, size: bigint, vaddr: bigint): void {
    this.container.updateVaddr(iova, size, vaddr);
  }
  canUpdateVaddr(): boolean {
    return this.container.checkExtension(VFIO_UPDATE_VADDR);
  }
  setIommu(): void {
    this.container.setIommu();
  }
  mapDma(m: { iova: bigint; size: bigint; vaddr: bigint }): void {
    this.container.mapDma({ ...m, read: true, write: true });
  }
  unmapDma(iova: bigint, size: bigint): bigint {
    return this.container.unmapDma(iova, size);
  }
  close(): void {
    this.container.close();
  }
}

class PlanGroup implements VfioPlanGroup {
  constructor(private readonly group: VfioGroup) {}
  get fd(): number {
    return this.group.fd;
  }
  setContainer(container: VfioPlanContainer): void {
    this.group.setContainer((container as PlanContainer).container);
  }
  openDevice(bdf: string): VfioPlanDevice {
    return new PlanDevice(this.group.openDevice(bdf));
  }
  close(): void {
    this.group.close();
  }
}

export function hostVfioApi(): VfioApi {
  return {
    openContainer: () => new PlanContainer(VfioContainer.open()),
    openGroup: (n) => new PlanGroup(VfioGroup.open(n)),
    adoptContainer: (fd) => new PlanContainer(VfioContainer.adopt(fd)),
    adoptGroup: (fd, n) => new PlanGroup(VfioGroup.adopt(fd, n)),
    adoptDevice: (fd, bdf) => new PlanDevice(VfioDevice.adopt(fd, bdf)),
  };
}
