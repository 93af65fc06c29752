// Runs a Linux scenario (test/support/linux-scenarios.ts) under tsvmm or QEMU with the same devices, spelled as QEMU
// spells them, and plays the host's part while it runs: types the line hvc0 asks for, serves the nc transfers from
// the tap's namespace, presses the power button (QMP system_powerdown) when the guest waits for it, and wakes the
// guest from S3 (QMP system_wakeup) after it suspends. Collects ttyS0, hvc0, the QMP events and the exit status.
//
//   const run = await runScenario({ vmm: 'tsvmm', kernel: k.bzImage, initrd, smp: 2, end: 'powerbutton', dir, … });
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { cliPath } from './tsvmm.js';
import { repoRoot } from './cc.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';
import {
  buildLinuxGuestInitramfs,
  LINUX_GUEST_MODULES,
  linuxGuestCmdline,
  SCENARIO_PREFIX,
  scenarioInit,
  type LinuxGuestKernel,
} from './linux-guest.js';
import { resolveKernelModules } from '../../src/images/kernel-modules.js';
import { HOST_IP, HVC_INPUT, HVC_PROMPT, POWER_BUTTON_WAIT, type ScenarioEnd } from './linux-scenarios.js';
import { QEMU_BINARY } from '../../examples/guests/qemu-runner.js';
import type { TapNamespace } from '../../examples/guests/virtio-probe-host.js';

export type Vmm = 'tsvmm' | 'qemu';

export interface ScenarioOptions {
  vmm: Vmm;
  /** bzImage or vmlinux (PVH). */
  kernel: string;
  initrd: string;
  smp: number;
  /** How the devices scenario ends (scenario.end=); the acpi scenario ignores it. */
  end?: ScenarioEnd;
  noReboot: boolean;
  /** The raw disk image (virtio-blk). */
  disk: string;
  /** The tap (virtio-net) and its namespace, where the VMM and the nc peer run; absent: no NIC. */
  tap?: TapNamespace;
  /** The file the nc peer sends the guest (needs `tap`). */
  download?: string;
  /** Where the sockets go (short: unix socket paths are limited to 108 bytes). */
  dir: string;
  /** Seconds the guest stays in S3 before the host wakes it. */
  s3Seconds?: number;
  timeoutS: number;
  qemuAccel?: 'kvm' | 'tcg';
}

export interface ScenarioRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  serial: string;
  hvc: string;
  stderr: string;
  events: QmpEvent[];
  /** The nc peer's JSON lines. */
  peer: Record<string, unknown>[];
  /** When each ttyS0 line arrived (ms since the VMM started), for reports: where a slow run spent its time. */
  timeline: string[];
  /** Milliseconds the guest spent in S3 as the host saw it (SUSPEND event to system_wakeup). */
  s3Ms: number | null;
  timedOut: boolean;
  ms: number;
  argv: string[];
}

const RAM = '512M';
/** The nc peer, compiled (test/support/linux-net-peer.ts). */
const PEER_SCRIPT = join(repoRoot, 'dist', 'test', 'support', 'linux-net-peer.js');

/** The VMM's command line (program first) for `o`, and the socket paths in it. */
export function scenarioCommand(o: ScenarioOptions): { argv: string[]; hvcPath: string; qmpPath: string } {
  const hvcPath = join(o.dir, `${o.vmm}-hvc.sock`);
  const qmpPath = join(o.dir, `${o.vmm}-qmp.sock`);
  const append = linuxGuestCmdline(o.end ? `scenario.end=${o.end}` : '');
  const devices = [
    '-drive',
    `file=${o.disk},if=none,id=d0,format=raw,discard=unmap`,
    '-device',
    'virtio-blk-pci,drive=d0',
    ...(o.tap
      ? [
          '-netdev',
          `tap,id=n0,ifname=${o.tap.tap},script=no,downscript=no`,
          '-device',
          'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56',
        ]
      : []),
    '-device',
    'virtio-rng-pci',
    '-device',
    'virtio-serial-pci',
    '-chardev',
    `socket,id=hvc,path=${hvcPath},server=on,wait=off`,
    '-device',
    'virtconsole,chardev=hvc',
    '-qmp',
    `unix:${qmpPath},server=on,wait=off`,
    ...(o.noReboot ? ['-no-reboot'] : []),
  ];
  const common = ['-m', RAM, '-smp', String(o.smp), '-kernel', o.kernel, '-initrd', o.initrd, '-append', append];
  const argv =
    o.vmm === 'tsvmm'
      ? [process.execPath, cliPath, 'run', ...common, '-serial', 'stdio', ...devices, '--timeout', String(o.timeoutS)]
      : [
          QEMU_BINARY,
          '-accel',
          o.qemuAccel ?? 'kvm',
          '-M',
          'pc',
          ...((o.qemuAccel ?? 'kvm') === 'kvm' ? ['-cpu', 'host'] : []),
          ...common,
          '-nodefaults',
          '-display',
          'none',
          '-serial',
          'stdio',
          // QEMU has pvpanic only when asked, and ends with 1 for a panic where tsvmm has its own 126.
          '-device',
          'pvpanic',
          '-action',
          'panic=exit-failure',
          ...devices,
        ];
  return { argv, hvcPath, qmpPath };
}

