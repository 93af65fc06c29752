// The machine: assembles a VM from a MachineConfig (KVM VM, RAM, in-kernel irqchip and PIT, vCPUs, devices), runs
// one worker thread per vCPU, and is the main thread's side of everything that is not a vCPU exit: host input,
// device timers, the timeout, and the VM's life cycle (run states and events in QEMU's names, so QMP can report
// them as QEMU does).
//
// The guest image is loaded when the VM first runs, not when it is created — as firmware loads it at boot — so a
// VM created to receive a checkpoint (-S / -incoming) never has its restored RAM overwritten by the image.
import type { Worker } from 'node:worker_threads';
import { closeSync } from 'node:fs';
import { setPriority } from 'node:os';
import { takeVcpuThread, discardVcpuThreads } from '../vcpu/threads.js';
import { Kvm } from '../../kvm/kvm.js';
import type { Vm } from '../../kvm/vm.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import { cpuidFor } from '../../kvm/cpuid.js';
import { readWakingVector } from '../boot/acpi/facs.js';
import {
  KVM_PIT_SPEAKER_DUMMY,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_IRQCHIP_IOAPIC,
} from '../../kvm/bindings/constants.js';
import type { IrqchipState, PitState2, VcpuState } from '../../kvm/bindings/types.js';
import { getpid, tgkill, SIGUSR2 } from '../sys/libc.js';
import { createGuestRam, type MachineRam } from '../memory/config.js';
import { openCharBackend, type CharBackend } from '../chardev/index.js';
import type { CharSpec } from '../chardev/index.js';
import type { CharOut, MachineControl, WakeEventSource } from '../bus/types.js';
import type { WakeReason } from '../../devices/acpi-pm.js';
import { MachineLock } from '../sync/lock.js';
import { VcpuControl } from '../vcpu/control.js';
import type { VcpuEvent, VcpuThreadInit } from '../vcpu/messages.js';
import {
  planDevices,
  instantiate,
  type DeviceSpec,
  type MachineDevice,
  type DeviceEntry,
} from '../runtime/device-table.js';
import { irqLines } from '../runtime/irq-lines.js';
import { hostClock } from '../runtime/clock.js';
import { Doorbell } from '../runtime/doorbell.js';
import { readBootImages, loadBoot, closeBootImages, type LoadedImages } from './boot.js';
import { planPlatform, writePlatformTables, COM_PORTS, type Platform } from './platform.js';
import { buildFwCfg } from './fw-cfg-content.js';
import { ExitStatus } from './exit-status.js';
import type { MachineConfig } from './config.js';
import { newRecord, type StateArena } from '../../cpr/vmstate/vmstate.js';
import { defaultPciHostConfig, ecamRange } from './pci-plan.js';
import { pciBusFor } from '../runtime/pci-devices.js';
import { MsiRouter } from '../runtime/msi-router.js';
import { IoEventRegistry } from '../runtime/ioevent-registry.js';
import { planVirtioDevices, checkDriveImages, type ConsoleInput } from './virtio-plan.js';
import { IoThread } from '../io/thread.js';
import type { IoThreadEvent } from '../io/messages.js';
import type { PciBus } from '../../devices/pci/bus.js';
import { vcpuStateDescriptor, type VcpuRecord } from '../../cpr/kvm-state/vcpu.js';

/** How long Machine.create waits for the I/O thread to start: far above a loaded nested-KVM machine's seconds. */
const IO_THREAD_START_GUARD_MS = 300_000;

/** KVM's real-mode helpers for VMX hosts, placed where QEMU puts them: just below the BIOS at 4 GiB. */
const IDENTITY_MAP_ADDR = 0xfeffc000;
const TSS_ADDR = 0xfeffd000;

/** QEMU's run states (QMP query-status `status`). */
export type RunState =
  | 'prelaunch' // created, vCPUs never ran (-S)
  | 'running'
  | 'paused' // stopped by the host (QMP stop)
  | 'inmigrate' // waiting for incoming state (-incoming)
  | 'finish-migrate' // stopping to save state
  | 'postmigrate' // state saved; the VM must not run again here
  | 'suspended' // the guest suspended to RAM (ACPI S3) until a wake-up
  | 'shutdown' // the guest powered off (with -no-shutdown), or the machine ended
  | 'guest-panicked' // the guest panicked, with -action panic=pause
  | 'internal-error'; // KVM could not run the guest

/** QMP events the machine raises: name and QEMU's data. */
export type MachineEvent =
  | { event: 'STOP' }
  | { event: 'RESUME' }
  | { event: 'RESET'; data: { guest: boolean; reason: string } }
  | { event: 'SHUTDOWN'; data: { guest: boolean; reason: string } }
  | { event: 'POWERDOWN' }
  | { event: 'SUSPEND' }
  | { event: 'WAKEUP' }
  | { event: 'GUEST_PANICKED'; data: { action: 'poweroff' | 'pause' | 'run' } };

