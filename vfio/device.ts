// VfioDevice: owns one device fd (from VFIO_GROUP_GET_DEVICE_FD). Its regions (a PCI device's BARs, ROM and config
// space) are offset ranges of the fd: read and written with pread/pwrite, mmapped where the region allows it. Its
// interrupts (INTx, MSI, MSI-X) signal eventfds set with VFIO_DEVICE_SET_IRQS.
import * as libc from '../src/sys/libc.js';
import * as V from './bindings/ioctls.js';
import { parseRegionCaps } from './bindings/caps.js';
import { encode, encodeIrqSetEventfds, getU32, getU64 } from './bindings/codec.js';
import { sizeOf } from './bindings/structs.js';
import type { SparseMmapArea, VfioDeviceInfo, VfioIrqInfo, VfioRegion } from './bindings/types.js';
import { VfioError } from './errors.js';
import { ioctlBuffer, ioctlValue } from './fd-ioctl.js';

export type { SparseMmapArea, VfioDeviceInfo, VfioIrqInfo, VfioRegion };

/** A region's info with its capability chain can grow between queries (it does not, in practice): ask this often. */
const REGION_INFO_TRIES = 3;
/** No capability chain is anywhere near this long; a larger argsz is the kernel misbehaving, not a reason to allocate. */
const REGION_INFO_MAX = 64 * 1024;
const PAGE = 4096n;

export interface VfioMapping {
  addr: bigint;
  size: bigint;
  unmap(): void;
}

export class VfioDevice {
  readonly fd: number;
  /** The address it was opened by (for messages); the fd's number when adopted without one. */
  readonly name: string;
  private closed = false;

  private constructor(fd: number, name: string) {
    this.fd = fd;
    this.name = name;
  }

  /** Takes over a device fd received over SCM_RIGHTS or kept across exec (or just got from its group). */
  static adopt(fd: number, name = `device fd ${fd}`): VfioDevice {
    return new VfioDevice(fd, name);
  }

  info(): VfioDeviceInfo {
    const arg = encode('vfio_device_info');
    ioctlBuffer(this.fd, V.VFIO_DEVICE_GET_INFO, arg);
    const flags = getU32(arg, 'vfio_device_info', 'flags');
    return {
      flags,
      numRegions: getU32(arg, 'vfio_device_info', 'num_regions'),
      numIrqs: getU32(arg, 'vfio_device_info', 'num_irqs'),
      canReset: (flags & V.VFIO_DEVICE_FLAGS_RESET) !== 0,
      isPci: (flags & V.VFIO_DEVICE_FLAGS_PCI) !== 0,
    };
  }

  /** VFIO_DEVICE_GET_REGION_INFO with its capability chain (re-queried with the argsz the kernel asks for). */
  region(index: number): VfioRegion {
    const fixed = sizeOf('vfio_region_info');
    let bytes = fixed;
    for (let attempt = 0; attempt < REGION_INFO_TRIES; attempt++) {
      const arg = encode('vfio_region_info', { index }, bytes);
      ioctlBuffer(this.fd, V.VFIO_DEVICE_GET_REGION_INFO, arg);
      const flags = getU32(arg, 'vfio_region_info', 'flags');
      const needed = getU32(arg, 'vfio_region_info', 'argsz');
      if (flags & V.VFIO_REGION_INFO_FLAG_CAPS && needed > bytes) {
        if (needed > REGION_INFO_MAX)
          throw new VfioError('other', `${this.name}: region ${index}'s info wants ${needed} bytes (argsz), too many`);
        bytes = needed;
        continue;
      }
      const capOffset = flags & V.VFIO_REGION_INFO_FLAG_CAPS ? getU32(arg, 'vfio_region_info', 'cap_offset') : 0;
      const caps = parseRegionCaps(
        arg.subarray(0, Math.min(needed, bytes)),
        capOffset,
        `region ${index} of ${this.name}`,
      );
      return {
        index,
        flags,
        size: getU64(arg, 'vfio_region_info', 'size'),
        offset: getU64(arg, 'vfio_region_info', 'offset'),
        readable: (flags & V.VFIO_REGION_INFO_FLAG_READ) !== 0,
        writable: (flags & V.VFIO_REGION_INFO_FLAG_WRITE) !== 0,
        mmappable: (flags & V.VFIO_REGION_INFO_FLAG_MMAP) !== 0,
        ...caps,
      };
    }
    throw new VfioError('other', `${this.name}: region ${index}'s info kept growing over ${REGION_INFO_TRIES} queries`);
  }

  /** Reads `bytes.length` bytes at `offset` into the region (pread on the fd); all of them, or throws. */
  read(region: VfioRegion, offset: number, bytes: Uint8Array): void {
    this.checkAccess(region, offset, bytes.length, 'read');
    const n = libc.pread(this.fd, bytes, Number(region.offset) + offset);
    if (n !== bytes.length) throw this.shortAccess(region, offset, bytes.length, n, 'read');
  }