/** Connects to a unix socket the VMM creates, retrying until it exists or `alive()` turns false. */
async function connectWhenReady(path: string, alive: () => boolean): Promise<Socket | null> {
  while (alive()) {
    if (existsSync(path)) {
      const s = await new Promise<Socket | null>((resolve) => {
        const c = createConnection(path);
        c.once('connect', () => resolve(c));
        c.once('error', () => resolve(null));
      });
      if (s) return s;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

/** Runs the scenario guest under `o.vmm` until it exits (or the time-out kills it), playing the host's part. */
export async function runScenario(o: ScenarioOptions): Promise<ScenarioRun> {
  const { argv: vmmArgv, hvcPath, qmpPath } = scenarioCommand(o);
  const inNs = (a: string[]) => (o.tap ? ['ip', 'netns', 'exec', o.tap.ns, ...a] : a);
  const argv = inNs(vmmArgv);
  const started = Date.now();
  const result: ScenarioRun = {
    status: null,
    signal: null,
    serial: '',
    hvc: '',
    stderr: '',
    events: [],
    peer: [],
    s3Ms: null,
    timeline: [],
    timedOut: false,
    ms: 0,
    argv,
  };
  const note = (what: string) => {
    result.stderr += `[host] ${what}\n`;
  };

  // The nc peer listens before the guest boots.
  let peer: ChildProcess | null = null;
  if (o.tap && o.download) {
    const peerArgv = inNs([process.execPath, PEER_SCRIPT, HOST_IP, o.download]);
    peer = spawn(peerArgv[0], peerArgv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    peer.stdout!.setEncoding('utf8');
    peer.stdout!.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        result.peer.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    });
    peer.stderr!.on('data', (d) => note(`nc peer: ${d}`));
    const t0 = Date.now();
    while (!result.peer.some((l) => 'listening' in l) && Date.now() - t0 < 60_000 && peer.exitCode === null) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let running = true;
  const exited = new Promise<void>((resolve) => {
    child.on('close', (status, signal) => {
      running = false;
      result.status = status;
      result.signal = signal;
      resolve();
    });
  });
  const timer = setTimeout(
    () => {
      result.timedOut = true;
      child.kill('SIGKILL');
    },
    (o.timeoutS + 60) * 1000,
  );
  child.stderr.on('data', (d) => {
    result.stderr += d;
  });

  // QMP: keep every event; press the power button when the guest waits for it; wake it after it suspends.
  // (In an object: TypeScript does not see the callback assign a plain `let`.)
  const q: { client: QmpClient | null } = { client: null };
  const qmpReady = (async () => {
    const s = await connectWhenReady(qmpPath, () => running);
    s?.destroy();
    if (!running) return;
    q.client = await QmpClient.connect(qmpPath);
  })().catch((e) => note(`qmp: ${(e as Error).message}`));
  let powerPressed = false;
  const onSerialLine = (line: string) => {
    if (line.startsWith(SCENARIO_PREFIX) || /Linux version|Run \/init|reboot: /.test(line)) {
      result.timeline.push(`${String(Date.now() - started).padStart(7)} ms ${line.slice(0, 100)}`);
    }
    if (line === POWER_BUTTON_WAIT && !powerPressed) {
      powerPressed = true;
      void qmpReady.then(() => q.client?.execute('system_powerdown')).catch((e) => note(`system_powerdown: ${e}`));
    }
  };
  const waker = (async () => {
    await qmpReady;
    let handled = 0;
    const qmp = q.client;
    while (running && qmp && !qmp.closed) {
      const suspends = qmp.events.filter((e) => e.event === 'SUSPEND').length;
      if (suspends > handled) {
        handled = suspends;
        const t = Date.now();
        await new Promise((r) => setTimeout(r, (o.s3Seconds ?? 2) * 1000));
        await qmp.execute('system_wakeup');
        result.s3Ms = Date.now() - t;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })().catch((e) => note(`system_wakeup: ${(e as Error).message}`));

  // ttyS0, line by line for the host's cues.
  let partial = '';
  child.stdout.setEncoding('latin1');
  child.stdout.on('data', (d: string) => {
    result.serial += d;
    partial += d;
    for (let i = partial.indexOf('\n'); i >= 0; i = partial.indexOf('\n')) {
      onSerialLine(partial.slice(0, i).replace(/\r$/, ''));
      partial = partial.slice(i + 1);
    }
  });

  // hvc0: the guest's output; the line it asks for, typed once.
  const hvc = (async () => {
    const s = await connectWhenReady(hvcPath, () => running);
    if (!s) return;
    s.setEncoding('latin1');
    let typed = false;
    s.on('data', (d: string) => {
      result.hvc += d;
      if (!typed && result.hvc.replace(/\r/g, '').includes(`${HVC_PROMPT}\n`)) {
        typed = true;
        s.write(`${HVC_INPUT}\n`);
      }
    });
    s.on('error', () => {});
    await exited;
    s.destroy();
  })();

  await exited;
  clearTimeout(timer);
  await Promise.all([hvc, waker, qmpReady]);
  if (q.client) {
    result.events = [...q.client.events];
    q.client.close();
  }
  if (peer && peer.exitCode === null) peer.kill('SIGKILL');
  result.ms = Date.now() - started;
  return result;
}

/** A run's status, command line, the end of its outputs and its stderr, for an assertion message. */
export function scenarioReport(run: ScenarioRun): string {
  return (
    `status ${run.status ?? run.signal}${run.timedOut ? ' (killed: timed out)' : ''} after ${run.ms} ms\n` +
    `$ ${run.argv.join(' ')}\n--- serial (last 6000 bytes) ---\n${run.serial.slice(-6000)}\n` +
    `--- hvc0 (last 1000 bytes) ---\n${run.hvc.slice(-1000)}\n--- stderr ---\n${run.stderr.slice(-3000)}\n` +
    `--- QMP events ---\n${run.events.map((e) => e.event).join(' ')}\n--- timeline ---\n${run.timeline.join('\n')}`
  );
}

/** Writes a zeroed (sparse) raw disk image of `bytes`. */
export function writeZeroDisk(path: string, bytes: number): void {
  writeFileSync(path, '');
  truncateSync(path, bytes);
}

/** The first `bytes` of the disk image file. */
export const readDisk = (path: string, bytes?: number): Buffer => {
  const b = readFileSync(path);
  return bytes === undefined ? b : b.subarray(0, bytes);
};

/**
 * The initramfs for a scenario body (with `moduleNames` loaded first), built once by `tsvmm initramfs` into build/linux-scenarios/ under a name that
 * hashes its /init and the kernel release: a test file builds it at load time natively, and its rerun inside the
 * rig (which sees the host's build/) finds it there.
 */
export function scenarioImage(
  name: string,
  kernel: LinuxGuestKernel,
  body: readonly string[],
  moduleNames: readonly string[] = LINUX_GUEST_MODULES,
): string {
  const dir = join(repoRoot, 'build', 'linux-scenarios');
  mkdirSync(dir, { recursive: true });
  const modules = resolveKernelModules(kernel.modulesDir, moduleNames).modules.map((m) => m.path);
  const hash = createHash('sha256')
    .update(`${kernel.release}\n${scenarioInit(body, modules)}`)
    .digest('hex')
    .slice(0, 16);
  const path = join(dir, `${name}-${hash}.img`);
  if (existsSync(path)) return path;
  const tmp = `${path}.tmp-${process.pid}`;
  buildLinuxGuestInitramfs(tmp, kernel, (m) => scenarioInit(body, m), { modules: moduleNames });
  renameSync(tmp, path);
  return path;
}