export interface MachineOptions {
  /** One-line notices (guest reset, timeout…). Default: stderr. */
  log?: (line: string) => void;
  /** Path of /dev/kvm (tests point it elsewhere to check the error). */
  kvmPath?: string;
  /** Guest RAM already mapped (cpr-transfer hands over the old process's RAM); default: map what config says. */
  ram?: MachineRam;
  /** Drop this process's threads to the lowest priority once the machine ends (the CLI: the process ends too). */
  yieldCpuWhenEnding?: boolean;
  /** Taps already open, by interface name (cpr-transfer hands the old process's over); the machine owns them. */
  taps?: ReadonlyMap<string, number>;
}

/** Power-on state of the in-kernel chips and vCPUs, to return to on a reset. */
interface PowerOnState {
  vcpus: VcpuState[];
  irqchips: IrqchipState[];
  pit: PitState2;
}

/** What checkpoint/restart needs to reach inside the machine (cpr/ only). */
export interface MachineParts {
  readonly config: MachineConfig;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly ram: MachineRam;
  readonly arena: StateArena;
  readonly entries: readonly DeviceEntry[];
  readonly devices: readonly MachineDevice[];
  readonly lock: MachineLock;
  /** vCPU i's state as its thread saved it during the last pause({ capture: true }), or null. */
  capturedVcpuState(i: number): VcpuRecord | null;
  /** The virtio-net devices' taps, by interface name (cpr-transfer hands them to the new process). */
  readonly taps: readonly { ifname: string; fd: number }[];
}

export class Machine {
  readonly config: MachineConfig;
  readonly lock = new MachineLock();
  readonly doorbell = new Doorbell();
  private readonly log: (line: string) => void;
  private state: RunState = 'prelaunch';
  private readonly workers: Worker[] = [];
  private readonly workersExited: Promise<void>[] = [];
  private devices: MachineDevice[] = [];
  private finishing = false;
  private resolveFinished!: (status: number) => void;
  /** Resolves with tsvmm's exit status once the machine has ended and every resource is released. */
  readonly finished: Promise<number> = new Promise((resolve) => {
    this.resolveFinished = resolve;
  });
  private timers: NodeJS.Timeout[] = [];
  private timerPoll: NodeJS.Timeout | null = null;
  private resetting = false;
  private servicesStarted = false;
  /** True once the guest has been booted or restored: the image must not be loaded (again) on the next run. */
  private guestReady = false;
  private readonly listeners = new Set<(e: MachineEvent) => void>();
  /** Each vCPU's own saved state (see pause({ capture })), in memory its thread shares. */
  private readonly vcpuRecords: VcpuRecord[];
  private captureRequest = 0;
  /** The e820 map, MP/ACPI tables and PM block the guest is told about (set up in create()). */
  private platform!: Platform;
  private readonly yieldWhenEnding: boolean;
  /** What ended the machine, for QMP and the CLI. */
  private exitStatus: number | null = null;
  /** MSI vectors (GSI routes + irqfds) and queue-notification eventfds of the PCI devices. */
  private msi!: MsiRouter;
  private ioEvents!: IoEventRegistry;
  /** Host fds the devices use (disk images, taps), closed when the machine ends. */
  private hostFds: number[] = [];
  private taps: { ifname: string; fd: number }[] = [];
  /** virtio consoles' host input, carried to the I/O thread. */
  private consoleInputs: ConsoleInput[] = [];
  /** The thread that serves queue notifications and host fds, when a device has such work. */
  private ioThread: IoThread | null = null;
  /** The main thread's view of PCI bus 0 (QMP query-pci reads it). */
  private pciBus: PciBus | null = null;

  private constructor(
    config: MachineConfig,
    options: MachineOptions,
    private readonly kvm: Kvm,
    private readonly vm: Vm,
    private readonly ram: MachineRam,
    private readonly vcpus: Vcpu[],
    readonly control: VcpuControl,
    private readonly arena: StateArena,
    private readonly entries: DeviceEntry[],
    private readonly chardevs: Map<string, CharBackend>,
    private readonly images: LoadedImages | null,
    private readonly powerOn: PowerOnState,
  ) {
    this.config = config;
    this.log = options.log ?? ((line) => process.stderr.write(`tsvmm: ${line}\n`));
    this.yieldWhenEnding = options.yieldCpuWhenEnding ?? false;
    this.vcpuRecords = vcpus.map(() => newRecord(vcpuStateDescriptor, true) as VcpuRecord);
  }

