// The machine: what QMP, the CLI and checkpoint/restart drive. A façade — builder.ts assembles the VM and starts its
// threads parked, life-cycle.ts keeps the run state (QEMU's names, a checked transition table), guest-policy.ts
// decides what a guest's reset, power-off or panic does, and power.ts, threads.ts, timers.ts do the work. What is
// here is the order of things: which threads stop, which state follows, which QMP event goes out.
import type { WakeReason } from '../../devices/acpi-pm.js';
import type { PciBus } from '../../devices/pci/bus.js';
import type { MachineLock } from '../sync/lock.js';
import type { MachineRam } from '../memory/config.js';
import { newRamGeneration } from '../memory/ram-generation.js';
import type { WakeEventSource } from '../bus/types.js';
import { ExitStatus } from '../util/exit-status.js';
import type { MachineConfig } from './config.js';
import { buildMachine, type MachineAssembly, type MachineOptions } from './builder.js';
import { LifeCycle, type RunState } from './life-cycle.js';
import { MachineEvents, type MachineEvent } from './events.js';
import { GuestPolicy } from './guest-policy.js';
import type { InboxMessage } from './inbox.js';
import type { MachineParts } from './checkpoint-hooks.js';
import type { PowerOnState } from './power.js';

export type { RunState } from './life-cycle.js';
export type { MachineEvent } from './events.js';
export type { MachineOptions } from './builder.js';
export type { MachineParts } from './checkpoint-hooks.js';

export class Machine {
  readonly config: MachineConfig;
  readonly lock: MachineLock;
  /** Resolves with tsvmm's exit status once the machine has ended and every resource is released. */
  readonly finished: Promise<number>;
  private readonly resolveFinished: (status: number) => void;
  private readonly life = new LifeCycle();
  private readonly events = new MachineEvents();
  private readonly policy: GuestPolicy;
  private started = false;
  private resetting = false;

  private constructor(private readonly built: MachineAssembly) {
    this.config = built.config;
    this.lock = built.lock;
    let resolveFinished!: (status: number) => void;
    this.finished = new Promise((resolve) => {
      resolveFinished = resolve;
    });
    this.resolveFinished = resolveFinished;
    this.policy = new GuestPolicy(built.config, {
      end: (status, reason) => void this.finish(status, { event: { guest: true, reason } }),
      reset: (reason) => this.reset(reason),
      suspend: () => this.suspend(),
      stop: (state) => this.stopGuest(state),
      fail: (status, message) => this.fail(status, message),
      internalError: () => this.life.to('internal-error'),
      goOn: () => {
        if (this.life.running) built.threads.resumeVcpus();
      },
      emit: (event) => this.events.emit(event),
      log: built.log,
    });
    built.inbox.attach((message) => this.receive(message));
  }

  /** Builds the whole VM with every vCPU thread started and parked (see buildMachine for the errors). */
  static async create(config: MachineConfig, options: MachineOptions = {}): Promise<Machine> {
    return new Machine(await buildMachine(config, options));
  }

  get runState(): RunState {
    return this.life.state;
  }

  get running(): boolean {
    return this.life.running;
  }

  get ended(): boolean {
    return this.life.ending;
  }

  get guestMemory(): MachineRam['ram'] {
    return this.built.memory;
  }

  /** Runs `read` on bus 0 under the machine lock (QMP query-pci formats what it sees); null without a PCI bus. */
  readPciBus<T>(read: (bus: PciBus) => T): T | null {
    const bus = this.built.pciBus;
    return bus ? this.lock.with(() => read(bus)) : null;
  }

  /** The vCPU threads' ids (QMP query-cpus-fast `thread-id`), 0 until a thread has started. */
  vcpuThreadIds(): number[] {
    return this.built.threads.tids();
  }

  /** The power-on state of the in-kernel chips and vCPUs (cpr/ warms its encoders with it while the guest runs). */
  powerOnStates(): PowerOnState {
    return this.built.power.powerOn;
  }

  /** For checkpoint/restart: the parts it saves and restores. */
  parts(): MachineParts {
    return this.built.parts;
  }

  /** Listen to QMP-visible events (STOP, RESUME, RESET, SHUTDOWN, POWERDOWN…); the result removes the listener. */
  onEvent(listener: (e: MachineEvent) => void): () => void {
    return this.events.on(listener);
  }

  /** The guest was restored from a checkpoint (cpr/): the image is not loaded when the vCPUs next run. */
  markRestored(): void {
    this.built.power.markRestored();
  }

