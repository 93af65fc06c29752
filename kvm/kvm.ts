// Kvm: owns the /dev/kvm file descriptor. Opening checks the API version and the one capability tsvmm cannot run
// without, and turns every way that can fail into a KvmUnavailableError with a one-line message a user can act on.
import * as libc from '../src/sys/libc.js';
import { Errno, errnoName, SysError } from '../src/sys/errno.js';
import * as K from './bindings/ioctls.js';
import { ioctlValue, ioctlBuffer, isErrno } from './fd-ioctl.js';
import {
  decodeCpuid2,
  encodeCpuid2,
  encodeMsrList,
  decodeMsrList,
  msrListCount,
  encodeMsrs,
  decodeMsrs,
} from './bindings/codec-vcpu.js';
import { Vm } from './vm.js';
import { featuresFrom, type VcpuFeatures } from './vcpu-features.js';
import type { CpuidEntry, MsrEntry } from './bindings/types.js';
import { SetupError } from '../src/util/setup-error.js';

export type KvmUnavailableReason =
  | 'missing'
  | 'permission'
  | 'unsupported'
  | 'not-kvm'
  | 'api-version'
  | 'capability'
  | 'other';

/** /dev/kvm cannot be used. `message` is one line, starting with `tsvmm: <path>:`. */
export class KvmUnavailableError extends SetupError {
  readonly path: string;
  readonly reason: KvmUnavailableReason;
  readonly errno: number | null;

  constructor(path: string, reason: KvmUnavailableReason, detail: string, errno: number | null = null) {
    super(`${path}: ${detail}`);
    this.name = 'KvmUnavailableError';
    this.path = path;
    this.reason = reason;
    this.errno = errno;
  }
}

/** The error for a failed open(2) of the KVM device, by errno. */
export function openFailure(path: string, errno: number): KvmUnavailableError {
  switch (errno) {
    case Errno.ENOENT:
      return new KvmUnavailableError(path, 'missing', 'no such device — is the kvm module loaded?', errno);
    case Errno.EACCES:
    case Errno.EPERM:
      return new KvmUnavailableError(
        path,
        'permission',
        "permission denied — add the user to the 'kvm' group or run with access to the device",
        errno,
      );
    case Errno.ENXIO:
    case Errno.ENODEV:
      return new KvmUnavailableError(
        path,
        'unsupported',
        'no KVM support in this kernel (module not loaded, or virtualization disabled in firmware)',
        errno,
      );
    default:
      return new KvmUnavailableError(path, 'other', `cannot open: ${errnoName(errno)}`, errno);
  }
}

/** KVM_GET_SUPPORTED_CPUID answers E2BIG until the buffer is large enough; start here and double. */
const CPUID_INITIAL_ENTRIES = 128;
const CPUID_MAX_ENTRIES = 4096;

export class Kvm {
  readonly fd: number;
  readonly path: string;
  readonly apiVersion: number;
  private mmapSize: number | null = null;
  private msrIndices: number[] | null = null;
  private closed = false;

  private constructor(fd: number, path: string, apiVersion: number) {
    this.fd = fd;
    this.path = path;
    this.apiVersion = apiVersion;
  }