  /**
   * Builds the whole VM with every vCPU thread started and parked. Throws KvmUnavailableError, RamBackendError,
   * BootError… with one clear line each.
   */
  static async create(config: MachineConfig, options: MachineOptions = {}): Promise<Machine> {
    const cleanup: Array<() => void> = [];
    try {
      // The files the command line names come first: a missing kernel or disk image is reported as such, on any host,
      // before /dev/kvm or RAM is touched.
      const images = config.boot ? readBootImages(config.boot) : null;
      cleanup.push(() => closeBootImages(images));
      checkDriveImages(config.virtio);
      const kvm = Kvm.open(options.kvmPath);
      cleanup.push(() => kvm.close());
      const vm = kvm.createVm();
      cleanup.push(() => vm.close());
      vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
      vm.setTssAddr(TSS_ADDR);
      vm.createIrqchip();
      vm.createPit2(KVM_PIT_SPEAKER_DUMMY);

      const ram = options.ram ?? createGuestRam(config.memory);
      cleanup.push(() => ram.close());
      ram.regions.forEach((r, slot) =>
        vm.setUserMemoryRegion({ slot, guestPhysAddr: r.gpa, memorySize: r.size, userspaceAddr: r.hostAddress }),
      );

      const supported = kvm.supportedCpuid();
      const vcpus: Vcpu[] = [];
      for (let id = 0; id < config.cpus; id++) {
        const vcpu = vm.createVcpu(id);
        vcpu.setCpuid2(cpuidFor(supported, { policy: config.cpuModel, vcpuId: id, vcpuCount: config.cpus }));
        vcpus.push(vcpu);
      }

      // Character backends first: a unix socket server may wait for its client (QEMU's `server` without wait=off).
      const chardevs = new Map<string, CharBackend>();
      cleanup.push(() => {
        for (const c of chardevs.values()) void c.close();
      });
      const openChardev = async (id: string, spec: CharSpec) => {
        chardevs.set(id, await openCharBackend(spec));
        return id;
      };

      const specs: DeviceSpec[] = [];
      for (let i = 0; i < config.serial.length && i < COM_PORTS.length; i++) {
        if (config.serial[i].kind === 'none') continue;
        const [base, irq] = COM_PORTS[i];
        specs.push({
          kind: 'serial',
          id: `serial${i}`,
          base,
          irq,
          output: await openChardev(`serial${i}`, config.serial[i]),
        });
      }
      for (const [i, d] of config.debugcon.entries()) {
        specs.push({
          kind: 'debugcon',
          id: `debugcon${i}`,
          base: d.iobase,
          output: await openChardev(`debugcon${i}`, d.output),
          timestamps: d.timestamps,
        });
      }
      if (config.debugExit)
        specs.push({
          kind: 'debug-exit',
          id: 'debug-exit',
          base: config.debugExit.iobase,
          size: config.debugExit.iosize,
        });
      const below4G = ram.regions.filter((r) => r.gpa < 2 ** 32).reduce((n, r) => n + r.size, 0);
      specs.push({
        kind: 'rtc',
        id: 'rtc',
        memory: { ramBelow4G: below4G, ramAbove4G: config.memory.size - below4G, cpus: config.cpus },
      });
      specs.push({ kind: 'i8042', id: 'i8042' });
      specs.push({ kind: 'fw-cfg', id: 'fw-cfg', content: buildFwCfg(config) });

      // The PCI host bridge (always, as on a PC) and the virtio functions behind it.
      const ramEnd = Math.max(...ram.regions.map((r) => r.gpa + r.size));
      const pciHost = defaultPciHostConfig(ramEnd);
      const msi = MsiRouter.create(vm.fd);
      cleanup.push(() => msi.close());
      const ioEvents = IoEventRegistry.create(vm.fd);
      cleanup.push(() => ioEvents.close());
      specs.push({ kind: 'pci-host', id: 'pci-host', config: pciHost });
      const virtio = await planVirtioDevices(config.virtio, {
        msi,
        ioEvents,
        windows: pciHost.windows,
        openChardev,
        taps: options.taps,
      });
      cleanup.push(() => {
        for (const fd of virtio.fds) closeSync(fd);
        for (const i of virtio.inputs) i.ring.close();
      });
      // Taps handed over that no device here uses (a configuration that differs; the restore will say so).
      for (const fd of options.taps?.values() ?? []) if (!virtio.fds.includes(fd)) closeSync(fd);
      specs.push(...virtio.specs);
      const ecam = ecamRange(pciHost);
      const platform = planPlatform(config, ram.regions, {
        windows: pciHost.windows,
        intx: pciHost.intx,
        ecam: ecam ? { base: ecam.base, endBus: ecam.endBus } : undefined,
      });
      if (platform.pm)
        specs.push({ kind: 'acpi-pm', id: 'acpi-pm', base: platform.pm.base, sciIrq: platform.pm.sciIrq });
      if (config.pvpanic) specs.push({ kind: 'pvpanic', id: 'pvpanic', port: config.pvpanic.ioport });
      const { arena, entries } = planDevices(specs);

      const powerOn: PowerOnState = {
        vcpus: vcpus.map((v) => v.getState()),
        irqchips: [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC].map((chip) =>
          vm.getIrqchip(chip),
        ),
        pit: vm.getPit2(),
      };
      const control = new VcpuControl(config.cpus);
      const machine = new Machine(
        config,
        options,
        kvm,
        vm,
        ram,
        vcpus,
        control,
        arena,
        entries,
        chardevs,
        images,
        powerOn,
      );
      machine.platform = platform;
      machine.msi = msi;
      machine.ioEvents = ioEvents;
      machine.hostFds = virtio.fds;
      machine.taps = virtio.taps;
      machine.consoleInputs = virtio.inputs;
      const env = machine.deviceEnvironment();
      machine.devices = entries.map((e) => instantiate(e, arena, env));
      machine.resetDevices('power-on');
      machine.spawnWorkers();
      if (machine.devices.some((d) => d.ioWatches)) {
        machine.spawnIoThread();
        // The guest runs only once its device backends can serve it. A hang guard, not a budget.
        await machine.ioThread!.ready(IO_THREAD_START_GUARD_MS);
      }
      return machine;
    } catch (e) {
      for (const undo of cleanup.reverse()) {
        try {
          undo();
        } catch {
          /* the original error matters more */
        }
      }
      throw e;
    }
  }

