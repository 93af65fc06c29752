// Planning a machine's passed-through PCI functions (main thread, once, before any other thread starts), QEMU's
// vfio-pci order of things: the host checked (vfio-host.ts), one VFIO container for the machine with each function's
// IOMMU group in it, all guest RAM mapped for DMA at IOVA = guest-physical address, the device opened and its config
// space and regions read, its BARs' mappable pieces mmapped (windows.ts), a PCI slot after the virtio functions,
// BAR addresses as firmware would assign them, MSI vectors from the machine's router (irqfds) with a pending
// eventfd each, and INTx as an eventfd on a resampling irqfd. The result is device-table data (VfioPciSpec).
//
// Guest RAM does not change layout while a machine runs (no hotplug), so the DMA map made here stays right until the
// machine's teardown unmaps it.
import * as libc from '../sys/libc.js';
import { KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE } from '../../kvm/bindings/constants.js';
import type { Irqfd } from '../../kvm/bindings/types.js';
import { type PciWindows, intxGsi, type PciIntxRouting } from '../../devices/pci/bus.js';
import { barInfos, findCapabilities } from '../../devices/vfio-pci/config.js';
import {
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  type VfioBarWindow,
  type VfioPciSpec,
} from '../../devices/vfio-pci/host.js';
import { VFIO_PCI_MAX_VECTORS, VFIO_PCI_MAX_WINDOWS } from '../../devices/vfio-pci/state.js';
import { barWindows } from '../../devices/vfio-pci/windows.js';
import type { MsiRouter } from '../runtime/msi-router.js';
import type { VfioDeviceConfig } from './config.js';
import { allocateBars, type BarRequest, VIRTIO_PCI_BAR_REQUESTS } from './pci-plan.js';
import { checkVfioHost, type HostRoots } from './vfio-host.js';
import { DeviceSetupError, FIRST_VIRTIO_SLOT } from './virtio-plan.js';
import { forgetAcrossExec, keepAcrossExec, type NamedFd } from '../sys/exec-fds.js';
import { vfioAdoption } from '../../devices/vfio-pci/host.js';
import { setVfioHandover, VfioHandover, VFIO_CONTAINER_FD, vfioDeviceFd, vfioGroupFd } from './vfio-cpr.js';

/** KVM memory slots of BAR windows start here (guest RAM takes the first few). */
export const FIRST_VFIO_MEMSLOT = 32;
const PCI_SLOTS = 32;

/** The parts of vfio/ the plan uses (vfio/container.ts, group.ts, device.ts). */
export interface VfioRegionInfo {
  readonly size: bigint;
  readonly readable: boolean;
  readonly mmappable: boolean;
  readonly sparseMmap: readonly { readonly offset: bigint; readonly size: bigint }[] | null;
}
export interface VfioPlanDevice {
  readonly fd: number;
  info(): { numRegions: number; numIrqs: number; canReset: boolean; isPci: boolean };
  region(index: number): VfioRegionInfo;
  read(region: number, offset: bigint, bytes: Uint8Array): void;
  mmap(region: number, offset: bigint, size: bigint): { addr: bigint; size: bigint; unmap(): void };
  irqInfo(index: number): { count: number };
  close(): void;
}
export interface VfioPlanGroup {
  setContainer(container: VfioPlanContainer): void;
  openDevice(bdf: string): VfioPlanDevice;
  close(): void;
}
export interface VfioPlanContainer {
  readonly fd?: number;
  setIommu(): void;
  mapDma(m: { iova: bigint; size: bigint; vaddr: bigint; read?: boolean; write?: boolean }): void;
  unmapDma(iova: bigint, size: bigint): bigint;
  invalidateVaddr?(iova: bigint, size: bigint): void;
  updateVaddr?(iova: bigint, size: bigint, vaddr: bigint): void;
  canUpdateVaddr?(): boolean;
  close(): void;
}
export interface VfioApi {
  openContainer(): VfioPlanContainer;
  openGroup(group: number): VfioPlanGroup;
  /** CPR: fds an old process handed over (cpr-transfer) or kept across its exec (cpr-exec), taken over as they are. */
  adoptContainer?(fd: number): VfioPlanContainer;
  adoptGroup?(fd: number, group: number): VfioPlanGroup & { readonly fd: number };
  adoptDevice?(fd: number, bdf: string): VfioPlanDevice;
}

