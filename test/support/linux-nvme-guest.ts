// The Linux guest on a passed-through NVMe controller (issue 11): Debian's generic kernel with only the nvme module
// (and its dependencies) in an initramfs whose /init runs a scripted body (linux-guest.ts scenarioInit), booted
// under tsvmm or under QEMU `-accel kvm -M pc` with `-device vfio-pci,host=BDF` and nothing else but the serial
// console. Used by src/machine/linux-vfio-nvme.test.ts and bench/vfio.ts.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { QEMU_BINARY } from '../../examples/guests/qemu-runner.js';
import { type LinuxGuestKernel, SCENARIO_PREFIX, linuxGuestCmdline } from './linux-guest.js';
import { scenarioImage } from './linux-scenario-run.js';
import { cliPath } from './tsvmm.js';
import { type VmmRun, runVmm } from './vmm-run.js';

export const NVME_MODULES = ['nvme'] as const;

/** Seconds since boot with centisecond resolution (busybox's date has no %N): `t0=$(now)`. */
export const NOW_FN = 'now() { cut -d" " -f1 /proc/uptime; }';

/** An initramfs whose /init loads nvme and runs `body` (built once, as every scenario image). */
export function nvmeGuestImage(name: string, kernel: LinuxGuestKernel, body: readonly string[]): string {
  return scenarioImage(name, kernel, body, NVME_MODULES);
}

export type Vmm = 'tsvmm' | 'qemu';

/**
 * The first `bytes` of the rig's file behind the NVMe namespace (TSVMM_RIG_NVME_IMAGE: the outer QEMU's drive on the
 * host, seen inside through the read-only 9p root), read past this machine's page cache — the 9p root is
 * cache=loose, so a second read would otherwise see the first one's bytes. Null where there is no such file (a
 * real host's NVMe).
 */
export function nvmeBackingFile(bytes: number): Buffer | null {
  const path = process.env.TSVMM_RIG_NVME_IMAGE;
  if (!path || !existsSync(path)) return null;
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  return readFileSync(path).subarray(0, bytes);
}

/** The command line: the same machine in each VMM's spelling (QEMU's pc, which tsvmm's machine imitates). */
export function nvmeGuestArgv(
  vmm: Vmm,
  o: { kernel: LinuxGuestKernel; initrd: string; bdf: string; timeoutS: number },
) {
  const common = [
    '-m',
    '512M',
    '-smp',
    '2',
    '-kernel',
    o.kernel.bzImage,
    '-initrd',
    o.initrd,
    '-append',
    linuxGuestCmdline(),
    '-serial',
    'stdio',
    '-device',
    `vfio-pci,host=${o.bdf}`,
    '-no-reboot',
  ];
  return vmm === 'tsvmm'
    ? [process.execPath, cliPath, 'run', ...common, '--timeout', String(o.timeoutS)]
    : [QEMU_BINARY, '-accel', 'kvm', '-M', 'pc', '-cpu', 'host', '-nodefaults', '-display', 'none', ...common];
}

export interface NvmeGuestRun extends VmmRun {
  /** The guest's `scenario:` lines, prefix removed. */
  lines: string[];
}

/** Boots the guest once under `vmm` and waits for its end (QEMU gets `timeoutS` as a kill timer). */
export async function runNvmeGuest(
  vmm: Vmm,
  o: { kernel: LinuxGuestKernel; initrd: string; bdf: string; timeoutS: number },
): Promise<NvmeGuestRun> {
  const r = await runVmm(nvmeGuestArgv(vmm, o), { timeoutMs: (o.timeoutS + 60) * 1000 });
  const lines = r.serial
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.startsWith(SCENARIO_PREFIX))
    .map((l) => l.slice(SCENARIO_PREFIX.length + 1));
  return { ...r, lines };
}

/** Status, argv, stderr and the serial output, for an assertion's message. */
export function nvmeGuestReport(vmm: Vmm, r: VmmRun): string {
  return `\n${vmm}: status ${r.status}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ', timed out' : ''}, ${r.ms} ms\n$ ${r.argv.join(' ')}\nstderr:\n${r.stderr}\nserial:\n${r.serial}`;
}