  get runState(): RunState {
    return this.state;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  get guestMemory(): MachineRam['ram'] {
    return this.ram.ram;
  }

  /** The vCPU threads' ids (QMP query-cpus-fast `thread-id`), 0 until a thread has started. */
  vcpuThreadIds(): number[] {
    return this.vcpus.map((v) => this.control.tid(v.id));
  }

  /** Runs `read` on bus 0 under the machine lock (QMP query-pci formats what it sees); null without a PCI bus. */
  readPciBus<T>(read: (bus: PciBus) => T): T | null {
    const bus = this.pciBus;
    return bus ? this.lock.with(() => read(bus)) : null;
  }

  /** The power-on state of the in-kernel chips and vCPUs (cpr/ warms its encoders with it while the guest runs). */
  powerOnStates(): { vcpus: readonly VcpuState[]; irqchips: readonly IrqchipState[]; pit: PitState2 } {
    return this.powerOn;
  }

  /** For checkpoint/restart: the parts it saves and restores. */
  parts(): MachineParts {
    return {
      config: this.config,
      vm: this.vm,
      vcpus: this.vcpus,
      ram: this.ram,
      arena: this.arena,
      entries: this.entries,
      devices: this.devices,
      lock: this.lock,
      capturedVcpuState: (i) => this.capturedVcpuState(i),
      taps: this.taps,
    };
  }

  /** Listen to QMP-visible events (STOP, RESUME, RESET, SHUTDOWN, POWERDOWN). */
  onEvent(listener: (e: MachineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: MachineEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** The main thread's face of the machine for its own device instances. */
  private deviceEnvironment() {
    const outputs = new Map<string, CharOut>();
    const machine: MachineControl = {
      exit: (status, reason) => queueMicrotask(() => this.onVcpuEvent({ type: 'exit', vcpu: -1, status, reason })),
      reset: (reason) => queueMicrotask(() => this.onVcpuEvent({ type: 'reset', vcpu: -1, reason })),
      powerOff: (reason) => queueMicrotask(() => this.onVcpuEvent({ type: 'power-off', vcpu: -1, reason })),
      suspend: (reason) => queueMicrotask(() => this.onVcpuEvent({ type: 'suspend', vcpu: -1, reason })),
      wakeEvent: (source) => queueMicrotask(() => this.onWakeEvent(source)),
    };
    const irq = irqLines(this.vm.fd);
    this.pciBus = pciBusFor(this.entries, this.arena, irq);
    return {
      irq,
      machine,
      clock: hostClock,
      memory: this.ram.ram,
      output: (id: string) => {
        let out = outputs.get(id);
        if (!out) outputs.set(id, (out = this.chardevs.get(id)!.out));
        return out;
      },
      timersChanged: () => this.doorbell.ring(Doorbell.TIMERS),
      pci: this.pciBus,
      msi: this.msi,
      ioEvents: this.ioEvents,
      log: this.log,
    };
  }

  /** Devices to their power-on state, or for a guest reset to what survives one. vCPUs must be parked. */
  private resetDevices(kind: 'power-on' | 'system'): void {
    this.lock.with(() => {
      for (const d of this.devices) {
        if (kind === 'system' && d.systemReset) d.systemReset();
        else d.reset();
        d.restored();
      }
    });
  }

  /** Writes the guest image into RAM and points the boot vCPU at it. vCPUs must be parked. */
  private bootGuest(): void {
    this.guestReady = true;
    // The MP and ACPI tables, as firmware leaves them: written at every boot (a guest may reuse the memory).
    writePlatformTables(this.platform, this.ram.ram);
    if (!this.config.boot || !this.images) return;
    const boot = loadBoot(this.config.boot, this.images, this.ram.ram, this.platform);
    const bsp = this.vcpus[0];
    bsp.setSregs({ ...bsp.getSregs(), ...boot.sregs });
    bsp.setRegs({ ...bsp.getRegs(), ...boot.regs });
  }

  /**
   * Marks the guest as restored from a checkpoint (cpr/): its RAM and vCPUs hold a running guest, so the image is not
   * loaded when the vCPUs next run.
   */
  markRestored(): void {
    this.guestReady = true;
  }

  // ---- life cycle ---------------------------------------------------------------------------------------------

  /** One worker per vCPU, started parked: their start-up (module loading) overlaps the rest of the set-up. */
  private spawnWorkers(): void {
    // Without a handler the kick signal would kill the process; with one, it only interrupts KVM_RUN.
    process.on('SIGUSR2', ignoreKick);
    this.control.requestPause();
    const features = this.vm.vcpuFeatures();
    const outputs = Object.fromEntries([...this.chardevs].map(([id, c]) => [id, c.transferable()]));
    for (const vcpu of this.vcpus) {
      const init: VcpuThreadInit = {
        vcpuId: vcpu.id,
        vcpuFd: vcpu.fd,
        vcpuCount: this.vcpus.length,
        mmapSize: vcpu.mmapSize,
        features,
        vmFd: this.vm.fd,
        ram: this.ram.regions.map((r) => ({ gpa: r.gpa, size: r.size, hostAddress: r.hostAddress })),
        arena: this.arena.buffer,
        devices: this.entries,
        outputs,
        lock: this.lock.buffer,
        control: this.control.buffer,
        doorbell: this.doorbell.buffer,
        stateRecord: this.vcpuRecords[vcpu.id].$buffer as SharedArrayBuffer,
        warmCapture: this.vcpus.length > 1,
        msi: this.msi.init,
        ioEvents: this.ioEvents.init,
      };
      const thread = takeVcpuThread();
      thread.start(init);
      const worker = thread.worker;
      worker.on('message', (event: VcpuEvent) => this.onVcpuEvent(event));
      worker.on('error', (error) =>
        this.fail(ExitStatus.internalError, `vCPU ${vcpu.id} thread crashed: ${error.stack ?? error}`),
      );
      this.workersExited.push(new Promise((resolve) => worker.once('exit', () => resolve())));
      this.workers.push(worker);
    }
    // Threads started for a vCPU count guessed too high are not needed.
    void discardVcpuThreads();
  }

  /**
   * The I/O thread, started parked like the vCPUs: it runs while they run (a checkpoint saves device state with
   * both parked).
   */
  private spawnIoThread(): void {
    const outputs = Object.fromEntries([...this.chardevs].map(([id, c]) => [id, c.transferable()]));
    this.ioThread = IoThread.start(
      {
        vmFd: this.vm.fd,
        ram: this.ram.regions.map((r) => ({ gpa: r.gpa, size: r.size, hostAddress: r.hostAddress })),
        arena: this.arena.buffer,
        devices: this.entries,
        outputs,
        lock: this.lock.buffer,
        doorbell: this.doorbell.buffer,
        msi: this.msi.init,
        ioEvents: this.ioEvents.init,
      },
      {
        paused: true,
        onEvent: (event: IoThreadEvent) => this.onVcpuEvent(event),
        onCrash: (error) => this.fail(ExitStatus.internalError, `I/O thread crashed: ${error.stack ?? error}`),
      },
    );
  }

  /**
   * Starts the main thread's services (input, timers, --timeout) and, unless `paused` (-S), runs the guest.
   * `state` says what a paused machine reports: prelaunch (-S) or inmigrate (-incoming).
   */
  start({ paused = this.config.startPaused, state = 'prelaunch' as RunState } = {}): void {
    if (this.servicesStarted) throw new Error('machine already started');
    this.servicesStarted = true;
    this.connectInput();
    void this.serviceDoorbell();
    this.scheduleTimers();
    if (this.config.timeoutMs !== null) {
      const seconds = this.config.timeoutMs / 1000;
      this.timers.push(
        setTimeout(() => {
          this.log(`timeout: the guest did not finish within ${seconds} s`);
          void this.finish(ExitStatus.timeout);
        }, this.config.timeoutMs),
      );
    }
    this.state = state;
    if (!paused) this.resume();
  }

  /** Parks every vCPU (kicking any that sit in KVM_RUN) and resolves once all are parked. */
  /**
   * The state vCPU `i` saved itself while parking for the last pause({ capture: true }), or null (it was already
   * parked, or reading failed): then read it with getState().
   */
  capturedVcpuState(i: number): VcpuRecord | null {
    return this.captureRequest !== 0 && this.control.capturedFor(i, this.captureRequest) ? this.vcpuRecords[i] : null;
  }

  async pause(
    next: RunState = 'paused',
    { sync = false, capture = false }: { sync?: boolean; capture?: boolean } = {},
  ): Promise<void> {
    if (this.state !== 'running') {
      this.captureRequest = 0; // the vCPUs are parked already: whoever wants their state reads it
      if (
        this.state === 'paused' ||
        this.state === 'prelaunch' ||
        this.state === 'postmigrate' ||
        this.state === 'finish-migrate'
      ) {
        if (next !== 'paused') this.state = next;
      }
      return;
    }
    // Each vCPU thread saving its own state pays off only with several vCPUs (they save in parallel); with one,
    // the main thread's warm path is as fast (measured: 0.7-0.8 ms stop + collect either way).
    this.captureRequest = capture && this.vcpus.length > 1 ? this.control.requestCapture() : 0;
    this.control.requestPause();
    this.kickAll();
    // `sync` blocks this thread until the vCPUs park (~0.1-0.3 ms): a checkpoint inside the guest's pause must not
    // wait for an event-loop turn.
    const parked = sync ? this.control.waitAllParkedSync(5000) : await this.control.waitAllParked(5000);
    if (!parked) throw new Error('vCPUs did not stop within 5 s');
    if (sync) this.ioThread?.pauseSync();
    else await this.ioThread?.pause();
    this.state = next;
    this.emit({ event: 'STOP' });
  }

  /**
   * Runs the guest (booting it first if it has neither booted nor been restored). `announce`: send RESUME (a wake
   * from S3 sends only WAKEUP, as QEMU does: the VM was never stopped by the host).
   */
  resume({ announce = true }: { announce?: boolean } = {}): void {
    if (this.state === 'running' || this.finishing) return;
    if (!this.guestReady) this.bootGuest();
    this.state = 'running';
    this.captureRequest = 0;
    this.control.resume();
    this.ioThread?.resume();
    // The event goes out after the caller's work (a restore timing its resume must not time QMP writes).
    if (announce) queueMicrotask(() => this.emit({ event: 'RESUME' }));
  }

  /** Sets the state a parked machine reports (cpr: inmigrate → paused after a load that stays paused). */
  setPausedState(state: RunState): void {
    if (this.state === 'running') throw new Error('machine is running');
    this.state = state;
  }

  /** Parks every vCPU (kicking those in KVM_RUN), then the I/O thread: no device code runs until they resume. */
  private async parkEverything(why: string): Promise<void> {
    this.control.requestPause();
    this.kickAll();
    if (!(await this.control.waitAllParked(5000))) throw new Error(`vCPUs did not stop ${why}`);
    await this.ioThread?.pause();
  }

  /** Wakes every vCPU out of KVM_RUN: immediate_exit makes the next entry return, the signal ends the current one. */
  private kickAll(): void {
    const pid = getpid();
    for (const vcpu of this.vcpus) {
      vcpu.run.immediateExit = 1;
      const tid = this.control.tid(vcpu.id);
      if (tid > 0) {
        try {
          tgkill(pid, tid, SIGUSR2);
        } catch {
          /* the thread has already gone */
        }
      }
    }
  }

  /** A guest-requested (or QMP) reset: back to power-on state and boot again, like pressing the reset button. */
  async reset(reason: string, guest = true): Promise<void> {
    if (this.finishing || this.resetting) return;
    this.resetting = true;
    try {
      const wasRunning = this.state === 'running';
      // A suspended guest is parked already; a reset ends the suspend (the next boot is a fresh one).
      const wasSuspended = this.state === 'suspended';
      // A guest stopped by its power-off (-no-shutdown) or panic (panic=pause) comes out of a reset in prelaunch, as
      // in QEMU: `cont` boots it.
      const wasStopped = this.state === 'shutdown' || this.state === 'guest-panicked';
      if (wasRunning) await this.parkEverything('for the reset');
      if (guest) this.log(`guest reset (${reason})`);
      for (const chip of this.powerOn.irqchips) this.vm.setIrqchip(chip);
      this.vm.setPit2(this.powerOn.pit);
      // Registers, MSRs, LAPIC and events back to power-on; the CPUID table stays (set once at creation, as in
      // QEMU: KVM refuses to change it on a vCPU that has run).
      this.vcpus.forEach((v, i) => v.setState(this.powerOn.vcpus[i], { cpuid: false }));
      this.resetDevices('system');
      this.guestReady = false;
      this.emit({ event: 'RESET', data: { guest, reason: guest ? 'guest-reset' : 'host-qmp-system-reset' } });
      if (wasRunning || wasSuspended) {
        this.bootGuest();
        this.state = 'running';
        this.control.resume();
        this.ioThread?.resume();
      } else if (wasStopped) {
        this.state = 'prelaunch';
      }
    } finally {
      this.resetting = false;
    }
  }

  /**
   * The guest entered ACPI S3: every vCPU stops, RAM and device state stay, the VM reports `suspended` until
   * wakeup(). (The vCPU that wrote SLP_EN has already asked every vCPU to park.)
   */
  async suspend(): Promise<void> {
    if (this.finishing) return;
    // Devices are quiet in S3 (no queue work, no DMA into a sleeping guest); a wake-up or reset resumes them, and a
    // checkpoint of the suspended guest finds nothing running.
    if (this.state === 'running') await this.parkEverything('for the suspend');
    else await this.ioThread?.pause();
    this.state = 'suspended';
    this.emit({ event: 'SUSPEND' });
  }

  /**
   * Wakes a suspended guest as firmware does on an S3 resume: the platform is reset (in-kernel chips and vCPUs to
   * power-on, devices as after a reset; RAM untouched) and the boot vCPU starts in real mode at the waking vector
   * the guest left in its FACS — found by `wakingVector` (null: no vector, so the guest boots again).
   */
  wakeup(reason: WakeReason = 'user'): void {
    if (this.state !== 'suspended') throw new Error('guest is not in suspended state');
    for (const chip of this.powerOn.irqchips) this.vm.setIrqchip(chip);
    this.vm.setPit2(this.powerOn.pit);
    this.vcpus.forEach((v, i) => v.setState(this.powerOn.vcpus[i], { cpuid: false }));
    this.resetDevices('system');
    const pm = this.devices.find((d) => d.wake);
    this.lock.with(() => pm?.wake?.(reason));
    const vector =
      this.platform.facsAddress === null ? null : readWakingVector(this.ram.ram, this.platform.facsAddress);
    if (vector?.kind === 'real') {
      // As firmware does on an S3 resume: the boot CPU enters the waking vector in real mode, CS:IP from the FACS.
      const bsp = this.vcpus[0];
      const sregs = bsp.getSregs();
      bsp.setSregs({ ...sregs, cs: { ...sregs.cs, selector: vector.cs, base: BigInt(vector.cs << 4) } });
      bsp.setRegs({ ...bsp.getRegs(), rip: BigInt(vector.ip) });
      this.guestReady = true;
    } else {
      if (vector && vector.kind !== 'none')
        this.log(
          `S3 resume: ${vector.kind === 'invalid' ? vector.reason : `a ${vector.kind} waking vector is not supported`}; booting again`,
        );
      this.guestReady = false; // no usable waking vector: the guest boots again
    }
    this.state = 'paused';
    this.emit({ event: 'WAKEUP' });
    this.resume({ announce: false });
  }

  /**
   * A device's wake-up event (the RTC alarm): wakes the guest if it is suspended and enabled that event, as firmware
   * and the chipset do; otherwise nothing happens (QEMU's qemu_system_wakeup_request).
   */
  private onWakeEvent(source: WakeEventSource): void {
    if (this.finishing || this.state !== 'suspended') return;
    const pm = this.devices.find((d) => d.wakeEnabled);
    if (!this.lock.with(() => pm?.wakeEnabled?.(source) ?? false)) return;
    try {
      this.wakeup(source);
    } catch (e) {
      this.fail(ExitStatus.internalError, `wake-up (${source}) failed: ${(e as Error).stack ?? e}`);
    }
  }

  /**
   * QMP system_powerdown: press the ACPI power button (a suspended guest wakes up first, as hardware does). Without
   * ACPI, or before the guest enabled the button, nothing reaches the guest; the event is sent either way.
   */
  powerdown(): void {
    this.emit({ event: 'POWERDOWN' });
    if (this.state === 'suspended') {
      this.wakeup('powerButton');
      return;
    }
    const pm = this.devices.find((d) => d.powerButton);
    this.lock.with(() => pm?.powerButton?.());
  }

  private onVcpuEvent(event: VcpuEvent | IoThreadEvent): void {
    if (this.finishing) return;
    switch (event.type) {
      case 'exit':
        // pvpanic's status (126) is even, so no isa-debug-exit write can give it: it is the guest panicking.
        if (event.status === ExitStatus.guestPanic) this.guestPanicked(event.reason);
        else this.end(event.status & 0xff, 'guest-shutdown');
        break;
      case 'power-off':
        this.guestShutdown('guest-shutdown', ExitStatus.ok);
        break;
      case 'suspend':
        void this.suspend().catch((e) => this.fail(ExitStatus.internalError, `suspend failed: ${e.stack ?? e}`));
        break;
      case 'reset':
        if (this.config.noReboot) this.end(ExitStatus.ok, 'guest-reset');
        else
          void this.reset(event.reason).catch((e) =>
            this.fail(ExitStatus.internalError, `reset failed: ${e.stack ?? e}`),
          );
        break;
      case 'failure':
        if (event.kind === 'triple-fault' && !this.config.noReboot) {
          this.log(event.report.replace(/^tsvmm: /, ''));
          void this.reset('triple fault').catch((e) =>
            this.fail(ExitStatus.internalError, `reset failed: ${e.stack ?? e}`),
          );
          break;
        }
        this.state = 'internal-error';
        this.fail(failureStatus[event.kind], event.report.replace(/^tsvmm: /, ''));
        break;
    }
  }

  private end(status: number, reason: string): void {
    void this.finish(status, { event: { guest: true, reason } });
  }

  /**
   * The guest powered off (or panicked with -action panic=shutdown): tsvmm ends with `status`, or with -no-shutdown
   * the VM stops in run state `shutdown` (SHUTDOWN, then STOP, as QEMU sends them) until QMP resets or quits it.
   */
  private guestShutdown(reason: 'guest-shutdown' | 'guest-panic', status: number): void {
    if (!this.config.noShutdown) {
      this.end(status, reason);
      return;
    }
    this.emit({ event: 'SHUTDOWN', data: { guest: true, reason } });
    void this.stopGuest('shutdown').catch((e) =>
      this.fail(ExitStatus.internalError, `stopping after the guest's shutdown failed: ${e.stack ?? e}`),
    );
  }

  /**
   * The guest reported a panic (pvpanic): one notice, QMP's GUEST_PANICKED, then what -action panic= says — end with
   * 126 (default; QEMU's exit-failure exits 1), power off, stop in `guest-panicked`, or nothing.
   */
  private guestPanicked(notice: string): void {
    this.log(notice);
    switch (this.config.panicAction ?? 'exit-failure') {
      case 'exit-failure':
        this.emit({ event: 'GUEST_PANICKED', data: { action: 'poweroff' } });
        this.end(ExitStatus.guestPanic, 'guest-panic');
        break;
      case 'shutdown':
        this.emit({ event: 'GUEST_PANICKED', data: { action: 'poweroff' } });
        this.guestShutdown('guest-panic', ExitStatus.ok);
        break;
      case 'pause':
        this.emit({ event: 'GUEST_PANICKED', data: { action: 'pause' } });
        void this.stopGuest('guest-panicked').catch((e) =>
          this.fail(ExitStatus.internalError, `stopping the panicked guest failed: ${e.stack ?? e}`),
        );
        break;
      case 'none':
        this.emit({ event: 'GUEST_PANICKED', data: { action: 'run' } });
        // The vCPU that reported it asked every vCPU to park: let them go on.
        if (this.state === 'running') this.control.resume();
        break;
    }
  }

  /** Parks the vCPUs (the reporting vCPU already asked them to) and the I/O thread; the VM reports `next`. */
  private async stopGuest(next: RunState): Promise<void> {
    await this.parkEverything(`to stop in ${next}`);
    this.state = next;
    this.emit({ event: 'STOP' });
  }

  private fail(status: number, message: string): void {
    if (this.finishing) return;
    this.log(message);
    void this.finish(status);
  }

  /**
   * Ends the machine: stop every vCPU thread, release guest RAM views and KVM fds, flush output. Resolves
   * `finished` with `status`. Safe to call more than once (the first status wins).
   */
  async finish(status: number, { event }: { event?: { guest: boolean; reason: string } } = {}): Promise<number> {
    if (this.finishing) return this.finished;
    if (event) this.emit({ event: 'SHUTDOWN', data: event });
    this.finishing = true;
    this.exitStatus = status;
    if (this.yieldWhenEnding) this.yieldCpu();
    for (const t of this.timers) clearTimeout(t);
    if (this.timerPoll) clearTimeout(this.timerPoll);
    this.control.requestStop();
    this.kickAll();
    const ioStopped = this.ioThread?.stop() ?? Promise.resolve(true);
    const stuck = await Promise.race([
      Promise.all(this.workersExited).then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 5000).unref()),
    ]);
    if (stuck) {
      // A worker that does not leave KVM_RUN would hang process exit; report and let the caller exit hard.
      this.log('vCPU threads did not stop within 5 s');
    } else {
      await ioStopped;
      this.release();
    }
    for (const c of this.chardevs.values()) await c.close();
    process.off('SIGUSR2', ignoreKick);
    if (this.state !== 'internal-error') this.state = 'shutdown';
    this.resolveFinished(status);
    return status;
  }

  /**
   * An ending machine's threads drop to the lowest priority: tearing down a large, fully touched RAM mapping takes
   * hundreds of milliseconds, and after a checkpoint a new tsvmm is restoring the same guest on the same cores.
   */
  private yieldCpu(): void {
    for (const tid of [getpid(), ...this.vcpuThreadIds()]) {
      if (tid <= 0) continue;
      try {
        setPriority(tid, 19);
      } catch {
        /* best effort */
      }
    }
  }

  get ended(): boolean {
    return this.finishing;
  }

  private release(): void {
    closeBootImages(this.images);
    this.msi.close();
    this.ioEvents.close();
    for (const fd of this.hostFds) closeSync(fd);
    for (const input of this.consoleInputs) input.ring.close();
    for (const v of this.vcpus) v.close();
    this.ram.close();
    this.vm.close();
    this.kvm.close();
  }

  // ---- main-thread services -----------------------------------------------------------------------------------

  /**
   * COM1's backend feeds the guest; input is taken only as far as the UART's FIFO has room. A virtio console's
   * backend feeds its ring to the I/O thread, as far as the ring has room.
   */
  private connectInput(): void {
    for (const input of this.consoleInputs)
      this.chardevs.get(input.chardev)?.setInputHandler((bytes) => input.ring.write(bytes));
    const serial = this.devices.find((d) => d.spec.kind === 'serial');
    if (!serial?.receive) return;
    const backend = this.chardevs.get(serial.spec.id)!;
    backend.setInputHandler((bytes) => this.lock.with(() => serial.receive!(bytes)));
  }

  private async serviceDoorbell(): Promise<void> {
    while (!this.finishing) {
      const bits = await this.doorbell.wait();
      if (this.finishing) return;
      if (bits & Doorbell.TIMERS) this.scheduleTimers();
    }
  }

  /** Runs what is due on every device with timers and sleeps until the earliest next deadline. */
  scheduleTimers(): void {
    if (this.finishing || !this.servicesStarted) return;
    if (this.timerPoll) clearTimeout(this.timerPoll);
    this.timerPoll = null;
    let next: number | null = null;
    this.lock.with(() => {
      for (const d of this.devices) {
        const ms = d.pollTimers?.() ?? null;
        if (ms !== null && (next === null || ms < next)) next = ms;
      }
    });
    if (next !== null) this.timerPoll = setTimeout(() => this.scheduleTimers(), Math.max(0, Math.ceil(next)));
  }
}

function ignoreKick(): void {
  // The signal exists only to interrupt KVM_RUN in a vCPU thread.
}

const failureStatus: Record<Extract<VcpuEvent, { type: 'failure' }>['kind'], number> = {
  'internal-error': ExitStatus.kvmInternalError,
  'fail-entry': ExitStatus.failEntry,
  'triple-fault': ExitStatus.tripleFault,
  'unexpected-exit': ExitStatus.kvmInternalError,
  'vmm-error': ExitStatus.internalError,
};
