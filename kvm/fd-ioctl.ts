// The two ways kvm/ issues an ioctl: with an integer argument, or with a struct buffer. Both name the request in
// the SysError they throw (`ioctl(7, KVM_SET_SREGS) failed: EINVAL (errno 22)`).
import * as libc from '../src/sys/libc.js';
import { SysError } from '../src/sys/errno.js';
import { ioctlName } from './bindings/ioctls.js';

export function ioctlValue(fd: number, request: number, arg: number | bigint = 0): number {
  return libc.ioctl(fd, request, arg, ioctlName(request));
}

export function ioctlBuffer(fd: number, request: number, buffer: Uint8Array | null): number {
  return libc.ioctlPtr(fd, request, buffer, ioctlName(request));
}

/** True when `e` is a SysError with one of the given errno values. */
export function isErrno(e: unknown, ...errnos: number[]): e is SysError {
  return e instanceof SysError && errnos.includes(e.errno);
}
