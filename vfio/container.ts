// VfioContainer: owns the /dev/vfio/vfio file descriptor — the IOMMU context its groups share. Opening checks the
// API version and that an IOMMU model tsvmm can use (VFIO_TYPE1v2_IOMMU) is there; DMA mappings go through it, and
// the VADDR flags re-point a mapping at a new process address (checkpoint/restart) while device DMA goes on.
import * as libc from '../src/sys/libc.js';
import { Errno, SysError } from '../src/sys/errno.js';
import * as V from './bindings/ioctls.js';
import { parseIovaRanges } from './bindings/caps.js';
import { encode, getU32, getU64 } from './bindings/codec.js';
import type { VfioIommuInfo } from './bindings/types.js';
import { openFailure, VfioError } from './errors.js';
import { ioctlBuffer, ioctlValue, isErrno } from './fd-ioctl.js';

export const VFIO_CONTAINER_PATH = '/dev/vfio/vfio';

export interface DmaMapping {
  /** The address the device uses (the guest-physical address, for a guest's RAM). */
  iova: bigint;
  size: bigint;
  /** Where the memory is in this process. */
  vaddr: bigint;
  /** Device may read it (default true). */
  read?: boolean;
  /** Device may write it (default true). */
  write?: boolean;
}

export class VfioContainer {
  readonly fd: number;
  private closed = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens the container; throws VfioError (one line) when VFIO is missing, unusable, or offers no type1v2 IOMMU. */
  static open(path = VFIO_CONTAINER_PATH): VfioContainer {
    let fd: number;
    try {
      fd = libc.open(path, libc.O_RDWR | libc.O_CLOEXEC);
    } catch (e) {
      if (e instanceof SysError)
        throw openFailure(
          path,
          e.errno,
          () =>
            new VfioError(
              'no-vfio',
              `${path} does not exist — is the vfio module loaded? (modprobe vfio-pci)`,
              e.errno,
            ),
        );
      throw e;
    }
    try {
      const container = VfioContainer.checked(fd, path);
      if (!container.checkExtension(V.VFIO_TYPE1v2_IOMMU)) {
        throw new VfioError(
          'no-iommu',
          `${path} offers no VFIO_TYPE1v2_IOMMU: no IOMMU driver (modprobe vfio_iommu_type1; enable the IOMMU with intel_iommu=on or amd_iommu=on)`,
        );
      }
      return container;
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  /** Takes over a container fd received over SCM_RIGHTS or kept across exec (its groups and mappings with it). */
  static adopt(fd: number): VfioContainer {
    return VfioContainer.checked(fd, `fd ${fd}`);
  }

  private static checked(fd: number, what: string): VfioContainer {
    let version: number;
    try {
      version = ioctlValue(fd, V.VFIO_GET_API_VERSION);
    } catch (e) {
      if (e instanceof SysError)
        throw new VfioError('other', `${what} is not a VFIO container (VFIO_GET_API_VERSION: ${e.code})`, e.errno);
      throw e;
    }
    if (version !== V.VFIO_API_VERSION)
      throw new VfioError('api-version', `${what}: VFIO API version ${version}, tsvmm needs ${V.VFIO_API_VERSION}`);
    return new VfioContainer(fd);
  }

  /** VFIO_CHECK_EXTENSION: an IOMMU model (VFIO_TYPE1v2_IOMMU) or feature (VFIO_UPDATE_VADDR, VFIO_UNMAP_ALL). */
  checkExtension(ext: number): boolean {
    return ioctlValue(this.fd, V.VFIO_CHECK_EXTENSION, ext) > 0;
  }

  /** VFIO_SET_IOMMU: picks the IOMMU model; only after a group was added (VfioGroup.setContainer). */
  setIommu(type: number = V.VFIO_TYPE1v2_IOMMU): void {
    try {
      ioctlValue(this.fd, V.VFIO_SET_IOMMU, type);
    } catch (e) {
      if (isErrno(e, Errno.EINVAL) && !this.checkExtension(type))
        throw new VfioError('no-iommu', `the container does not offer IOMMU model ${type}`, e.errno);
      if (isErrno(e, Errno.EINVAL))
        throw new VfioError(
          'other',
          'VFIO_SET_IOMMU needs a group in the container first (VfioGroup.setContainer)',
          e.errno,
        );
      throw e;
    }
  }

  /**
   * VFIO_IOMMU_GET_INFO (after setIommu): the IOMMU's page sizes and the IOVA ranges mappings may use — on x86
   * everything but the MSI window at 0xfee00000 and the host's reserved regions.
   */
  iommuInfo(): VfioIommuInfo {
    let bytes = 4096;
    let arg = encode('vfio_iommu_type1_info', {}, bytes);
    ioctlBuffer(this.fd, V.VFIO_IOMMU_GET_INFO, arg);
    const needed = getU32(arg, 'vfio_iommu_type1_info', 'argsz');
    if (needed > bytes && needed <= 1 << 20) {
      bytes = needed;
      arg = encode('vfio_iommu_type1_info', {}, bytes);
      ioctlBuffer(this.fd, V.VFIO_IOMMU_GET_INFO, arg);
    }
    const flags = getU32(arg, 'vfio_iommu_type1_info', 'flags');
    const capOffset = flags & V.VFIO_IOMMU_INFO_CAPS ? getU32(arg, 'vfio_iommu_type1_info', 'cap_offset') : 0;
    const filled = arg.subarray(0, Math.min(bytes, getU32(arg, 'vfio_iommu_type1_info', 'argsz')));
    return {
      pageSizes: flags & V.VFIO_IOMMU_INFO_PGSIZES ? getU64(arg, 'vfio_iommu_type1_info', 'iova_pgsizes') : 0n,
      iovaRanges: parseIovaRanges(filled, capOffset, "the container's IOMMU info"),
    };
  }

  /** VFIO_IOMMU_MAP_DMA: the device sees `size` bytes at `vaddr` at `iova`. Pins the memory. */
  mapDma(m: DmaMapping): void {
    const flags =
      (m.read === false ? 0 : V.VFIO_DMA_MAP_FLAG_READ) | (m.write === false ? 0 : V.VFIO_DMA_MAP_FLAG_WRITE);
    this.map(flags, m.iova, m.size, m.vaddr);
  }

  /** VFIO_IOMMU_UNMAP_DMA: returns the bytes unmapped (the kernel may unmap whole mappings only). */
  unmapDma(iova: bigint, size: bigint): bigint {
    return this.unmap(0, iova, size);
  }

  /**
   * VFIO_DMA_UNMAP_FLAG_VADDR: the IOMMU keeps the mapping (device DMA goes on) but forgets this process's address,
   * before the memory's mapping goes away (exec, hand-over to a new process). Needs VFIO_UPDATE_VADDR.
   */
  invalidateVaddr(iova: bigint, size: bigint): void {
    this.unmap(V.VFIO_DMA_UNMAP_FLAG_VADDR, iova, size);
  }

  /** VFIO_DMA_MAP_FLAG_VADDR: gives an invalidated mapping its new address (the same memory, mapped anew). */
  updateVaddr(iova: bigint, size: bigint, vaddr: bigint): void {
    this.map(V.VFIO_DMA_MAP_FLAG_VADDR, iova, size, vaddr);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }

  private map(flags: number, iova: bigint, size: bigint, vaddr: bigint): void {
    const arg = encode('vfio_iommu_type1_dma_map', { flags, vaddr, iova, size });
    try {
      ioctlBuffer(this.fd, V.VFIO_IOMMU_MAP_DMA, arg);
    } catch (e) {
      if (e instanceof SysError) throw dmaError('map', flags, iova, size, e);
      throw e;
    }
  }

  private unmap(flags: number, iova: bigint, size: bigint): bigint {
    const arg = encode('vfio_iommu_type1_dma_unmap', { flags, iova, size });
    try {
      ioctlBuffer(this.fd, V.VFIO_IOMMU_UNMAP_DMA, arg);
    } catch (e) {
      if (e instanceof SysError) throw dmaError('unmap', flags, iova, size, e);
      throw e;
    }
    return getU64(arg, 'vfio_iommu_type1_dma_unmap', 'size');
  }
}

const range = (iova: bigint, size: bigint) => `iova 0x${iova.toString(16)}+0x${size.toString(16)}`;

/** One line for a failed map/unmap: which range, which operation, and the likely cause by errno. */
function dmaError(op: 'map' | 'unmap', flags: number, iova: bigint, size: bigint, e: SysError): VfioError {
  const vaddr = (flags & (op === 'map' ? V.VFIO_DMA_MAP_FLAG_VADDR : V.VFIO_DMA_UNMAP_FLAG_VADDR)) !== 0;
  const what = vaddr ? (op === 'map' ? 'updating the address of' : 'invalidating the address of') : `DMA ${op} of`;
  const hint =
    e.errno === Errno.EEXIST
      ? ' (overlaps a mapping)'
      : e.errno === Errno.ENOMEM
        ? ' (pinning failed: RLIMIT_MEMLOCK?)'
        : e.errno === Errno.EINVAL && !vaddr
          ? ' (not page-aligned, or no IOMMU set: VfioContainer.setIommu)'
          : '';
  return new VfioError('other', `${what} ${range(iova, size)} failed: ${e.code}${hint}`, e.errno);
}