export interface VfioPlanContext {
  readonly api: VfioApi;
  readonly msi: MsiRouter;
  readonly windows: PciWindows;
  readonly intx: PciIntxRouting;
  /** Guest RAM as mapped (DMA: IOVA = gpa, vaddr = hostAddress). */
  readonly ram: readonly { readonly gpa: number; readonly size: number; readonly hostAddress: bigint | number }[];
  /** The virtio functions planned before (their slots and BARs come first). */
  readonly virtioCount: number;
  /** KVM_IRQFD on the VM fd. */
  irqfd(f: Irqfd): void;
  /** CPR: the fd an old process handed over under `name` (src/sys/exec-fds.ts takeInheritedFd), or undefined. */
  inherited?(name: string): number | undefined;
  /** Where releases go, run in reverse order when the machine ends or its build fails. */
  readonly teardown: { add(release: () => void): void };
  readonly roots?: HostRoots;
  readonly log?: (line: string) => void;
}

const errnoOf = (e: unknown) => (e as { code?: string }).code ?? (e as Error).message;

export function planVfioDevices(configs: readonly VfioDeviceConfig[], ctx: VfioPlanContext): VfioPciSpec[] {
  if (configs.length === 0) return [];
  const firstSlot = FIRST_VIRTIO_SLOT + ctx.virtioCount;
  if (firstSlot + configs.length > PCI_SLOTS)
    throw new DeviceSetupError(`${configs.length} vfio-pci devices: bus 0 has no room after the virtio functions`);
  // Every host first: a wrong address or driver is reported before anything is opened.
  const hosts = configs.map((c) => checkVfioHost(c, ctx.roots));

  // CPR (src/machine/vfio-cpr.ts): an old process's container, groups and devices are adopted, not opened: the
  // device keeps running, its IOMMU mappings stay (re-pointed at this process's RAM during the restore).
  const inheritedContainer = ctx.inherited?.(VFIO_CONTAINER_FD);
  const adopting = inheritedContainer !== undefined && ctx.api.adoptContainer !== undefined;
  const container = adopting ? ctx.api.adoptContainer!(inheritedContainer) : ctx.api.openContainer();
  ctx.teardown.add(() => container.close());
  const named: NamedFd[] = [];
  if (container.fd !== undefined) named.push({ name: VFIO_CONTAINER_FD, fd: container.fd });
  const ranges = ctx.ram.map((r) => ({ iova: BigInt(r.gpa), size: BigInt(r.size), vaddr: BigInt(r.hostAddress) }));
  const handover = new VfioHandover(
    {
      invalidateVaddr: (iova, size) => container.invalidateVaddr?.(iova, size),
      updateVaddr: (iova, size, vaddr) => container.updateVaddr?.(iova, size, vaddr),
      canUpdateVaddr: () => container.canUpdateVaddr?.() ?? false,
    },
    ranges,
    named,
    adopting,
  );
  setVfioHandover(handover);
  ctx.teardown.add(() => setVfioHandover(null));
  if (adopting) {
    vfioAdoption.phase = 'inherited';
    for (const r of ranges)
      ctx.teardown.add(() => {
        if (handover.ownsDma) container.unmapDma(r.iova, r.size);
      });
  }
  const groups = new Map<number, VfioPlanGroup>();
  let memslot = FIRST_VFIO_MEMSLOT;
  const opened: { device: VfioPlanDevice; config: Uint8Array; requests: BarRequest[] }[] = [];
  for (const [i, host] of hosts.entries()) {
    const c = configs[i];
    let group = groups.get(host.group);
    const inheritedGroup = adopting ? ctx.inherited?.(vfioGroupFd(host.group)) : undefined;
    if (!group && adopting) {
      if (inheritedGroup === undefined)
        throw new DeviceSetupError(`${c.id}: the old process handed over no fd for IOMMU group ${host.group}`);
      const g = ctx.api.adoptGroup!(inheritedGroup, host.group);
      ctx.teardown.add(() => g.close());
      named.push({ name: vfioGroupFd(host.group), fd: g.fd });
      groups.set(host.group, g);
      group = g;
    }
    if (!group) {
      group = ctx.api.openGroup(host.group);
      const fd = (group as { fd?: number }).fd;
      if (fd !== undefined) named.push({ name: vfioGroupFd(host.group), fd });
      const g = group;
      ctx.teardown.add(() => g.close());
      g.setContainer(container);
      if (groups.size === 0) {
        // The first group makes the container usable: the IOMMU type, then all of guest RAM.
        container.setIommu();
        for (const r of ctx.ram) {
          try {
            container.mapDma({ iova: BigInt(r.gpa), size: BigInt(r.size), vaddr: BigInt(r.hostAddress) });
          } catch (e) {
            throw new DeviceSetupError(
              `${c.id}: cannot map guest RAM for DMA (${errnoOf(e)}${errnoOf(e) === 'ENOMEM' ? ': raise the locked-memory limit, ulimit -l' : ''})`,
            );
          }
          ctx.teardown.add(() => {
            if (handover.ownsDma) container.unmapDma(BigInt(r.gpa), BigInt(r.size));
          });
        }
      }
      groups.set(host.group, g);
    }
    let device: VfioPlanDevice;
    if (adopting) {
      const fd = ctx.inherited?.(vfioDeviceFd(host.bdf));
      if (fd === undefined) throw new DeviceSetupError(`${c.id}: the old process handed over no fd for ${host.bdf}`);
      device = ctx.api.adoptDevice!(fd, host.bdf);
    } else device = group.openDevice(host.bdf);
    named.push({ name: vfioDeviceFd(host.bdf), fd: device.fd });
    ctx.teardown.add(() => device.close());
    if (!device.info().isPci) throw new DeviceSetupError(`${c.id}: ${host.bdf} is not a PCI device to VFIO`);
    const config = new Uint8Array(256);
    device.read(VFIO_PCI_CONFIG_REGION_INDEX, 0n, config);
    const sizes = [0, 1, 2, 3, 4, 5].map((b) => Number(device.region(b).size));
    const requests = barInfos(config, sizes)
      .filter((b) => (b.size & (b.size - 1)) === 0)
      .map((b) => ({ index: b.index, kind: b.kind, size: Math.max(b.size, b.kind === 'io' ? 4 : 16) }));
    opened.push({ device, config, requests });
  }

  // cpr-exec keeps these across the exec (cpr-transfer sends them: cpr/flows/transfer.ts).
  for (const n of named) keepAcrossExec(n.name, n.fd);
  ctx.teardown.add(() => {
    for (const n of named) forgetAcrossExec(n.name);
  });

  // BAR addresses: the same allocation as the virtio functions', continued (their requests first).
  const virtio = Array.from({ length: ctx.virtioCount }, () => VIRTIO_PCI_BAR_REQUESTS);
  let placed: Map<number, number>[];
  try {
    placed = allocateBars([...virtio, ...opened.map((o) => o.requests)], ctx.windows).slice(ctx.virtioCount);
  } catch (e) {
    throw new DeviceSetupError(`vfio-pci: ${(e as Error).message}`);
  }

  return opened.map(({ device, config }, i) => {
    const c = configs[i];
    const host = hosts[i];
    const slot = firstSlot + i;
    const sizes = [0, 1, 2, 3, 4, 5].map((b) => Number(device.region(b).size));
    const bars = barInfos(config, sizes);
    const caps = findCapabilities(config);

    // BAR windows: tsvmm's mmap of each mappable piece.
    const windows: VfioBarWindow[] = [];
    for (const bar of bars) {
      if (bar.kind === 'io') continue;
      const region = device.region(bar.index);
      const pieces = barWindows(
        {
          index: bar.index,
          size: bar.size,
          mmappable: region.mmappable,
          sparse: region.sparseMmap?.map((a) => ({ offset: Number(a.offset), size: Number(a.size) })) ?? null,
        },
        caps.msix,
      );
      for (const piece of pieces) {
        if (windows.length >= VFIO_PCI_MAX_WINDOWS) break; // the rest stays trapped
        const map = device.mmap(bar.index, BigInt(piece.offset), BigInt(piece.size));
        ctx.teardown.add(() => map.unmap());
        windows.push({ bar: bar.index, ...piece, hostAddress: Number(map.addr), memslot: memslot++ });
      }
    }

    // MSI / MSI-X: one router vector (GSI + irqfd) and one pending eventfd per vector VFIO offers.
    const msixCount = caps.msix ? Math.min(caps.msix.vectors, device.irqInfo(VFIO_PCI_MSIX_IRQ_INDEX).count) : 0;
    const msiCount = caps.msi ? Math.min(caps.msi.vectors, device.irqInfo(VFIO_PCI_MSI_IRQ_INDEX).count) : 0;
    let vectors = Math.min(Math.max(msixCount, msiCount), VFIO_PCI_MAX_VECTORS);
    const room = ctx.msi.maxVectors - ctx.msi.allocated;
    if (vectors > room) {
      ctx.log?.(`${c.id}: ${vectors} MSI vectors wanted, ${room} left in the machine's routing table`);
      vectors = room;
    }
    const block = vectors > 0 ? ctx.msi.allocate(vectors) : null;
    const vectorFds = block ? ctx.msi.init.fds.slice(block.first, block.first + block.count) : [];
    const pendingFds: number[] = [];
    for (let v = 0; v < vectors; v++) {
      const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      pendingFds.push(fd);
      ctx.teardown.add(() => libc.close(fd));
    }

    // INTx: VFIO signals `trigger`; KVM asserts the pin's GSI until the guest's EOI, then signals `resample`, which
    // VFIO takes as its unmask.
    const pin = config[0x3d];
    let intx: VfioPciSpec['intx'] = null;
    if (pin >= 1 && pin <= 4 && device.irqInfo(VFIO_PCI_INTX_IRQ_INDEX).count > 0) {
      const trigger = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      const resample = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      const gsi = intxGsi(slot, pin, ctx.intx);
      ctx.teardown.add(() => {
        try {
          ctx.irqfd({ fd: trigger, gsi, flags: KVM_IRQFD_FLAG_DEASSIGN });
        } catch {
          /* the VM may be gone */
        }
        libc.close(trigger);
        libc.close(resample);
      });
      ctx.irqfd({ fd: trigger, gsi, flags: KVM_IRQFD_FLAG_RESAMPLE, resampleFd: resample });
      intx = { trigger, resample };
    }

    // The expansion ROM, read through VFIO's ROM region when the guest enables it (QEMU's rombar=1 default).
    const rom = Number(device.region(VFIO_PCI_ROM_REGION_INDEX).size);
    const romSize = c.rombar !== false && rom >= 0x800 && (rom & (rom - 1)) === 0 ? rom : 0;

    return {
      kind: 'vfio-pci',
      id: c.id,
      host: host.bdf,
      slot,
      deviceFd: device.fd,
      config: [...config],
      bars,
      barAddresses: [...placed[i]],
      windows,
      romSize,
      msi: block,
      vectorFds,
      pendingFds,
      intx,
      canReset: device.info().canReset,
    };
  });
}
