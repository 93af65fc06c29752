// tsvmm as a Node library: `import { Machine } from 'tsvmm'`. A thin layer over what the command line runs, in this
// process: the options are spelled as a `tsvmm run` command line and parsed by the CLI's own parser (argv.ts), the
// machine is src/machine's, every operation is the QMP command of the same name run through the QMP handlers
// (src/qmp/machine-commands.ts: same checks, same messages), and checkpoints are cpr/flows'.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { parseRunArgs, UsageError, type RunArgs } from '../cli/args.js';
import { machineConfigFromArgs } from '../cli/config.js';
import { startQmp, startClockAfterCreate, type Control } from '../cli/control.js';
import { version } from '../cli/version.js';
import { Machine as Vmm } from '../machine/machine.js';
import type { MachineConfig } from '../machine/config.js';
import { QmpError, type QmpHandlers } from '../qmp/server.js';
import { ExitStatus } from '../util/exit-status.js';
import { readSavedConfig } from '../../cpr/flows/saved-config.js';
import { argvFromOptions, hostArgv, wantsStream } from './argv.js';
import { libraryEvent } from './events.js';
import { exitReason } from './exit.js';
import { SerialListener, endedStream } from './serial-stream.js';
import type {
  CheckpointOptions,
  MachineEvents,
  MachineExit,
  MachineOptions,
  RestoreOptions,
  RunStatus,
} from './options.js';

type CommandName = keyof QmpHandlers;
type CommandArgs<N extends CommandName> = Parameters<NonNullable<QmpHandlers[N]>>[0];

/** What #build needs besides the configuration. */
interface Plan {
  readonly config: MachineConfig;
  readonly args: RunArgs;
  readonly listener: SerialListener | null;
  /** Machine.restore: the checkpoint to load, and whether start() leaves the guest stopped. */
  readonly incoming: { readonly file: string; readonly paused: boolean } | null;
}

export class Machine extends EventEmitter<MachineEvents> {
  /** The serial port that is 'stream' (COM1 by default): the guest's output, and input to it. Buffers until read. */
  readonly serial: Duplex;
  /** Resolves once the machine has ended and released everything: the CLI's exit status and why, in a word. */
  readonly exited: Promise<MachineExit>;
  readonly #vmm: Vmm;
  #control: Control | null = null;
  #started = false;
  /** Restored machines: what start() does (resume a guest saved running, or nothing). */
  #resumeOnStart: boolean | null = null;

  private constructor(vmm: Vmm, serial: Duplex, listener: SerialListener | null) {
    super();
    this.#vmm = vmm;
    this.serial = serial;
    let shutdownReason: string | undefined;
    vmm.onEvent((e) => {
      if (e.event === 'SHUTDOWN') shutdownReason = e.data.reason;
      const [name, ...data] = libraryEvent(e);
      (this.emit as (name: string, ...data: unknown[]) => boolean)(name, ...data);
    });
    this.exited = vmm.finished.then(async (status) => {
      await this.#control?.close();
      await listener?.close();
      return { status, reason: exitReason(status, shutdownReason) };
    });
  }

  /**
   * Builds the machine (every vCPU thread started, parked) from `options`; start() runs it. Rejects with the CLI's
   * one-line message for a bad option, or the set-up error's (/dev/kvm missing, RAM backend, guest image).
   */
  static async create(options: MachineOptions = {}): Promise<Machine> {
    const listener = wantsStream(options.serial) ? await SerialListener.open() : null;
    try {
      const args = parseRunArgs(argvFromOptions(options, listener?.spec ?? null));
      if (args.incoming.length > 0)
        throw new UsageError('-incoming: use Machine.restore(file) to start from a checkpoint');
      return await Machine.#build({ config: machineConfigFromArgs(args), args, listener, incoming: null });
    } catch (e) {
      await listener?.close();
      throw e;
    }
  }

  /**
   * A machine from a checkpoint file alone (checkpoint()): built as the saved configuration says, the state loaded
   * and checked before this resolves; start() goes on where the guest was. Host-side choices come from `options`
   * (serial ports beyond those given write nowhere). RAM that stayed on a shared backend is mapped from the same file.
   */
  static async restore(file: string, options: RestoreOptions = {}): Promise<Machine> {
    const listener = wantsStream(options.serial) ? await SerialListener.open() : null;
    try {
      const args = parseRunArgs(hostArgv(options, listener?.spec ?? null));
      const host = machineConfigFromArgs(args);
      const saved = readSavedConfig(file).config;
      // The guest has as many ports as it was saved with (a restore checks that); only their host ends are new.
      const serial = saved.serial.map((s, i) => host.serial[i] ?? (s.kind === 'none' ? s : { kind: 'null' as const }));
      const config: MachineConfig = {
        ...saved,
        serial: host.serial.length > saved.serial.length ? host.serial : serial,
        timeoutMs: host.timeoutMs,
        noShutdown: host.noShutdown,
        panicAction: host.panicAction,
        startPaused: false,
      };
      return await Machine.#build({ config, args, listener, incoming: { file, paused: options.paused ?? false } });
    } catch (e) {
      await listener?.close();
      throw e;
    }
  }