  /** Opens the KVM device; throws KvmUnavailableError (one clear line) when it is missing or unusable. */
  static open(path = '/dev/kvm'): Kvm {
    let fd: number;
    try {
      fd = libc.open(path, libc.O_RDWR | libc.O_CLOEXEC);
    } catch (e) {
      if (e instanceof SysError) throw openFailure(path, e.errno);
      throw e;
    }
    try {
      let version: number;
      try {
        version = ioctlValue(fd, K.KVM_GET_API_VERSION);
      } catch (e) {
        if (e instanceof SysError) {
          throw new KvmUnavailableError(
            path,
            'not-kvm',
            `not a KVM device (KVM_GET_API_VERSION failed: ${e.code})`,
            e.errno,
          );
        }
        throw e;
      }
      if (version !== K.KVM_API_VERSION) {
        throw new KvmUnavailableError(
          path,
          'api-version',
          `KVM API version ${version}, tsvmm needs ${K.KVM_API_VERSION}`,
        );
      }
      if (ioctlValue(fd, K.KVM_CHECK_EXTENSION, K.KVM_CAP_USER_MEMORY) <= 0) {
        throw new KvmUnavailableError(path, 'capability', 'KVM lacks KVM_CAP_USER_MEMORY (user-space guest memory)');
      }
      return new Kvm(fd, path, version);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  /** KVM_CHECK_EXTENSION on the system fd: 0 when absent, otherwise 1 or a capability-specific value. */
  checkExtension(cap: number): number {
    return ioctlValue(this.fd, K.KVM_CHECK_EXTENSION, cap);
  }

  /** Size of the per-vCPU mapping (kvm_run page plus the PIO and coalesced-MMIO pages). */
  vcpuMmapSize(): number {
    this.mmapSize ??= ioctlValue(this.fd, K.KVM_GET_VCPU_MMAP_SIZE);
    return this.mmapSize;
  }

  /** KVM_GET_SUPPORTED_CPUID: every leaf KVM can present to a guest, with KVM's masks applied. */
  supportedCpuid(): CpuidEntry[] {
    for (let n = CPUID_INITIAL_ENTRIES; n <= CPUID_MAX_ENTRIES; n *= 2) {
      const buffer = encodeCpuid2(n);
      try {
        ioctlBuffer(this.fd, K.KVM_GET_SUPPORTED_CPUID, buffer);
        return decodeCpuid2(buffer);
      } catch (e) {
        if (!isErrno(e, Errno.E2BIG)) throw e;
      }
    }
    throw new Error(`KVM_GET_SUPPORTED_CPUID: more than ${CPUID_MAX_ENTRIES} entries`);
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs a checkpoint may need to save (cached). */
  msrIndexList(): number[] {
    this.msrIndices ??= this.msrList(K.KVM_GET_MSR_INDEX_LIST);
    return this.msrIndices.slice();
  }

  /** KVM_GET_MSR_FEATURE_INDEX_LIST: feature MSRs readable on the system fd (KVM_CAP_GET_MSR_FEATURES). */
  msrFeatureIndexList(): number[] {
    return this.msrList(K.KVM_GET_MSR_FEATURE_INDEX_LIST);
  }

  /** Values of feature MSRs (KVM_GET_MSRS on the system fd); returns only those KVM could read, in order. */
  featureMsrs(indices: readonly number[]): MsrEntry[] {
    const buffer = encodeMsrs(indices);
    const n = ioctlBuffer(this.fd, K.KVM_GET_MSRS, buffer);
    return decodeMsrs(buffer, n);
  }

  // The kernel writes the needed count into nmsrs before failing with E2BIG, so ask with 0 first.
  private msrList(request: number): number[] {
    const probe = encodeMsrList(0);
    try {
      ioctlBuffer(this.fd, request, probe);
      return [];
    } catch (e) {
      if (!isErrno(e, Errno.E2BIG)) throw e;
    }
    const buffer = encodeMsrList(msrListCount(probe));
    ioctlBuffer(this.fd, request, buffer);
    return decodeMsrList(buffer);
  }

  /** What a vCPU's state functions can use, as seen from the system fd (a VM may refine it: Vm.vcpuFeatures). */
  vcpuFeatures(): VcpuFeatures {
    return featuresFrom((cap) => this.checkExtension(cap), this.msrIndexList());
  }

  /** KVM_CREATE_VM (type 0: the default x86 VM). The Vm asks this Kvm for its vCPUs' mmap size and MSR list. */
  createVm(type = 0): Vm {
    const fd = ioctlValue(this.fd, K.KVM_CREATE_VM, type);
    return Vm.adopt(fd, this);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }
}
