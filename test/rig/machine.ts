// Boots the rig's machine and runs one command in it (test/rig/README.md): QEMU with TCG and `-cpu max` (AMD SVM
// with nested paging, so the guest kernel's kvm_amd gives a real /dev/kvm), Debian's generic kernel, the initramfs
// of image.ts, the host's root shared read-only over 9p, and a per-run share for the command, its environment and
// its exit status. The command's output is streamed as it comes; the kernel's console goes to a log that is shown
// when the machine dies or times out.
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RigSetupError } from './debian.js';
import { writeRigInitramfs } from './image.js';
import { rigKernel } from './kernel.js';
import { rigQemu, type RigQemu } from './qemu.js';
import { prepareTransport, RIG_TRANSPORTS, type PreparedTransport, type RigTransport } from './transport.js';
import { VFIO_DEVICES, type VfioDeviceName } from '../support/vfio-devices.js';

// The emulated PCI devices --vfio can bind: declared beside the tests that look for them (test/support/vfio-devices.ts).
export { VFIO_DEVICES, type VfioDeviceName };

/** Where the run's share is mounted inside (its files: env, command, status, vfio-bound, and the caller's). */
export const RIG_SHARE_IN_GUEST = '/run/rig';

export interface RigOptions {
  /** argv to run as root in `cwd` (one element: a shell command line); null for an interactive shell on the terminal. */
  command: string[] | null;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  cpus?: number;
  /** QEMU's -m spelling, e.g. "8G". */
  memory?: string;
  vfio?: VfioDeviceName[];
  /** Ends the machine (and reports a time-out) after this long. */
  timeoutMs?: number;
  /** Where the command's output goes (default: this process's stdout). */
  output?: (chunk: Buffer) => void;
  /** Progress lines ("rig: …"); default: this process's stderr. */
  log?: (line: string) => void;
  /** Fetch a newer QEMU if the host's would need single-threaded TCG (default true). */
  installQemu?: boolean;
  /** A directory to use as the run's share (kept afterwards); default: a private temporary one, removed. */
  shareDir?: string;
  /** How the host's files get in (transport.ts); default $TSVMM_RIG_TRANSPORT, else 9p. */
  transport?: RigTransport;
}

export interface RigResult {
  /** The command's exit status; null when the machine died or timed out before it ended. */
  status: number | null;
  timedOut: boolean;
  /** The machine ended without the command's status (a kernel panic, a rig set-up failure, QEMU dying). */
  died: boolean;
  ms: number;
  /** Kernel lines that mean trouble (soft lockups, BUGs, oopses, RCU stalls), from the console log. */
  kernelTrouble: string[];
  /** The last lines of the console log (kernel and /init). */
  consoleTail: string;
  qemu: RigQemu;
}

