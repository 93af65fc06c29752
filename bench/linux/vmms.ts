// The VMMs the Linux benches put side by side, as command lines: tsvmm as users run it (the bundle), Debian's QEMU
// (`qemu-system-x86_64`, or $TSVMM_QEMU) as `-M microvm` or `-M pc` with `-accel kvm`, and QEMU 10 for the CPR
// flows QEMU 7.2 lacks (cpr-reboot, cpr-transfer): the rig's own QEMU (test/rig/qemu.ts: $TSVMM_RIG_QEMU, a host
// QEMU ≥ 10, or Debian trixie's debootstrapped into the rig cache and run from that tree through its own loader).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { QEMU_BINARY, qemuAccel, qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { repoRoot } from '../../test/support/cc.js';
import { rigQemu } from '../../test/rig/qemu.js';

/** The bundled command users run. */
export const TSVMM_BUNDLE = join(repoRoot, 'dist', 'tsvmm.mjs');

export type LinuxVmm = 'tsvmm' | 'qemu-microvm' | 'qemu-pc';

export const VMM_LABEL: Record<LinuxVmm, string> = {
  tsvmm: 'tsvmm',
  'qemu-microvm': 'QEMU -M microvm',
  'qemu-pc': 'QEMU -M pc',
};

/** A QEMU to start: the program and the arguments that come before the machine's own (a loader, -L dirs). */
export interface QemuCommand {
  argv: string[];
  version: string;
}

/** "7.2.22" from `--version`, or null. */
function versionOf(argv: readonly string[]): string | null {
  const r = spawnSync(argv[0], [...argv.slice(1), '--version'], { encoding: 'utf8' });
  return r.status === 0 ? (/version (\d+\.\d+(?:\.\d+)?)/.exec(r.stdout)?.[1] ?? null) : null;
}

/** Debian's QEMU with KVM, or why it cannot be the reference here. */
export function defaultQemu(): { qemu: QemuCommand; reason: null } | { qemu: null; reason: string } {
  const missing = qemuUnavailable();
  if (missing) return { qemu: null, reason: missing };
  if (qemuAccel() !== 'kvm') return { qemu: null, reason: '/dev/kvm is not usable by QEMU (it would run TCG)' };
  return { qemu: { argv: [QEMU_BINARY], version: versionOf([QEMU_BINARY]) ?? '?' }, reason: null };
}

/** A QEMU of major version ≥ 10 (cpr-reboot since 8.2, cpr-transfer since 10.0), or why there is none here. */
export function qemu10(): { qemu: QemuCommand; reason: null } | { qemu: null; reason: string } {
  if (qemuAccel() !== 'kvm') return { qemu: null, reason: '/dev/kvm is not usable by QEMU' };
  try {
    const q = rigQemu({ install: false });
    if (Number(q.version.split('.')[0]) < 10)
      return { qemu: null, reason: `only QEMU ${q.version} here (no trixie QEMU in the rig cache: run the rig once)` };
    return {
      qemu: { argv: [...q.command, ...q.firmwareDirs.flatMap((d) => ['-L', d])], version: q.version },
      reason: null,
    };
  } catch (e) {
    return { qemu: null, reason: (e as Error).message.split('\n')[0] };
  }
}

/** tsvmm: `node dist/tsvmm.mjs run -cpu host ARGS…` (nodeArgs go to Node, e.g. a -r preload). */
export function tsvmmArgv(args: readonly string[], nodeArgs: readonly string[] = []): string[] {
  return [process.execPath, ...nodeArgs, TSVMM_BUNDLE, 'run', '-cpu', 'host', ...args];
}

/** QEMU with KVM, no default devices, no display: `-M microvm` or `-M pc`, then ARGS. */
export function qemuArgv(q: QemuCommand, machine: string, args: readonly string[]): string[] {
  return [
    ...q.argv,
    '-M',
    machine,
    '-accel',
    'kvm',
    '-cpu',
    'host',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    ...args,
  ];
}