  static async #build({ config, args, listener, incoming }: Plan): Promise<Machine> {
    // TSVMM_KVM_DEVICE: another KVM device node, as for the command (tests check the missing-/dev/kvm error).
    const vmm = await Vmm.create(config, { kvmPath: process.env.TSVMM_KVM_DEVICE });
    try {
      const machine = new Machine(vmm, listener ? await listener.stream() : endedStream(), listener);
      const startClock = startClockAfterCreate();
      machine.#control = await startQmp(vmm, args.qmp, {
        startPaused: config.startPaused,
        startClock,
        version: version(),
        // A restore loads before any QMP client can connect, as the command's -incoming file: does.
        beforeListen: incoming
          ? (migration) => {
              vmm.start({ paused: true, state: 'inmigrate' });
              const loaded = migration.incomingFromFile(incoming.file, startClock, true);
              machine.#resumeOnStart = loaded.runState === 'running' && !incoming.paused;
            }
          : undefined,
      });
      return machine;
    } catch (e) {
      await vmm.finish(ExitStatus.setupFailed);
      throw e;
    }
  }

  /** Runs the guest (boots it; a restored one goes on). With `paused` (-S) the vCPUs wait for resume(). */
  start(): void {
    if (this.#started) throw new Error('machine already started');
    this.#started = true;
    if (this.#resumeOnStart === null) this.#vmm.start();
    else if (this.#resumeOnStart) this.#vmm.resume();
  }

  /** QMP query-status: the run state. */
  get status(): RunStatus {
    return this.#vmm.runState;
  }

  /** QMP stop: every vCPU parked; 'stop' is emitted. */
  async pause(): Promise<void> {
    await this.#command('stop', {});
  }

  /** QMP cont: the guest runs again (or boots, after -S); 'resume' is emitted. */
  async resume(): Promise<void> {
    await this.#command('cont', {});
  }

  /** QMP system_reset: back to power-on state and boot again; 'reset' is emitted. */
  async reset(): Promise<void> {
    await this.#command('system_reset', {});
  }

  /** QMP system_powerdown: press the ACPI power button; 'powerdown' is emitted. */
  async powerdown(): Promise<void> {
    await this.#command('system_powerdown', {});
  }

  /** QMP system_wakeup: wake a guest suspended to RAM; 'wakeup' is emitted. */
  async wakeup(): Promise<void> {
    await this.#command('system_wakeup', {});
  }

  /** QMP quit: end the machine ('shutdown', reason host-qmp-quit) and wait until it has. */
  async quit(): Promise<MachineExit> {
    await this.#command('quit', {});
    return this.exited;
  }

  /**
   * Saves the machine's state to `file` (QEMU's `migrate file:`, the CPR seed's cpr-save) and leaves it stopped for
   * good ('postmigrate': the guest must not run on here while a restore runs it elsewhere); quit() it after.
   * Machine.restore(file) continues it. See CheckpointOptions for where RAM goes.
   */
  async checkpoint(file: string, options: CheckpointOptions = {}): Promise<void> {
    const ram = options.ram ?? 'auto';
    if (ram !== 'auto' && ram !== 'in-file') throw new UsageError(`checkpoint: ram: '${ram}' must be auto or in-file`);
    await this.#controlOrThrow().migration.startOutgoing(file, ram === 'in-file' ? 'always' : 'skip-shared');
  }

  /** Runs QMP command `name` as a client's request would; its error is an Error with QMP's description. */
  async #command<N extends CommandName>(name: N, args: CommandArgs<N>): Promise<void> {
    const handler = this.#controlOrThrow().commands[name] as
      | ((args: unknown, ctx: import('../qmp/server.js').CommandContext) => unknown)
      | undefined;
    if (!handler) throw new Error(`QMP command ${name} is not available`);
    const afterReply: (() => void)[] = [];
    try {
      // No socket, so no descriptors passed with getfd: a migrate to fd:NAME finds none by that name.
      await handler(args, { clientId: 0, afterReply: (fn) => afterReply.push(fn), takeNamedFd: () => undefined });
    } catch (e) {
      throw e instanceof QmpError ? new Error(e.desc) : e;
    }
    for (const fn of afterReply) fn();
  }

  #controlOrThrow(): Control {
    if (!this.#control) throw new Error('machine is not ready');
    return this.#control;
  }
}
