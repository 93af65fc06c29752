// Planning a machine's virtio-pci devices (main thread, once, before any other thread starts): the host resources
// each back end needs opened (the disk image, the tap, the console's chardev), a PCI slot, MSI vectors with their
// irqfds, notification eventfds, and BAR addresses as firmware would assign them. The result is device-table data.
import { openSync, closeSync, fstatSync, statSync, constants as fsConstants, type Stats } from 'node:fs';
import type { VirtioDeviceConfig } from './config.js';
import type { CharSpec } from '../chardev/index.js';
import type { PciWindows } from '../../devices/pci/bus.js';
import { VIRTIO_PCI_MSIX_BAR, VIRTIO_PCI_MODERN_BAR } from '../../devices/virtio/pci-transport.js';
import { openTap } from '../sys/tun.js';
import { blockDeviceSize } from '../sys/blockdev.js';
import { newImageSyncFlag } from '../sys/image-sync.js';
import { hasInheritedFd, keepAcrossExec, forgetAcrossExec, takeInheritedFd } from '../sys/exec-fds.js';
import { heldElsewhereText, lockWholeFile } from '../sys/file-lock.js';
import { ByteRing } from '../chardev/byte-ring.js';
import { allocateBars, VIRTIO_PCI_BAR_REQUESTS } from './pci-plan.js';
import { virtioQueueCount, type VirtioBackendSpec, type VirtioPciSpec } from '../../devices/virtio/virtio-pci.js';
import type { MsiRouter } from '../runtime/msi-router.js';
import type { IoEventRegistry } from '../runtime/ioevent-registry.js';
import { SetupError } from '../util/setup-error.js';

/** A device the machine cannot set up (an image that does not open, a tap that cannot be created): one clear line. */
export class DeviceSetupError extends SetupError {
  override readonly name = 'DeviceSetupError';
}

/** Slot 0 is the host bridge; virtio functions follow in command-line order. */
export const FIRST_VIRTIO_SLOT = 1;
/** Bus 0 has 32 slots. */
const PCI_SLOTS = 32;

export interface VirtioPlanContext {
  readonly msi: MsiRouter;
  readonly ioEvents: IoEventRegistry;
  readonly windows: PciWindows;
  /** Opens a chardev for a virtio console (its id in the machine's chardev table). */
  openChardev(id: string, spec: CharSpec): Promise<string>;
  /**
   * Taps already open, by interface name (cpr-transfer: the old tsvmm hands its tap fds over, since a tap cannot be
   * attached twice). The plan takes ownership of the ones it uses.
   */
  readonly taps?: ReadonlyMap<string, number>;
}

/** A virtio console's host input: the chardev whose bytes go into the ring the I/O thread drains. */
export interface ConsoleInput {
  readonly chardev: string;
  readonly ring: ByteRing;
}

export interface VirtioPlan {
  readonly specs: VirtioPciSpec[];
  /** Host fds the machine owns from now on (closed when it ends). */
  readonly fds: number[];
  readonly inputs: ConsoleInput[];
  /** The taps among `fds`, by interface name (what a cpr-transfer hands over). */
  readonly taps: { ifname: string; fd: number }[];
  /** Names of the fds registered to be kept across a cpr-exec (the images): forgetAcrossExec them when closed. */
  readonly kept: string[];
  /** The disk images among `fds` (a cpr-save makes the writable ones durable: the host may reboot next). */
  readonly images: DiskImage[];
}

export interface DiskImage {
  readonly id: string;
  readonly fd: number;
  readonly readOnly: boolean;
  /** The image's sync-failure flag, shared with its virtio-blk back end (src/sys/image-sync.ts). */
  readonly syncFailure: SharedArrayBuffer;
}

/** The name a drive's image fd goes by across a cpr-exec and a cpr-transfer (src/sys/exec-fds.ts). */
export const DRIVE_FD_PREFIX = 'drive:';
export function driveFdName(id: string): string {
  return `${DRIVE_FD_PREFIX}${id}`;
}

/**
 * Opens a drive's image and locks it as QEMU does: exclusive when the guest may write it, shared when read-only, so
 * that two VMs never write one image (src/sys/file-lock.ts). `adopt`: take the fd the old process handed over
 * (cpr-transfer) or kept across its exec (cpr-exec) instead; it carries the old process's lock, so locking it
 * again succeeds where a fresh open would be refused by that very lock.
 */
