// The rig's initramfs, built with tsvmm's own image builder (src/images/): busybox, the modules the rig needs
// (dependencies first, from their .modinfo), and test/rig/init.sh as /init.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeInitramfs } from '../../src/images/initramfs.js';
import { resolveKernelModules } from '../../src/images/kernel-modules.js';
import { repoRoot } from '../support/cc.js';

/**
 * Modules /init loads, in this order: virtio transport and console, the host's files (9p, virtiofs or an ext4
 * image on virtio-blk: transport.ts) under a writable
 * overlay, KVM on the emulated SVM, taps for the network tests, loop devices for the block-device tests, VFIO
 * for devices passed through, and lpc_ich (q35's ICH9 LPC function: with it bound, vfio/viability.test.ts can make
 * the ICH9 group non-viable by handing a sibling function to vfio-pci).
 */
export const RIG_MODULES = [
  'virtio_pci',
  'virtio_console',
  '9pnet_virtio',
  '9p',
  'virtiofs',
  'virtio_blk',
  'crc32c_generic',
  'ext4',
  'overlay',
  'kvm_amd',
  'tun',
  'loop',
  'vfio_pci',
  'vfio_iommu_type1',
  'lpc_ich',
] as const;

/** Where /init finds the list of module files to insmod, one archive path per line. */
export const MODULE_LIST = 'etc/rig-modules';

export function writeRigInitramfs(path: string, modulesDir: string): void {
  const { modules } = resolveKernelModules(modulesDir, RIG_MODULES);
  writeInitramfs(path, {
    modules,
    initFile: join(repoRoot, 'test', 'rig', 'init.sh'),
    files: [{ path: MODULE_LIST, data: `${modules.map((m) => m.path).join('\n')}\n` }],
  });
}

/** The /init script as the image holds it (for tests that check its syntax). */
export function rigInitScript(): string {
  return readFileSync(join(repoRoot, 'test', 'rig', 'init.sh'), 'utf8');
}