  /**
   * Starts the main thread's services (input, timers, --timeout) and, unless `paused` (-S), runs the guest.
   * `state` says what a paused machine reports: prelaunch (-S) or inmigrate (-incoming).
   */
  start({ paused = this.config.startPaused, state = 'prelaunch' as RunState } = {}): void {
    if (this.started) throw new Error('machine already started');
    this.started = true;
    this.built.connectInput();
    this.built.timers.start(this.config.timeoutMs, () => void this.timedOut());
    this.life.to(state);
    if (!paused) this.resume();
  }

  /**
   * Parks every vCPU (kicking any in KVM_RUN) and the I/O thread; the VM reports `next` (STOP is sent). All or
   * nothing: when a thread does not park in time (or the vCPU states cannot be captured) the threads run on, the
   * run state stays `running`, and the error is thrown — query-status tells the truth either way.
   */
  async pause(next: RunState = 'paused', { sync = false, capture = false } = {}): Promise<void> {
    if (!this.life.running) {
      this.built.capture.clear();
      // Already stopped: only a host stop may go on to another state (a checkpoint's finish-migrate).
      if (this.life.stoppedByHost && next !== 'paused') this.life.to(next);
      return;
    }
    await this.built.threads.pause(sync);
    try {
      await this.built.capture.collect(capture, sync);
    } catch (e) {
      this.built.capture.clear();
      this.built.threads.resume();
      throw e;
    }
    this.life.to(next);
    this.events.emit({ event: 'STOP' });
  }

  /**
   * Runs the guest (booting it first if it has neither booted nor been restored). `announce`: send RESUME (a wake
   * from S3 sends only WAKEUP, as QEMU does: the VM was never stopped by the host).
   */
  resume({ announce = true }: { announce?: boolean } = {}): void {
    if (this.life.running || this.life.ending) return;
    this.life.check('running');
    const booted = this.built.power.bootOnce();
    if (announce && !booted) this.tellGuestItWasStopped();
    this.life.to('running');
    this.built.capture.clear();
    this.renewRamGeneration();
    this.built.threads.resume();
    // The event goes out after the caller's work (a restore timing its resume must not time QMP writes).
    if (announce) queueMicrotask(() => this.events.emit({ event: 'RESUME' }));
  }

  /**
   * KVM_KVMCLOCK_CTRL on every vCPU before a stopped guest runs again, as QEMU does on every resume: kvmclock's
   * PVCLOCK_GUEST_STOPPED flag tells the guest's soft-lockup and RCU-stall detectors that the time its CPUs did not
   * run was the host's pause, not theirs (a checkpoint in a loaded machine pauses for seconds). KVM refuses it
   * (EINVAL) for a guest that has not enabled kvmclock, which then has no such detectors to fool: ignored.
   */
  private tellGuestItWasStopped(): void {
    for (const vcpu of this.built.parts.vcpus) {
      try {
        vcpu.kvmclockCtrl();
      } catch {
        /* no kvmclock in this guest (or no KVM_CAP_KVMCLOCK_CTRL) */
      }
    }
  }

  /**
   * A guest about to run changes its RAM: a checkpoint of the RAM file as it was no longer fits it, so the file gets
   * a new generation (src/memory/ram-generation.ts). Failing to set one does not stop the guest; it is reported.
   */
  private renewRamGeneration(): void {
    try {
      newRamGeneration(this.built.parts.ram.backend);
    } catch (e) {
      this.built.log(`guest RAM: cannot renew its generation: ${(e as Error).message}`);
    }
  }

  /** Sets the state a parked machine reports (cpr: inmigrate → paused after a load that stays paused). */
  setPausedState(state: RunState): void {
    if (this.life.running) throw new Error('machine is running');
    this.life.to(state);
  }

  /** A guest-requested (or QMP) reset: back to power-on state and boot again, like pressing the reset button. */
  async reset(reason: string, guest = true): Promise<void> {
    if (this.life.ending || this.resetting) return;
    this.resetting = true;
    try {
      const was = this.life.state;
      if (was === 'running') await this.built.threads.park('for the reset');
      if (guest) this.built.log(`guest reset (${reason})`);
      this.built.power.systemReset();
      this.events.emit({ event: 'RESET', data: { guest, reason: guest ? 'guest-reset' : 'host-qmp-system-reset' } });
      if (was === 'running' || was === 'suspended') {
        // A suspended guest is parked already; a reset ends the suspend (the next boot is a fresh one).
        this.built.power.boot();
        this.life.to('running');
        this.built.threads.resume();
      } else if (was === 'shutdown' || was === 'guest-panicked') {
        // Stopped by its power-off (-no-shutdown) or panic (panic=pause): as in QEMU, `cont` boots it.
        this.life.to('prelaunch');
      }
    } finally {
      this.resetting = false;
    }
  }

