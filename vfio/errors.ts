// The one-line errors of VFIO set-up: what is missing or wrong, and what to do about it. Each names the path, group
// or device it is about; `reason` lets callers (the device model, tests) tell them apart without parsing text.
import { Errno, errnoName } from '../src/sys/errno.js';
import { SetupError } from '../src/util/setup-error.js';

export type VfioUnavailableReason =
  | 'no-vfio' // /dev/vfio/vfio missing: the vfio module is not loaded
  | 'permission'
  | 'api-version'
  | 'no-iommu' // the container offers no VFIO_TYPE1v2_IOMMU
  | 'no-group' // /dev/vfio/N missing
  | 'busy' // the group is open elsewhere
  | 'not-viable' // a device of the group is bound to a driver other than vfio-pci
  | 'no-device' // no such PCI device, or not in this group
  | 'not-bound' // the device is bound to another driver (or none)
  | 'no-iommu-group' // the device has no IOMMU group: no IOMMU enabled
  | 'other';

export class VfioError extends SetupError {
  readonly reason: VfioUnavailableReason;
  readonly errno: number | null;

  constructor(reason: VfioUnavailableReason, message: string, errno: number | null = null) {
    super(`vfio: ${message}`);
    this.name = 'VfioError';
    this.reason = reason;
    this.errno = errno;
  }
}

/** The error for a failed open(2) of a VFIO node, by errno. `what` says what the node is for. */
export function openFailure(path: string, errno: number, missing: () => VfioError): VfioError {
  switch (errno) {
    case Errno.ENOENT:
      return missing();
    case Errno.EACCES:
    case Errno.EPERM:
      return new VfioError(
        'permission',
        `${path}: permission denied — run as root or give the user access to it (udev rule, chown)`,
        errno,
      );
    case Errno.EBUSY:
      return new VfioError('busy', `${path} is busy: another process (a VMM?) has the group open`, errno);
    default:
      return new VfioError('other', `${path}: cannot open: ${errnoName(errno)}`, errno);
  }
}
