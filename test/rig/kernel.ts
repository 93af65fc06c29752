// The rig's kernel: Debian's current generic amd64 kernel (the meta package linux-image-amd64 names it). The generic
// flavour, not the cloud one the tests boot under tsvmm: only it has 9p and the IOMMU drivers the rig needs.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { resolveMetaPackage, RigSetupError, unpackedPackage } from './debian.js';

export interface RigKernel {
  /** e.g. linux-image-6.1.0-57-amd64 */
  package: string;
  /** e.g. 6.1.0-57-amd64 */
  release: string;
  bzImage: string;
  /** lib/modules/RELEASE of the unpacked package. */
  modulesDir: string;
}

export function rigKernel(): RigKernel {
  const pkg = resolveMetaPackage('linux-image-amd64', /linux-image-\d[^\s]*-amd64(?!-)/);
  const root = unpackedPackage(pkg);
  const release = readdirSync(join(root, 'lib', 'modules'))[0];
  const bzImage = join(root, 'boot', `vmlinuz-${release}`);
  if (!release || !existsSync(bzImage))
    throw new RigSetupError(`${pkg} unpacked without boot/vmlinuz-RELEASE and lib/modules/RELEASE`);
  return { package: pkg, release, bzImage, modulesDir: join(root, 'lib', 'modules', release) };
}