/** Two vCPUs use both host cores of the development machine; 8G holds two nested guests, /dev/shm and the overlay. */
const DEFAULTS = { cpus: Number(process.env.TSVMM_RIG_CPUS ?? 2), memory: process.env.TSVMM_RIG_MEMORY ?? '8G' };
const TROUBLE = /soft lockup|hard LOCKUP|BUG:|Oops|Kernel panic|rcu: INFO|WARNING:|hung_task|Out of memory/;

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** `export NAME='value'` lines for every variable a POSIX shell can name (the command sees the caller's environment). */
export function envScript(env: NodeJS.ProcessEnv, cwd: string): string {
  const skip = new Set(['PWD', 'OLDPWD', 'SHLVL', '_']);
  const lines = Object.entries(env)
    .filter(([k, v]) => v !== undefined && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !skip.has(k))
    .map(([k, v]) => `export ${k}=${shellQuote(v!)}`);
  lines.push(`export RIG_CWD=${shellQuote(cwd)}`, 'export TSVMM_IN_RIG=1');
  lines.push(`export TSVMM_RIG_VFIO_DEVICES="$(cat ${RIG_SHARE_IN_GUEST}/vfio-bound 2>/dev/null)"`);
  return `${lines.join('\n')}\n`;
}

/** The script /init runs: one argument is a shell command line, several are an argv run as is. */
export function commandScript(command: string[]): string {
  if (command.length === 0) throw new Error('rig: no command');
  return command.length === 1 ? `${command[0]}\n` : `exec ${command.map(shellQuote).join(' ')}\n`;
}

/** QEMU's arguments for a run (everything but the QEMU command itself). */
export function qemuArgs(o: {
  qemu: Pick<RigQemu, 'tcgThreads' | 'firmwareDirs'>;
  bzImage: string;
  initrd: string;
  shareDir: string;
  consoleLog: string;
  cpus: number;
  memory: string;
  vfio: VfioDeviceName[];
  interactive: boolean;
  nvmeImage: string;
  transportArgs: string[];
}): string[] {
  const q35 = o.vfio.length > 0;
  const args = [
    ...o.qemu.firmwareDirs.flatMap((d) => ['-L', d]),
    '-accel',
    `tcg,thread=${o.qemu.tcgThreads}`,
    '-cpu',
    'max',
    '-smp',
    String(o.cpus),
    '-m',
    o.memory,
    '-machine',
    q35 ? 'q35' : 'pc',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    o.bzImage,
    '-initrd',
    o.initrd,
    '-append',
    ['console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4', ...(q35 ? ['intel_iommu=on'] : [])].join(' '),
    ...o.transportArgs,
    '-virtfs',
    `local,path=${o.shareDir},mount_tag=rigshare,security_model=none`,
    '-device',
    'virtio-serial-pci',
  ];
  if (o.interactive) {
    args.push('-serial', 'mon:stdio', '-chardev', 'null,id=rigout');
  } else {
    args.push('-serial', `file:${o.consoleLog}`, '-chardev', 'stdio,id=rigout');
  }
  args.push('-device', 'virtserialport,chardev=rigout,name=rig.out');
  if (q35) {
    // The IOMMU comes before the devices it translates for; interrupt remapping lets vfio_iommu_type1 accept them.
    args.push('-device', 'intel-iommu,intremap=on');
    for (const name of o.vfio) {
      if (name === 'edu') args.push('-device', 'edu');
      if (name === 'nvme') {
        args.push(
          '-drive',
          `file=${o.nvmeImage},if=none,id=rignvme,format=raw`,
          '-device',
          'nvme,drive=rignvme,serial=rig-nvme',
        );
      }
      if (name === 'e1000e') args.push('-netdev', 'user,id=rignet,restrict=on', '-device', 'e1000e,netdev=rignet');
    }
  }
  return args;
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  }
}