  /** The guest entered ACPI S3: the vCPUs stop (one asked all to park), RAM and devices stay until wakeup(). */
  async suspend(): Promise<void> {
    if (this.life.ending) return;
    // Devices are quiet in S3 (no queue work, no DMA into a sleeping guest); a wake-up or reset resumes them, and a
    // checkpoint of the suspended guest finds nothing running.
    if (this.life.running) await this.built.threads.park('for the suspend');
    else await this.built.threads.pauseIo();
    this.life.to('suspended');
    this.events.emit({ event: 'SUSPEND' });
  }

  /** Wakes a suspended guest at its S3 waking vector, as firmware does (see PowerControl.resumeFromS3). */
  wakeup(reason: WakeReason = 'user'): void {
    if (this.life.state !== 'suspended') throw new Error('guest is not in suspended state');
    this.built.power.resumeFromS3(reason);
    this.life.to('paused');
    this.events.emit({ event: 'WAKEUP' });
    this.resume({ announce: false });
  }

  /**
   * QMP system_powerdown: press the ACPI power button (a suspended guest wakes up first, as hardware does). Without
   * ACPI, or before the guest enabled the button, nothing reaches the guest; the event is sent either way.
   */
  powerdown(): void {
    this.events.emit({ event: 'POWERDOWN' });
    if (this.life.state === 'suspended') this.wakeup('powerButton');
    else this.built.power.pressPowerButton();
  }

  /**
   * Ends the machine: stop every thread, release guest RAM and KVM fds, flush output. Resolves `finished` with
   * `status`. Safe to call more than once (the first status wins).
   */
  /**
   * --timeout expired: where each vCPU is goes to the log first (a guest that hangs is told apart from a VMM that
   * does: a vCPU stuck in one exit handler, or in KVM_RUN making no exits), then the machine ends.
   */
  private async timedOut(): Promise<void> {
    try {
      const lines = await this.built.threads.whereAreTheVcpus();
      for (const line of lines) this.built.log(`timeout: ${line}`);
      this.built.log(`timeout: the machine lock is ${this.built.lock.held ? 'held' : 'free'}`);
    } finally {
      await this.finish(ExitStatus.timeout);
    }
  }

  async finish(status: number, { event }: { event?: { guest: boolean; reason: string } } = {}): Promise<number> {
    if (this.life.ending) return this.finished;
    if (event) this.events.emit({ event: 'SHUTDOWN', data: event });
    this.life.beginEnding();
    // Tearing down a large, fully touched RAM mapping takes hundreds of milliseconds, and after a checkpoint a new
    // tsvmm is restoring the same guest on the same cores.
    if (this.built.yieldCpuWhenEnding) this.built.threads.yieldCpu();
    this.built.timers.stop();
    // A vCPU that does not leave KVM_RUN would hang process exit: report it and let the caller exit hard.
    if (await this.built.threads.stop()) this.built.release.run();
    else this.built.log('vCPU threads did not stop within 5 s');
    for (const c of this.built.chardevs.values()) await c.close();
    if (this.life.state !== 'internal-error') this.life.to('shutdown');
    this.resolveFinished(status);
    return status;
  }

  private receive(message: InboxMessage): void {
    if (this.life.ending) return;
    if (message.type === 'wake') this.onWakeEvent(message.source);
    else if (message.type === 'crash')
      this.fail(ExitStatus.internalError, `${message.who} crashed: ${message.error.stack ?? message.error}`);
    else this.policy.handle(message);
  }

  /**
   * A device's wake-up event (the RTC alarm): wakes the guest if it is suspended and enabled that event, as firmware
   * and the chipset do; otherwise nothing happens (QEMU's qemu_system_wakeup_request).
   */
  private onWakeEvent(source: WakeEventSource): void {
    if (this.life.state !== 'suspended' || !this.built.power.wakeEnabled(source)) return;
    try {
      this.wakeup(source);
    } catch (e) {
      this.fail(ExitStatus.internalError, `wake-up (${source}) failed: ${(e as Error).stack ?? e}`);
    }
  }

  /** Parks the vCPUs (the reporting vCPU already asked them to) and the I/O thread; the VM reports `state`. */
  private async stopGuest(state: RunState): Promise<void> {
    await this.built.threads.park(`to stop in ${state}`);
    this.life.to(state);
    this.events.emit({ event: 'STOP' });
  }

  private fail(status: number, message: string): void {
    if (this.life.ending) return;
    this.built.log(message);
    void this.finish(status);
  }
}
