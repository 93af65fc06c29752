// One Linux guest carried through checkpoints by a chain of tsvmm processes (src/machine/linux-cpr.test.ts): the
// command line every process of the chain shares, hvc0 as one stream across them, ttyS0 of all of them, and the
// checkpoint flows in both spellings. The guest is test/support/linux-cpr-guest.ts's.
//
// hvc0 is a `-chardev socket` in client mode: the test listens on a fresh socket for each process and tsvmm
// connects when it opens the chardev, so whatever a restored guest prints first is read, however early the new
// process resumes it (a listening tsvmm drops output while nobody is connected, and in cpr-transfer the new
// process opens its chardevs only once the old one has handed the guest over).
import net from 'node:net';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { startVm, scratchDir, removeDir, type VmProcess } from './vm-process.js';
import { QmpClient } from './qmp-client.js';
import { cliPath } from './tsvmm.js';
import { HANG_GUARD_MS, waitFor } from './hang-guard.js';
import { vcpuReport } from './vcpu-report.js';
import { threadStates } from './thread-states.js';
import { COUNT_LINE, realtimeUs, type CountLine } from './linux-cpr-guest.js';
import type { TapNamespace } from '../../examples/guests/virtio-probe-host.js';

/** `promise`, or a failure naming `what` (with `detail()`) after HANG_GUARD_MS: a hang guard, not a budget. */
export async function within<T>(promise: Promise<T>, what: string, detail: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: not within ${HANG_GUARD_MS / 1000} s\n${detail()}`)),
      HANG_GUARD_MS,
    );
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** A counter silent this long is stalled (its loop prints every 10 ms; a loaded rig's worst seen is ~5 s). */
const STALL_SNAPSHOT_AFTER_MS = 3000;
const STALL_SNAPSHOTS = 12;

/** A counter line with the process (index in the chain) whose socket delivered its newline. */
export interface HvcLine extends CountLine {
  process: number;
}

/** hvc0 across the chain: one text stream (a line torn by a checkpoint is finished by the next process). */
export class HvcStream {
  readonly lines: HvcLine[] = [];
  /** Text that is not a counter line (a torn line's halves are joined first, so this stays empty when all is well). */
  readonly other: string[] = [];
  private partial = '';
  private socket: net.Socket | null = null;
  private closedSockets = 0;

  /** Listens at `path` for process `index`; resolves once it connected. */
  listen(path: string, index: number): { connected: Promise<void>; close: () => void } {
    const server = net.createServer();
    const connected = new Promise<void>((resolve) => {
      server.once('connection', (socket) => {
        server.close();
        this.socket = socket;
        socket.setEncoding('latin1');
        socket.on('data', (text: string) => this.take(text, index));
        socket.on('close', () => {
          this.closedSockets++;
        });
        resolve();
      });
    });
    server.listen(path);
    return { connected, close: () => server.close() };
  }

  private take(text: string, process: number): void {
    const hostUs = realtimeUs();
    this.partial += text;
    for (let end = this.partial.indexOf('\n'); end >= 0; end = this.partial.indexOf('\n')) {
      const line = this.partial.slice(0, end);
      this.partial = this.partial.slice(end + 1);
      const m = COUNT_LINE.exec(line);
      if (m) this.lines.push({ n: Number(m[1]), uptime: Number(m[2]), blocks: Number(m[3]), hostUs, process });
      else this.other.push(line);
    }
  }

  /** Sends a command line to the guest (its /init reads hvc0). */
  send(command: string): void {
    assert.ok(this.socket && !this.socket.destroyed, `hvc0 is connected to send '${command}'`);
    this.socket!.write(`${command}\n`);
  }

  get last(): HvcLine | undefined {
    return this.lines.at(-1);
  }

  /** Waits until the socket of the current process closed (the process ended: all its output is in). */
  async waitClosed(closes: number, detail: () => string): Promise<void> {
    await waitFor(() => this.closedSockets >= closes, 'hvc0 socket closed', detail);
  }

  close(): void {
    this.socket?.destroy();
  }
}

export interface ChainOptions {
  kernel: string;
  initrd: string;
  cmdline: string;
  /** virtio-net over this tap (tsvmm runs in its namespace); none: no NIC. */
  tap?: TapNamespace;
  diskBytes: number;
  ram: string;
  smp: number;
  /**
   * The guest's disk is a passed-through PCI function (`-device vfio-pci,host=BDF`) instead of virtio-blk on the
   * chain's image, and `image()` gives what its backing store holds.
   */
  vfio?: { host: string; image: () => Buffer };
}

/** The chain: its scratch files, its processes (the last one runs the guest), hvc0 and ttyS0. */
export class GuestChain {
  readonly dir = scratchDir('tsvmm-linux-cpr-');
  readonly disk = join(this.dir, 'disk.img');
  readonly shm = join('/dev/shm', `${this.dir.split('/').pop()}-ram`);
  readonly hvc = new HvcStream();
  readonly processes: VmProcess[] = [];
  /** The first process's guest reached its counting loop (later steps of a chain's file need that). */
  booted = false;
  /**
   * While the counter is silent for over STALL_SNAPSHOT_AFTER_MS, what the current process's threads do, once a
   * second (the last STALL_SNAPSHOTS kept): a failure shows whether the guest's vCPUs ran, waited or were starved.
   */
  private readonly stallSnapshots: string[] = [];
  private readonly stallWatch = setInterval(() => this.watchStall(), 1000).unref();

  constructor(readonly o: ChainOptions) {
    // A sparse image (zeros): the writer fills it from the start.
    writeFileSync(this.disk, '');
    truncateSync(this.disk, o.diskBytes);
  }

  /** What the guest's disk holds on the host: the chain's image, or the passed-through device's backing store. */
  diskContents(): Buffer {
    return this.o.vfio ? this.o.vfio.image() : readFileSync(this.disk);
  }

  get current(): VmProcess {
    return this.processes.at(-1)!;
  }

  /** ttyS0 of every process so far, as one text. */
  get serial(): string {
    return this.processes.map((p) => p.stdout).join('');
  }

  /** What to show when something fails: the tail of ttyS0, the current process's stderr, stall snapshots. */
  detail = (): string =>
    `\nttyS0 (tail):\n${this.serial.slice(-3000)}\nstderr of process ${this.processes.length - 1}:\n${this.current?.stderr ?? ''}` +
    (this.stallSnapshots.length ? `\nthreads while the counter was silent:\n${this.stallSnapshots.join('\n')}` : '');

  private watchStall(): void {
    const last = this.hvc.last;
    const vm = this.processes.at(-1);
    if (!last || !vm?.child.pid || vm.child.exitCode !== null) return;
    const silentMs = (realtimeUs() - last.hostUs) / 1000;
    if (silentMs < STALL_SNAPSHOT_AFTER_MS) return;
    this.stallSnapshots.push(
      `${new Date().toISOString()}: no counter line for ${(silentMs / 1000).toFixed(1)} s (last: ${last.n} from process ${last.process}); process ${this.processes.length - 1}:\n${threadStates(vm.child.pid)}`,
    );
    if (this.stallSnapshots.length > STALL_SNAPSHOTS) this.stallSnapshots.shift();
  }

  /** The command line of process `index`: all the same but for the socket hvc0 connects to. */
  args(index: number): string[] {
    const o = this.o;
    return [
      '-m',
      o.ram,
      '-smp',
      String(o.smp),
      '-object',
      `memory-backend-file,id=ram0,size=${o.ram},mem-path=${this.shm},share=on`,
      '-machine',
      'memory-backend=ram0',
      '-kernel',
      o.kernel,
      '-initrd',
      o.initrd,
      '-append',
      o.cmdline,
      '-no-reboot',
      ...(o.vfio
        ? ['-device', `vfio-pci,host=${o.vfio.host}`]
        : ['-drive', `file=${this.disk},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0']),
      ...(o.tap
        ? ['-netdev', `tap,id=n0,ifname=${o.tap.tap},script=no,downscript=no`, '-device', 'virtio-net-pci,netdev=n0']
        : []),
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=hvc,path=${this.hvcPath(index)}`,
      '-device',
      'virtconsole,chardev=hvc',
    ];
  }

  private hvcPath(index: number): string {
    return join(this.dir, `hvc-${index}.sock`);
  }

  /**
   * Starts the next process of the chain with `extra` arguments (-S, -incoming …) in the tap's namespace, its hvc0
   * socket listened on first. `connect: false` for a cpr-transfer target (its QMP comes once it has the guest).
   */
  async start(extra: string[], o: { connect?: boolean } = {}): Promise<{ vm: VmProcess; hvc: Promise<void> }> {
    const index = this.processes.length;
    const listener = this.hvc.listen(this.hvcPath(index), index);
    try {
      const vm = await startVm([...this.args(index), ...extra], {
        dir: this.dir,
        name: `p${index}`,
        netns: this.o.tap?.ns,
        connect: o.connect,
        stdin: false,
      });
      this.processes.push(vm);
      return { vm, hvc: listener.connected };
    } catch (e) {
      listener.close();
      throw e;
    }
  }

  /**
   * For a cpr-exec of the current process: the new image's command (the same options with its own hvc0 socket,
   * `extra`, and the current process's QMP socket, which the exec keeps) with its hvc0 socket listened on, and
   * `adopt()`, to call once the old image has saved: the chain's entry for the old image keeps its ttyS0 up to
   * there, and a new entry — the same process — stands for the new image from there on.
   */
  execImage(extra: string[]): { command: string[]; hvc: Promise<void>; adopt: () => VmProcess } {
    const old = this.current;
    const index = this.processes.length;
    const listener = this.hvc.listen(this.hvcPath(index), index);
    const command = [
      process.execPath,
      cliPath,
      'run',
      ...this.args(index),
      ...extra,
      '-qmp',
      `unix:${old.qmpPath},server=on,wait=off`,
    ];
    const adopt = () => {
      const from = old.stdout.length;
      const errFrom = old.stderr.length;
      this.processes[index - 1] = { ...old, stdout: old.stdout.slice(0, from), stderr: old.stderr.slice(0, errFrom) };
      const image = {
        child: old.child,
        qmpPath: old.qmpPath,
        qmp: old.qmp,
        exited: old.exited,
        dispose: () => old.dispose(),
        get stdout() {
          return old.stdout.slice(from);
        },
        get stderr() {
          return old.stderr.slice(errFrom);
        },
      } as VmProcess;
      this.processes.push(image);
      return image;
    };
    return { command, hvc: listener.connected, adopt };
  }

  /** Connects QMP to `vm` once its socket is there (a cpr-transfer target opens it when it has the guest). */
  async connectQmp(vm: VmProcess): Promise<void> {
    await waitFor(
      () => existsSync(vm.qmpPath),
      'the QMP socket of the new tsvmm',
      () => vm.stderr,
    );
    vm.qmp = await QmpClient.connect(vm.qmpPath);
  }

  /**
   * Waits until `ready()` holds while the guest runs in the current process: a process that ends meanwhile (the
   * guest powered off, crashed, or tsvmm failed) fails the wait at once, with ttyS0 and its stderr.
   */
  async until(ready: () => boolean, what: string): Promise<void> {
    let ended = false;
    try {
      await waitFor(
        () => {
          const vm = this.current;
          ended = vm.child.exitCode !== null || vm.child.signalCode !== null;
          if (ended)
            throw new Error(`${what}: tsvmm ended (${vm.child.exitCode ?? vm.child.signalCode}) first${this.detail()}`);
          return ready();
        },
        what,
        this.detail,
      );
    } catch (e) {
      // A hang: say what the vCPU threads are doing (a halted guest waiting for an interrupt, or one spinning).
      if (!ended && this.current.qmp) (e as Error).message += `\n${await vcpuReport(this.current)}`;
      throw e;
    }
  }

  /** Starts the first process and waits until the guest has booted and counts on hvc0 (50 lines). */
  async boot(): Promise<void> {
    const { hvc } = await this.start([]);
    await within(hvc, 'tsvmm connects hvc0', this.detail);
    await this.waitCount(50);
    this.booted = true;
  }

  /** `chain`, or a failure saying an earlier step (each test of a chain's file is one) left no running guest. */
  static running(chain: GuestChain | undefined): GuestChain {
    assert.ok(
      chain?.booted && chain.current.child.exitCode === null,
      'the guest from the earlier steps booted and is running',
    );
    return chain!;
  }

  /** Waits until the counter on hvc0 reached `n`. */
  async waitCount(n: number): Promise<HvcLine> {
    await this.until(() => (this.hvc.last?.n ?? 0) >= n, `counter line ${n} on hvc0`);
    return this.hvc.last!;
  }

  async dispose(): Promise<void> {
    clearInterval(this.stallWatch);
    this.hvc.close();
    for (const vm of this.processes) await vm.dispose();
    rmSync(this.shm, { force: true });
    removeDir(this.dir);
  }
}
