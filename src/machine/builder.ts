// Builds a machine from a MachineConfig, in the order a failure is best reported: the files the command line names,
// then KVM (VM, RAM, vCPUs), chardevs and devices (their state in one arena the threads share), then every thread
// started and parked. The Machine gets it all finished. A build that fails stops and joins the threads it started
// and releases what it acquired, so nothing is left to keep the process alive.
import type { CharBackend, CharSpec } from '../chardev/index.js';
import { openCharBackend } from '../chardev/index.js';
import type { MachineRam } from '../memory/config.js';
import { MachineLock } from '../sync/lock.js';
import { VcpuControl } from '../vcpu/control.js';
import { planDevices, instantiate } from '../runtime/device-table.js';
import { Doorbell } from '../runtime/doorbell.js';
import type { PciBus } from '../../devices/pci/bus.js';
import { readBootImages, closeBootImages } from './boot.js';
import { checkDriveImages } from './virtio-plan.js';
import { checkVfioHost } from './vfio-host.js';
import type { MachineConfig } from './config.js';
import { setUpKvm } from './kvm-setup.js';
import { deviceSpecs } from './device-specs.js';
import { mainEnvironment } from './main-environment.js';
import { PowerControl, readPowerOnState } from './power.js';
import { VcpuCapture, type MachineParts } from './checkpoint-hooks.js';
import { MachineThreads } from './threads.js';
import { MachineTimers } from './timers.js';
import { MachineInbox } from './inbox.js';
import { connectHostInput } from './host-input.js';
import { Teardown } from './teardown.js';

/** How long the build waits for the I/O thread to start: far above a loaded nested-KVM machine's seconds. */
const IO_THREAD_START_GUARD_MS = 300_000;

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
  /** How long to wait for the I/O thread to start (a hang guard; tests shorten it to see a build fail). */
  ioThreadStartGuardMs?: number;
}

/** Everything a Machine is made of, built and started (threads parked). */
export interface MachineAssembly {
  readonly config: MachineConfig;
  readonly log: (line: string) => void;
  readonly yieldCpuWhenEnding: boolean;
  readonly lock: MachineLock;
  readonly memory: MachineRam['ram'];
  readonly chardevs: ReadonlyMap<string, CharBackend>;
  /** The main thread's view of PCI bus 0 (QMP query-pci reads it). */
  readonly pciBus: PciBus | null;
  readonly parts: MachineParts;
  readonly power: PowerControl;
  readonly capture: VcpuCapture;
  readonly threads: MachineThreads;
  readonly timers: MachineTimers;
  readonly inbox: MachineInbox;
  /** Connects host input to the guest's UART and virtio consoles (once the machine starts). */
  connectInput(): void;
  /** Host resources (fds, RAM, KVM) to release once every thread has stopped. */
  readonly release: Teardown;
}

/** Throws KvmUnavailableError, RamBackendError, BootError… with one clear line each. */
export async function buildMachine(config: MachineConfig, options: MachineOptions = {}): Promise<MachineAssembly> {
  const log = options.log ?? ((line: string) => process.stderr.write(`tsvmm: ${line}\n`));
  const guardMs = options.ioThreadStartGuardMs ?? IO_THREAD_START_GUARD_MS;
  const release = new Teardown();
  const chardevs = new Map<string, CharBackend>();
  let threads: MachineThreads | null = null;
  try {
    // The files the command line names come first: a missing kernel or disk image is reported as such, on any host,
    // before /dev/kvm or RAM is touched.
    const images = config.boot ? readBootImages(config.boot) : null;
    release.add(() => closeBootImages(images));
    checkDriveImages(config.virtio);
    for (const v of config.vfio ?? []) checkVfioHost(v);
    const { vm, ram, vcpus } = setUpKvm(config, options, release);

    // Character backends first: a unix socket server may wait for its client (QEMU's `server` without wait=off).
    const openChardev = async (id: string, spec: CharSpec) => {
      chardevs.set(id, await openCharBackend(spec));
      return id;
    };
    const plan = await deviceSpecs(config, {
      vmFd: vm.fd,
      ram,
      log,
      openChardev,
      taps: options.taps,
      teardown: release,
    });
    const { arena, entries } = planDevices(plan.specs);
    const powerOn = readPowerOnState(vm, vcpus);
    const control = new VcpuControl(config.cpus);
    const capture = new VcpuCapture(control, vcpus.length);
    const lock = new MachineLock();
    const doorbell = new Doorbell();
    const inbox = new MachineInbox();
    const { env, pciBus } = mainEnvironment({
      vmFd: vm.fd,
      ram,
      arena,
      entries,
      chardevs,
      doorbell,
      msi: plan.msi,
      ioEvents: plan.ioEvents,
      log,
      request: inbox.post,
      wake: (source) => inbox.post({ type: 'wake', source }),
    });
    const devices = entries.map((e) => instantiate(e, arena, env));
    const memory = ram.ram;
    const power = new PowerControl({
      config,
      vm,
      vcpus,
      memory,
      devices,
      lock,
      platform: plan.platform,
      images,
      powerOn,
      log,
    });
    power.resetDevices('power-on');

    threads = new MachineThreads({
      shared: {
        vmFd: vm.fd,
        ram: ram.regions.map((r) => ({ gpa: r.gpa, size: r.size, hostAddress: r.hostAddress })),
        arena: arena.buffer,
        devices: entries,
        outputs: Object.fromEntries([...chardevs].map(([id, c]) => [id, c.transferable()])),
        lock: lock.buffer,
        doorbell: doorbell.buffer,
        msi: plan.msi.init,
        ioEvents: plan.ioEvents.init,
      },
      vcpus,
      features: vm.vcpuFeatures(),
      control,
      stateRecords: capture.buffers,
      withIoThread: devices.some((d) => d.ioWatches),
      report: inbox.post,
    });
    threads.start();
    // The guest runs only once its device backends can serve it. A hang guard, not a budget.
    await threads.ready(guardMs);

    const { taps, images: diskImages } = plan.virtio;
    const capturedVcpuState = (i: number) => capture.stateOf(i);
    return {
      config,
      log,
      yieldCpuWhenEnding: options.yieldCpuWhenEnding ?? false,
      lock,
      memory,
      chardevs,
      pciBus,
      parts: { config, vm, vcpus, ram, arena, entries, devices, lock, capturedVcpuState, taps, images: diskImages },
      power,
      capture,
      threads,
      timers: new MachineTimers(devices, lock, doorbell, log),
      inbox,
      connectInput: () => connectHostInput(chardevs, plan.virtio.inputs, devices, lock),
      release,
    };
  } catch (e) {
    // Threads first: they use the fds and RAM released next. They never ran the guest, so they stop as soon as they
    // have loaded; the start guard bounds the wait for one that hangs.
    await threads?.abort(IO_THREAD_START_GUARD_MS);
    release.run();
    for (const c of chardevs.values()) void c.close();
    throw e;
  }
}
