// The library's options, typed, each named after the command-line option it stands for (README, "Running a
// guest"): Machine.create spells them as that command line, so what they mean and every error message are the
// CLI's. Plain data only: this file is the public surface and imports nothing of tsvmm's internals.

/** `-object memory-backend-*` + `-machine memory-backend=`: where guest RAM lives. */
export interface MemoryOptions {
  /** Guest RAM: bytes as a number of MiB (QEMU's plain `-m 64`) or a size string ('512M', '1G'). */
  readonly size: number | string;
  /** memory-backend-ram (anonymous memory, the default), -memfd, or -file (`path`, e.g. '/dev/shm/vm0'). */
  readonly backend?: 'ram' | 'memfd' | 'file';
  /** mem-path= of a file backend; an existing file is reopened with its content. */
  readonly path?: string;
  /** share=on: a MAP_SHARED mapping (RAM on /dev/shm survives a checkpoint in place only when shared). */
  readonly share?: boolean;
  /** hugetlb=on (memfd backend). */
  readonly hugetlb?: boolean;
  /** prealloc=on: touch all of RAM at start-up. */
  readonly prealloc?: boolean;
}

/** `-drive file=…,if=none,id=…,format=raw` + `-device virtio-blk-pci,drive=…`. */
export interface DiskOptions {
  /** A raw image file or a block device. */
  readonly file: string;
  readonly readonly?: boolean;
  /** The disk's serial number, as the guest sees it. */
  readonly serial?: string;
}

/** `-netdev tap,id=…,ifname=…` + `-device virtio-net-pci,netdev=…`. */
export interface NicOptions {
  /** An existing tap device. */
  readonly ifname: string;
  readonly mac?: string;
}

/**
 * A `-serial` destination: any spec the command line takes ('file:/tmp/log', 'unix:/run/s.sock,server,wait=off',
 * 'null', 'none', 'stdio'), or 'stream': the port is `machine.serial`, a Node stream in this process.
 */
export type SerialOption = 'stream' | (string & {});

/** QEMU's `-action panic=`: what a guest panic (pvpanic) does. */
export type PanicAction = 'exit-failure' | 'shutdown' | 'pause' | 'none';

/** Host-side choices, which a restored machine takes anew (a checkpoint records the guest, not these). */
export interface HostOptions {
  /** COM1..COM4 in order (`-serial`, repeated); default 'stream' on COM1. At most one port is the stream. */
  readonly serial?: SerialOption | readonly SerialOption[];
  /** QMP monitors (`-qmp`): a socket path (served with server=on,wait=off) or QEMU's full spec 'unix:PATH,…'. */
  readonly qmp?: string | readonly string[];
  /** `--timeout`: end the guest after this many seconds (exit status 124, reason 'timeout'). */
  readonly timeout?: number;
  /** `-no-shutdown`: a guest power-off stops the VM (reset() then resume() boot it again) instead of ending it. */
  readonly noShutdown?: boolean;
  /** `-action panic=`; default 'exit-failure' (exit status 126, reason 'panic'). */
  readonly panic?: PanicAction;
}

/** Everything `tsvmm run` takes, typed. Anything else the command line has goes into `args`, spelled as there. */
export interface MachineOptions extends HostOptions {
  /** `-kernel`: a Linux kernel (bzImage, vmlinux, PVH) or a multiboot v1 kernel. */
  readonly kernel?: string;
  /** `-initrd`: Linux's initramfs, or multiboot modules ('mod1 args,mod2'). */
  readonly initrd?: string;
  /** `-append`: the kernel command line. */
  readonly append?: string;
  /** `-m` (a number is MiB, as in QEMU; default 128 MiB), or the RAM backend with its size. */
  readonly memory?: number | string | MemoryOptions;
  /** `-smp`: vCPUs, one thread each. */
  readonly smp?: number;
  /** `-cpu`: 'host' (default) or 'pvm-safe'. */
  readonly cpu?: 'host' | 'pvm-safe';
  /** virtio disks; PCI slots go to disks, then NICs, then the rng, then the devices in `args`. */
  readonly disks?: readonly DiskOptions[];
  /** virtio NICs on tap devices. */
  readonly nics?: readonly NicOptions[];
  /** `-device isa-debug-exit` (true: the test-guest port 0xf4, size 4). The guest's verdict v ends it with (v << 1) | 1. */
  readonly debugExit?: boolean | { readonly iobase?: number; readonly iosize?: number };
  /** `-device virtio-rng-pci`. */
  readonly rng?: boolean;
  /** `-machine acpi=off` when false. */
  readonly acpi?: boolean;
  /** `-no-reboot`: a guest reset ends the machine (status 0, reason 'reset') instead of rebooting it. */
  readonly noReboot?: boolean;
  /** `-S`: start() leaves the vCPUs stopped; resume() runs them. */
  readonly paused?: boolean;
  /** `-name`. */
  readonly name?: string;
  /** More command-line arguments, appended as given: ['-device', 'pvpanic', '-debugcon', 'file:/tmp/d.log']. */
  readonly args?: readonly string[];
}

/** Machine.restore's options: the host side is chosen anew; `paused` keeps a running guest stopped at start(). */
export interface RestoreOptions extends HostOptions {
  readonly paused?: boolean;
}

/** How `checkpoint()` stores guest RAM. */
export interface CheckpointOptions {
  /**
   * 'auto' (default; the CPR seed's cpr-save): RAM on a persistent shared backend (a file on /dev/shm with share)
   * stays where it is, and Machine.restore maps the same file; any other RAM is written into the checkpoint.
   * 'in-file': always into the checkpoint (QEMU's plain `migrate file:`), so the file alone holds the guest.
   */
  readonly ram?: 'auto' | 'in-file';
}

/** What ended the machine, in a word; the exit status says the same as a number (README, "Exit status"). */
export type ExitReason =
  /** The guest wrote to isa-debug-exit: status (v << 1) | 1. */
  | 'guest-exit'
  /** The guest powered off (ACPI S5): status 0. */
  | 'poweroff'
  /** The guest reset with noReboot: status 0. */
  | 'reset'
  /** quit() (QMP `quit`): status 0. */
  | 'quit'
  /** The guest panicked (pvpanic): status 126 (0 with panic: 'shutdown'). */
  | 'panic'
  /** The timeout expired: status 124. */
  | 'timeout'
  /** A triple fault with noReboot: status 118. */
  | 'triple-fault'
  /** KVM could not run the guest (emulation failure, …): status 120. */
  | 'kvm-internal-error'
  /** KVM refused the guest state: status 122. */
  | 'fail-entry'
  /** tsvmm itself failed: status 70 (stderr has the report). */
  | 'internal-error';

/** `await machine.exited`. */
export interface MachineExit {
  /** The exit status the `tsvmm` command would have ended with. */
  readonly status: number;
  readonly reason: ExitReason;
}

/** QMP's run states (query-status), as `machine.status` reports them. */
export type RunStatus =
  | 'prelaunch'
  | 'running'
  | 'paused'
  | 'suspended'
  | 'inmigrate'
  | 'finish-migrate'
  | 'postmigrate'
  | 'shutdown'
  | 'internal-error'
  | 'guest-panicked';

/** The machine's events: QMP's, lower-cased, with QEMU's data; GUEST_PANICKED is 'panic'. */
export interface MachineEvents {
  stop: [];
  resume: [];
  shutdown: [{ readonly guest: boolean; readonly reason: string }];
  panic: [{ readonly action: 'poweroff' | 'pause' | 'run' }];
  reset: [{ readonly guest: boolean; readonly reason: string }];
  powerdown: [];
  suspend: [];
  wakeup: [];
}
