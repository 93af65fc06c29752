// VfioGroup: owns a /dev/vfio/N file descriptor — an IOMMU group, the smallest set of devices the IOMMU can isolate.
// Opening checks the group is viable (every device in it bound to vfio-pci, or to nothing); added to a container,
// it hands out device fds.
import * as libc from '../src/sys/libc.js';
import { Errno, SysError } from '../src/sys/errno.js';
import * as V from './bindings/ioctls.js';
import { encode, getU32 } from './bindings/codec.js';
import type { VfioContainer } from './container.js';
import { VfioDevice } from './device.js';
import { openFailure, VfioError } from './errors.js';
import { ioctlBuffer, ioctlValue, isErrno } from './fd-ioctl.js';
import { groupOfDevice, notViableMessage, parseBdf } from './sysfs.js';

export class VfioGroup {
  readonly fd: number;
  readonly number: number;
  private closed = false;

  private constructor(fd: number, number: number) {
    this.fd = fd;
    this.number = number;
  }

  /**
   * Opens /dev/vfio/N (`devDir` for tests); throws VfioError when it is missing, busy, or not viable (naming the
   * devices bound to other drivers).
   */
  static open(group: number, options: { devDir?: string; sys?: string } = {}): VfioGroup {
    if (!Number.isInteger(group) || group < 0) throw new VfioError('no-group', `${group} is not an IOMMU group number`);
    const path = `${options.devDir ?? '/dev/vfio'}/${group}`;
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
              'no-group',
              `${path} does not exist: no device of IOMMU group ${group} is bound to vfio-pci`,
              e.errno,
            ),
        );
      throw e;
    }
    const g = new VfioGroup(fd, group);
    try {
      if (!g.isViable()) throw new VfioError('not-viable', notViableMessage(group, options.sys));
    } catch (e) {
      g.close();
      throw e;
    }
    return g;
  }

  /** The IOMMU group of a device bound to vfio-pci (an address like 0000:00:03.0 or its sysfs path). */
  static forDevice(bdfOrSysfsPath: string, sys = '/sys'): number {
    return groupOfDevice(bdfOrSysfsPath, sys);
  }

  /** Takes over a group fd received over SCM_RIGHTS or kept across exec. */
  static adopt(fd: number, group: number): VfioGroup {
    return new VfioGroup(fd, group);
  }

  /** VFIO_GROUP_GET_STATUS's flags. */
  private status(): number {
    const arg = encode('vfio_group_status');
    ioctlBuffer(this.fd, V.VFIO_GROUP_GET_STATUS, arg);
    return getU32(arg, 'vfio_group_status', 'flags');
  }

  /** Every device of the group is bound to a VFIO driver or to none. */
  isViable(): boolean {
    return (this.status() & V.VFIO_GROUP_FLAGS_VIABLE) !== 0;
  }

  /** The group is in a container. */
  hasContainer(): boolean {
    return (this.status() & V.VFIO_GROUP_FLAGS_CONTAINER_SET) !== 0;
  }

  /** VFIO_GROUP_SET_CONTAINER: the group joins the container's IOMMU context. */
  setContainer(c: VfioContainer): void {
    try {
      ioctlBuffer(this.fd, V.VFIO_GROUP_SET_CONTAINER, new Int32Array([c.fd]));
    } catch (e) {
      if (isErrno(e, Errno.EPERM)) throw new VfioError('not-viable', notViableMessage(this.number), e.errno);
      if (isErrno(e, Errno.EINVAL) && this.hasContainer())
        throw new VfioError('other', `group ${this.number} is already in a container`, e.errno);
      throw e;
    }
  }

  unsetContainer(): void {
    ioctlValue(this.fd, V.VFIO_GROUP_UNSET_CONTAINER);
  }

  /** VFIO_GROUP_GET_DEVICE_FD: the device's own fd. The group must be in a container with its IOMMU set. */
  openDevice(bdf: string): VfioDevice {
    const name = parseBdf(bdf) ?? bdf;
    const arg = new TextEncoder().encode(`${name}\0`);
    let fd: number;
    try {
      fd = ioctlBuffer(this.fd, V.VFIO_GROUP_GET_DEVICE_FD, arg);
    } catch (e) {
      // The kernel looks the name up first (ENODEV), then wants a container with its IOMMU set (EINVAL).
      if (isErrno(e, Errno.ENODEV, Errno.ENOENT))
        throw new VfioError('no-device', `device ${name} is not in IOMMU group ${this.number}`, e.errno);
      if (isErrno(e, Errno.EINVAL))
        throw new VfioError(
          'other',
          `group ${this.number} hands out no device before it is in a container whose IOMMU is set (setContainer, setIommu)`,
          e.errno,
        );
      throw e;
    }
    return VfioDevice.adopt(fd, name);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }
}
