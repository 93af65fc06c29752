// How vfio/ issues an ioctl: with an integer argument or a struct buffer, naming the request in the SysError it
// throws (`ioctl(9, VFIO_IOMMU_MAP_DMA) failed: EINVAL (errno 22)`).
import * as libc from '../src/sys/libc.js';
import { SysError } from '../src/sys/errno.js';
import { ioctlName } from './bindings/ioctls.js';

export function ioctlValue(fd: number, request: number, arg: number | bigint = 0): number {
  return libc.ioctl(fd, request, arg, ioctlName(request));
}

export function ioctlBuffer(fd: number, request: number, buffer: Uint8Array | Int32Array): number {
  return libc.ioctlPtr(fd, request, buffer, ioctlName(request));
}

/** True when `e` is a SysError with one of the given errno values. */
export function isErrno(e: unknown, ...errnos: number[]): e is SysError {
  return e instanceof SysError && errnos.includes(e.errno);
}