  /** Writes `bytes` at `offset` into the region (pwrite on the fd); all of them, or throws. */
  write(region: VfioRegion, offset: number, bytes: Uint8Array): void {
    this.checkAccess(region, offset, bytes.length, 'write');
    const n = libc.pwrite(this.fd, bytes, Number(region.offset) + offset);
    if (n !== bytes.length) throw this.shortAccess(region, offset, bytes.length, n, 'write');
  }

  /**
   * Maps `size` bytes at `offset` into the region, shared, with the region's protection. Page-aligned; inside one
   * sparse-mmap area when the region has them (the MSI-X table is not mappable unless the region says so).
   */
  mmap(region: VfioRegion, offset: bigint, size: bigint): VfioMapping {
    const where = `${this.name} region ${region.index} at 0x${offset.toString(16)}+0x${size.toString(16)}`;
    if (!region.mmappable) throw new VfioError('other', `cannot mmap ${where}: the region is not mmappable`);
    if (offset % PAGE !== 0n || size % PAGE !== 0n || size === 0n)
      throw new VfioError('other', `cannot mmap ${where}: offset and size must be whole 4 KiB pages`);
    if (offset + size > region.size)
      throw new VfioError('other', `cannot mmap ${where}: the region is 0x${region.size.toString(16)} bytes`);
    if (region.sparseMmap && !region.sparseMmap.some((a) => offset >= a.offset && offset + size <= a.offset + a.size))
      throw new VfioError('other', `cannot mmap ${where}: not inside one of the region's mmappable areas`);
    const prot = (region.readable ? libc.PROT_READ : 0) | (region.writable ? libc.PROT_WRITE : 0);
    const addr = libc.mmap(null, Number(size), prot, libc.MAP_SHARED, this.fd, Number(region.offset + offset));
    let mapped = true;
    return {
      addr,
      size,
      unmap() {
        if (!mapped) return;
        mapped = false;
        libc.munmap(addr, Number(size));
      },
    };
  }

  irqInfo(index: number): VfioIrqInfo {
    const arg = encode('vfio_irq_info', { index });
    ioctlBuffer(this.fd, V.VFIO_DEVICE_GET_IRQ_INFO, arg);
    const flags = getU32(arg, 'vfio_irq_info', 'flags');
    return {
      index,
      count: getU32(arg, 'vfio_irq_info', 'count'),
      flags,
      eventfd: (flags & V.VFIO_IRQ_INFO_EVENTFD) !== 0,
      maskable: (flags & V.VFIO_IRQ_INFO_MASKABLE) !== 0,
      automasked: (flags & V.VFIO_IRQ_INFO_AUTOMASKED) !== 0,
      noresize: (flags & V.VFIO_IRQ_INFO_NORESIZE) !== 0,
    };
  }

  /**
   * Vectors [start, start + fds.length) of `index` signal these eventfds (-1 unassigns one). For MSI and MSI-X the
   * first assignment enables the index on the device with that many vectors.
   */
  setIrqEventfds(index: number, start: number, fds: number[]): void {
    const flags = V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER;
    ioctlBuffer(this.fd, V.VFIO_DEVICE_SET_IRQS, encodeIrqSetEventfds(flags, index, start, fds));
  }

  /** Disables every vector of `index` (DATA_NONE | ACTION_TRIGGER with count 0). */
  disableIrqs(index: number): void {
    const flags = V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER;
    ioctlBuffer(this.fd, V.VFIO_DEVICE_SET_IRQS, encode('vfio_irq_set', { flags, index, start: 0, count: 0 }));
  }

  /** INTx: a write to `fd` unmasks the line (KVM's resample irqfd signals it at the guest's EOI). */
  setIrqResample(index: number, fd: number): void {
    const flags = V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_UNMASK;
    ioctlBuffer(this.fd, V.VFIO_DEVICE_SET_IRQS, encodeIrqSetEventfds(flags, index, 0, [fd]));
  }

  /** Unmasks one vector now (an automasked INTx after its interrupt was handled). */
  unmaskIrq(index: number, sub = 0): void {
    const flags = V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_UNMASK;
    ioctlBuffer(this.fd, V.VFIO_DEVICE_SET_IRQS, encode('vfio_irq_set', { flags, index, start: sub, count: 1 }));
  }

  /** VFIO_DEVICE_RESET (function-level or another reset the kernel found for the device). */
  reset(): void {
    ioctlValue(this.fd, V.VFIO_DEVICE_RESET);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }

  private checkAccess(region: VfioRegion, offset: number, length: number, op: 'read' | 'write'): void {
    const ok = op === 'read' ? region.readable : region.writable;
    const where = `${this.name} region ${region.index} at 0x${offset.toString(16)}+${length}`;
    if (!ok) throw new VfioError('other', `cannot ${op} ${where}: the region is not ${op}able`);
    if (!Number.isInteger(offset) || offset < 0 || BigInt(offset + length) > region.size)
      throw new VfioError('other', `cannot ${op} ${where}: the region is 0x${region.size.toString(16)} bytes`);
  }

  private shortAccess(region: VfioRegion, offset: number, wanted: number, got: number, op: string): VfioError {
    return new VfioError(
      'other',
      `${this.name} region ${region.index}: ${op} of ${wanted} bytes at 0x${offset.toString(16)} moved only ${got}`,
    );
  }
}