function openImage(c: Extract<VirtioDeviceConfig, { kind: 'blk' }>, adopt: boolean): { fd: number; size: number } {
  const inherited = adopt ? takeInheritedFd(driveFdName(c.id)) : undefined;
  let fd: number;
  try {
    // (libuv opens with O_CLOEXEC: only the fds cpr-exec names survive an exec.)
    fd = inherited ?? openSync(c.path, c.readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR);
  } catch (e) {
    throw new DeviceSetupError(
      `${c.id}: cannot open drive image '${c.path}'${c.readOnly ? ' read-only' : ''}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const refuse = (why: string): never => {
    closeSync(fd);
    throw new DeviceSetupError(`${c.id}: drive image '${c.path}': ${why}`);
  };
  const st = fstatSync(fd);
  if (inherited !== undefined && !sameFile(st, c.path)) refuse('the fd handed over is not this file');
  const mode = c.readOnly ? 'shared' : 'exclusive';
  if (lockWholeFile(fd, mode) === 'held-elsewhere') refuse(heldElsewhereText(mode));
  // A block device (a loop device, a partition) has its size behind an ioctl, not in st_size.
  if (st.isBlockDevice()) return { fd, size: blockDeviceSize(fd) };
  if (!st.isFile()) refuse('neither a regular file nor a block device');
  return { fd, size: st.size };
}

function sameFile(st: Stats, path: string): boolean {
  try {
    const named = statSync(path);
    return named.dev === st.dev && named.ino === st.ino;
  } catch {
    return false;
  }
}

/**
 * Opens and closes every disk image, so a missing, unreadable or locked one is reported before anything else is set
 * up (the plan opens them again for good). An image whose fd a cpr-exec or cpr-transfer handed over is checked when
 * the plan adopts it: opening it afresh here would collide with the lock that fd holds.
 */
export function checkDriveImages(configs: readonly VirtioDeviceConfig[]): void {
  for (const c of configs)
    if (c.kind === 'blk' && !hasInheritedFd(driveFdName(c.id))) closeSync(openImage(c, false).fd);
}

function openVirtioBackend(
  c: VirtioDeviceConfig,
  fds: number[],
  rings: ConsoleInput[],
  taps: VirtioPlan['taps'],
  ctx: VirtioPlanContext,
): Promise<VirtioBackendSpec> | VirtioBackendSpec {
  switch (c.kind) {
    case 'blk': {
      const { fd, size } = openImage(c, true);
      fds.push(fd);
      return {
        type: 'blk',
        fd,
        readOnly: c.readOnly,
        serial: c.serial,
        sizeBytes: size,
        syncFailure: newImageSyncFlag(),
      };
    }
    case 'net': {
      let fd = ctx.taps?.get(c.ifname);
      if (fd === undefined) {
        try {
          fd = openTap(c.ifname).fd;
        } catch (e) {
          throw new DeviceSetupError(`${c.id}: cannot open tap '${c.ifname}': ${(e as Error).message}`);
        }
      }
      fds.push(fd);
      taps.push({ ifname: c.ifname, fd });
      return { type: 'net', fd, mac: c.mac };
    }
    case 'rng':
      return { type: 'rng' };
    case 'console':
      return ctx.openChardev(c.id, c.output).then((output) => {
        const ring = ByteRing.create();
        rings.push({ chardev: output, ring });
        return { type: 'console', output, input: ring.init } as const;
      });
  }
}

export async function planVirtioDevices(
  configs: readonly VirtioDeviceConfig[],
  ctx: VirtioPlanContext,
): Promise<VirtioPlan> {
  if (FIRST_VIRTIO_SLOT + configs.length > PCI_SLOTS)
    throw new DeviceSetupError(`${configs.length} virtio devices: bus 0 has room for ${PCI_SLOTS - FIRST_VIRTIO_SLOT}`);
  const fds: number[] = [];
  const inputs: ConsoleInput[] = [];
  const taps: VirtioPlan['taps'] = [];
  const kept: string[] = [];
  const images: DiskImage[] = [];
  try {
    const bars = allocateBars(
      configs.map(() => VIRTIO_PCI_BAR_REQUESTS),
      ctx.windows,
    );
    const specs: VirtioPciSpec[] = [];
    for (const [i, c] of configs.entries()) {
      const backend = await openVirtioBackend(c, fds, inputs, taps, ctx);
      if (backend.type === 'blk') {
        // Kept open across a cpr-exec, and handed over by a cpr-transfer, with its lock.
        keepAcrossExec(driveFdName(c.id), backend.fd);
        kept.push(driveFdName(c.id));
        images.push({ id: c.id, fd: backend.fd, readOnly: backend.readOnly, syncFailure: backend.syncFailure });
      }
      const queues = virtioQueueCount(backend.type);
      specs.push({
        kind: 'virtio-pci',
        id: c.id,
        backend,
        placement: {
          slot: FIRST_VIRTIO_SLOT + i,
          msi: ctx.msi.allocate(queues + 1),
          notify: ctx.ioEvents.allocate(queues),
          bars: { msix: bars[i].get(VIRTIO_PCI_MSIX_BAR)!, modern: bars[i].get(VIRTIO_PCI_MODERN_BAR)! },
          ioeventfd: c.ioeventfd !== false,
        },
      });
    }
    return { specs, fds, inputs, taps, kept, images };
  } catch (e) {
    for (const name of kept) forgetAcrossExec(name);
    for (const fd of fds) closeSync(fd);
    for (const input of inputs) input.ring.close();
    throw e;
  }
}
