// Which QEMU runs the rig, and with how many TCG threads.
//
// Measured on the 2-core development host (docs in test/rig/README.md): Debian bookworm's QEMU 7.2 with
// multi-threaded TCG and 2 vCPUs hangs nested KVM — kvm/vcpu.test.js left both L1 CPUs in soft lockup inside node
// (a 600 s time-out, while the file takes ~15 s); single-threaded TCG does not hang but runs both vCPUs on one
// host core. Debian trixie's QEMU 10.0 runs multi-threaded without the hang. So, in order:
//   1. $TSVMM_RIG_QEMU: a QEMU binary to use as it is (threads by its version, as below);
//   2. the host's qemu-system-x86_64 when it is 10 or newer: multi-threaded;
//   3. trixie's QEMU, debootstrapped once into the rig cache (~1 min, needs root), run from its tree: multi-threaded;
//   4. the host's older QEMU, single-threaded (slower, but it does not hang).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { debootstrapTree, hasCommand, rigCachePath, RigSetupError } from './debian.js';

/** Multi-threaded TCG is used from this QEMU major version on (the first one measured not to hang nested KVM). */
export const MTTCG_MIN_MAJOR = 10;
const TRIXIE_TREE = 'qemu-trixie';

export interface RigQemu {
  /** The command to start QEMU: a binary, or a dynamic loader with the binary and its library path. */
  command: string[];
  /** Firmware directories to pass with -L (empty: QEMU's built-in ones). */
  firmwareDirs: string[];
  version: string;
  tcgThreads: 'multi' | 'single';
  /** One line on where this QEMU came from and why these threads. */
  why: string;
}

/** "10.0.13" from `qemu-system-x86_64 --version`, or null when the command does not run. */
function versionOf(command: string[]): string | null {
  const r = spawnSync(command[0], [...command.slice(1), '--version'], { encoding: 'utf8' });
  return r.status === 0 ? (/version (\d+\.\d+(?:\.\d+)?)/.exec(r.stdout)?.[1] ?? null) : null;
}

const major = (version: string): number => Number(version.split('.')[0]);
const threadsFor = (version: string): 'multi' | 'single' => (major(version) >= MTTCG_MIN_MAJOR ? 'multi' : 'single');

/** The QEMU inside a debootstrapped tree, started through the tree's own loader so its libraries are the tree's. */
function fromTree(root: string): Pick<RigQemu, 'command' | 'firmwareDirs'> {
  return {
    command: [
      join(root, 'usr/lib64/ld-linux-x86-64.so.2'),
      '--library-path',
      join(root, 'usr/lib/x86_64-linux-gnu'),
      join(root, 'usr/bin/qemu-system-x86_64'),
    ],
    firmwareDirs: ['usr/share/qemu', 'usr/share/seabios', 'usr/lib/ipxe/qemu']
      .map((d) => join(root, d))
      .filter(existsSync),
  };
}

/**
 * The QEMU for the rig. With `install` false nothing is fetched (a person's `npm start` should not wait a minute for
 * a debootstrap): an installed trixie tree is still used, else the host's QEMU as it is.
 */
export function rigQemu(options: { install: boolean }): RigQemu {
  const override = process.env.TSVMM_RIG_QEMU;
  if (override) {
    const version = versionOf([override]);
    if (!version) throw new RigSetupError(`TSVMM_RIG_QEMU=${override} does not run as a QEMU`);
    return {
      command: [override],
      firmwareDirs: [],
      version,
      tcgThreads: threadsFor(version),
      why: `TSVMM_RIG_QEMU (QEMU ${version})`,
    };
  }
  const hostVersion = hasCommand('qemu-system-x86_64') ? versionOf(['qemu-system-x86_64']) : null;
  if (hostVersion && threadsFor(hostVersion) === 'multi') {
    return {
      command: ['qemu-system-x86_64'],
      firmwareDirs: [],
      version: hostVersion,
      tcgThreads: 'multi',
      why: `the host's QEMU ${hostVersion}`,
    };
  }
  const treeInstalled = existsSync(join(rigCachePath(), TRIXIE_TREE, '.tsvmm-complete'));
  let treeError: string | null = null;
  if (treeInstalled || options.install) {
    try {
      if (!treeInstalled) {
        process.stderr.write(
          `rig: installing Debian trixie's QEMU into the rig cache (once, ~1 min): ` +
            `${hostVersion ? `the host's QEMU ${hostVersion} hangs nested KVM with multi-threaded TCG` : 'the host has no QEMU'}\n`,
        );
      }
      const tree = fromTree(debootstrapTree(TRIXIE_TREE, 'trixie', ['qemu-system-x86']));
      const version = versionOf(tree.command);
      if (!version) throw new RigSetupError(`the QEMU in ${TRIXIE_TREE} does not run`);
      return {
        ...tree,
        version,
        tcgThreads: threadsFor(version),
        why: `Debian trixie's QEMU ${version} from the rig cache`,
      };
    } catch (e) {
      if (!(e instanceof RigSetupError)) throw e;
      treeError = e.message;
    }
  }
  if (hostVersion) {
    return {
      command: ['qemu-system-x86_64'],
      firmwareDirs: [],
      version: hostVersion,
      tcgThreads: 'single',
      why:
        `the host's QEMU ${hostVersion}, single-threaded TCG (older QEMUs hang nested KVM multi-threaded)` +
        `${treeError ? `; no newer QEMU: ${treeError}` : ''}`,
    };
  }
  throw new RigSetupError(`no QEMU for the rig: apt-get install qemu-system-x86${treeError ? ` (${treeError})` : ''}`);
}