/** Boots the rig, runs the command, powers off. Set-up failures throw RigSetupError (from debian.ts). */
export async function runInRig(options: RigOptions): Promise<RigResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const output = options.output ?? ((chunk: Buffer) => process.stdout.write(chunk));
  const cpus = options.cpus ?? DEFAULTS.cpus;
  const memory = options.memory ?? DEFAULTS.memory;
  const vfio = [...new Set(options.vfio ?? [])];
  const interactive = options.command === null;
  const cwd = options.cwd ?? process.cwd();
  const transportKind = options.transport ?? defaultTransport();

  const qemu = rigQemu({ install: options.installQemu ?? true });
  const kernel = rigKernel();
  const runDir = mkdtempSync(join(tmpdir(), 'tsvmm-rig-'));
  const shareDir = options.shareDir ?? join(runDir, 'share');
  const consoleLog = join(runDir, 'console.log');
  const initrd = join(runDir, 'initrd.img');
  const nvmeImage = join(runDir, 'nvme.img');
  let transport: PreparedTransport | null = null;
  try {
    writeRigInitramfs(initrd, kernel.modulesDir);
    mkdirSync(shareDir, { recursive: true, mode: 0o700 });
    rmSync(join(shareDir, 'status'), { force: true });
    // The file behind the nvme namespace is the host's, so a test inside can check what a guest wrote (through the
    // read-only root; drop the page cache before reading it again).
    const nvmeEnv = vfio.includes('nvme') ? `export TSVMM_RIG_NVME_IMAGE=${shellQuote(nvmeImage)}\n` : '';
    writeFileSync(join(shareDir, 'env'), envScript(options.env ?? process.env, cwd) + nvmeEnv);
    writeFileSync(join(shareDir, 'cwd'), cwd);
    writeFileSync(join(shareDir, 'vfio-ids'), vfio.map((n) => VFIO_DEVICES[n].id).join('\n'));
    if (interactive) writeFileSync(join(shareDir, 'shell'), '');
    else writeFileSync(join(shareDir, 'command'), commandScript(options.command!));
    if (vfio.includes('nvme')) {
      closeSync(openSync(nvmeImage, 'w', 0o600));
      truncateSync(nvmeImage, 64 << 20);
    }
    transport = prepareTransport(transportKind, { runDir, memory, cwd });
    writeFileSync(join(shareDir, 'transport'), transport.initMode);
    const args = qemuArgs({
      qemu,
      bzImage: kernel.bzImage,
      initrd,
      shareDir,
      consoleLog,
      cpus,
      memory,
      vfio,
      interactive,
      nvmeImage,
      transportArgs: transport.qemuArgs,
    });
    log(
      `rig: ${qemu.why}, ${qemu.tcgThreads}-threaded TCG; kernel ${kernel.release}; ${cpus} CPUs, ${memory}; host files by ${transportKind}` +
        `${vfio.length ? `; q35 + intel-iommu, vfio: ${vfio.join(', ')}` : ''}`,
    );

    const started = Date.now();
    let timedOut = false;
    const exit = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(qemu.command[0], [...qemu.command.slice(1), ...args], {
        // Not /dev/null: at EOF on stdin QEMU's stdio chardev reports the host side closed, and the guest's writes
        // to rig.out stall. A pipe nobody writes keeps it open.
        stdio: [interactive ? 'inherit' : 'pipe', interactive ? 'inherit' : 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (d: Buffer) => output(d));
      child.stderr!.on('data', (d: Buffer) => {
        for (const line of d.toString().split('\n')) if (line.trim()) log(`rig: qemu: ${line}`);
      });
      const timer =
        options.timeoutMs === undefined
          ? null
          : setTimeout(() => {
              timedOut = true;
              child.kill('SIGKILL');
            }, options.timeoutMs);
      // Our own death (Ctrl-C in the runner, a CI time-out) must not leave QEMU running.
      const killChild = () => child.kill('SIGKILL');
      process.once('exit', killChild);
      child.on('error', reject);
      child.on('close', (code) => {
        if (timer) clearTimeout(timer);
        process.removeListener('exit', killChild);
        resolve(code);
      });
    });
    const ms = Date.now() - started;
    const statusText = existsSync(join(shareDir, 'status'))
      ? readFileSync(join(shareDir, 'status'), 'utf8').trim()
      : '';
    const status = /^\d+$/.test(statusText) && !timedOut ? Number(statusText) : null;
    const consoleText = interactive ? '' : tail(consoleLog, 100_000);
    const kernelTrouble = consoleText.split('\n').filter((l) => TROUBLE.test(l));
    const result: RigResult = {
      status,
      timedOut,
      died: status === null && !timedOut,
      ms,
      kernelTrouble,
      consoleTail: tail(consoleLog, 40),
      qemu,
    };
    if (timedOut) log(`rig: timed out after ${Math.round(ms / 1000)} s; the machine was killed`);
    else if (result.died) log(`rig: the machine died without the command's status (QEMU exit ${exit})`);
    if (result.timedOut || result.died) log(`rig: last console lines:\n${result.consoleTail}`);
    for (const line of kernelTrouble.slice(0, 20)) log(`rig: kernel: ${line}`);
    return result;
  } finally {
    transport?.stop();
    rmSync(runDir, { recursive: true, force: true });
  }
}

function defaultTransport(): RigTransport {
  const chosen = process.env.TSVMM_RIG_TRANSPORT ?? '9p';
  if (!(RIG_TRANSPORTS as readonly string[]).includes(chosen)) {
    throw new RigSetupError(`TSVMM_RIG_TRANSPORT=${chosen}: want one of ${RIG_TRANSPORTS.join(', ')}`);
  }
  return chosen as RigTransport;
}
