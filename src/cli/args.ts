// `tsvmm run` flags, spelled as QEMU spells them so QEMU users' command lines carry over. This module only splits
// argv into raw values (checking that each flag exists and has its value); src/cli/config.ts gives them meaning.
// Both `-flag` and `--flag` are accepted, as QEMU does.
import { ExitStatus } from '../util/exit-status.js';
import { SetupError } from '../util/setup-error.js';

export class UsageError extends SetupError {
  override get exitStatus(): number {
    return ExitStatus.usage;
  }
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Raw option values, in command-line order where order matters. */
export interface RunArgs {
  m?: string;
  smp?: string;
  cpu?: string;
  machine: string[];
  objects: string[];
  memPath?: string;
  memPrealloc: boolean;
  kernel?: string;
  initrd?: string;
  append?: string;
  serial: string[];
  debugcon: string[];
  chardev: string[];
  drive: string[];
  netdev: string[];
  device: string[];
  qmp: string[];
  incoming: string[];
  noReboot: boolean;
  noShutdown: boolean;
  /** -action (QEMU's): what guest reboots, power-offs and panics do. */
  action: string[];
  startPaused: boolean;
  timeoutSeconds?: number;
  name?: string;
  /** Options accepted for QEMU compatibility that change nothing here, kept for `--verbose` reporting. */
  ignored: string[];
}

type Kind = 'value' | 'list' | 'flag';
interface FlagSpec {
  kind: Kind;
  key: keyof RunArgs | null;
  help: string;
  arg?: string;
}

/** Every flag `tsvmm run` knows. `key: null` = accepted for QEMU compatibility, no effect. */
const FLAGS: Record<string, FlagSpec> = {
  m: { kind: 'value', key: 'm', arg: 'SIZE', help: 'guest RAM, e.g. 512M (plain number: MiB), or size=…' },
  smp: { kind: 'value', key: 'smp', arg: 'N', help: 'number of vCPUs: N or cpus=N[,maxcpus=N]' },
  cpu: {
    kind: 'value',
    key: 'cpu',
    arg: 'MODEL',
    help: 'host (default) or pvm-safe (hide CX16/XSAVE for emulated guests)',
  },
  machine: { kind: 'list', key: 'machine', arg: 'OPTS', help: 'pc[,memory-backend=ID][,acpi=on|off][,pvpanic=on|off]' },
  M: { kind: 'list', key: 'machine', arg: 'OPTS', help: 'same as -machine' },
  object: { kind: 'list', key: 'objects', arg: 'OPTS', help: 'memory-backend-{ram,file,memfd},id=…,size=…' },
  'mem-path': { kind: 'value', key: 'memPath', arg: 'PATH', help: 'back guest RAM with a file under PATH' },
  'mem-prealloc': { kind: 'flag', key: 'memPrealloc', help: 'touch all guest RAM at start-up' },
  kernel: {
    kind: 'value',
    key: 'kernel',
    arg: 'FILE',
    help: 'guest image: Linux bzImage / vmlinux (PVH), multiboot v1 kernel (format detected)',
  },
  initrd: {
    kind: 'value',
    key: 'initrd',
    arg: 'FILES',
    help: 'Linux: the initramfs; multiboot: modules "file arg,file2 arg"',
  },
  append: { kind: 'value', key: 'append', arg: 'CMDLINE', help: 'kernel command line' },
  serial: {
    kind: 'list',
    key: 'serial',
    arg: 'DEV',
    help: 'stdio | file:PATH | unix:PATH[,server,wait=off] | null | none',
  },
  debugcon: { kind: 'list', key: 'debugcon', arg: 'DEV', help: 'isa-debugcon on port 0xe9 to DEV (as -serial)' },
  drive: {
    kind: 'list',
    key: 'drive',
    arg: 'OPTS',
    help: 'file=PATH,if=none,id=ID,format=raw[,readonly=on] (or if=virtio)',
  },
  netdev: { kind: 'list', key: 'netdev', arg: 'OPTS', help: 'tap,id=ID,ifname=NAME,script=no,downscript=no' },
  chardev: { kind: 'list', key: 'chardev', arg: 'OPTS', help: 'backend,id=ID[,path=…] for -device …,chardev=ID' },
  device: {
    kind: 'list',
    key: 'device',
    arg: 'DRIVER',
    help: 'isa-debug-exit | isa-debugcon | pvpanic | loader | virtio-blk-pci | virtio-net-pci | virtio-rng-pci | virtio-serial-pci | virtconsole | vfio-pci',
  },
  qmp: { kind: 'list', key: 'qmp', arg: 'DEV', help: 'QMP monitor: unix:PATH,server=on,wait=off (socket mode 0600)' },
  incoming: {
    kind: 'list',
    key: 'incoming',
    arg: 'URI',
    help: 'receive a checkpoint: defer | file:PATH | fd:N | exec:COMMAND | a cpr channel (JSON)',
  },
  'no-reboot': { kind: 'flag', key: 'noReboot', help: 'a guest reset ends tsvmm (status 0) instead of rebooting' },
  'no-shutdown': { kind: 'flag', key: 'noShutdown', help: 'stop instead of exiting when the guest powers off' },
  action: {
    kind: 'list',
    key: 'action',
    arg: 'OPTS',
    help: 'reboot=reset|shutdown, shutdown=poweroff|pause, panic=exit-failure|shutdown|pause|none',
  },
  S: { kind: 'flag', key: 'startPaused', help: 'do not start the vCPUs (QMP `cont` starts them)' },
  timeout: { kind: 'value', key: 'timeoutSeconds', arg: 'SECONDS', help: 'end the VM after SECONDS (status 124)' },
  name: { kind: 'value', key: 'name', arg: 'NAME', help: 'a name for the VM (shown by QMP)' },
  'enable-kvm': { kind: 'flag', key: null, help: 'accepted: tsvmm always uses KVM' },
  accel: { kind: 'value', key: null, arg: 'kvm', help: 'accepted when kvm' },
  nographic: { kind: 'flag', key: null, help: 'accepted: tsvmm has no display' },
  display: { kind: 'value', key: null, arg: 'none', help: 'accepted when none' },
  vga: { kind: 'value', key: null, arg: 'none', help: 'accepted when none' },
  nodefaults: { kind: 'flag', key: null, help: 'accepted' },
  monitor: { kind: 'value', key: null, arg: 'none', help: 'accepted when none' },
};

export function emptyArgs(): RunArgs {
  return {
    machine: [],
    objects: [],
    memPrealloc: false,
    serial: [],
    debugcon: [],
    chardev: [],
    drive: [],
    netdev: [],
    device: [],
    qmp: [],
    incoming: [],
    action: [],
    noReboot: false,
    noShutdown: false,
    startPaused: false,
    ignored: [],
  };
}

/** Values a compatibility-only flag may take: anything else would silently change meaning, so it is an error. */
const IGNORED_VALUES: Record<string, RegExp> = {
  accel: /^kvm(,.*)?$/,
  display: /^none$/,
  vga: /^none$/,
  monitor: /^none$/,
};

export function parseRunArgs(argv: readonly string[]): RunArgs {
  const args = emptyArgs();
  const out = args as unknown as Record<string, unknown>;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (!word.startsWith('-') || word === '-' || word === '--') {
      throw new UsageError(`unexpected argument '${word}' (options start with '-'; see tsvmm run --help)`);
    }
    let name = word.replace(/^--?/, '');
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (word.startsWith('--') && eq > 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = FLAGS[name];
    if (!spec) throw new UsageError(`unknown option '${word}' (see tsvmm run --help)`);
    let value: string | undefined;
    if (spec.kind !== 'flag') {
      value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`option '${word}' needs a value: ${word} ${spec.arg}`);
    } else if (inline !== undefined) {
      throw new UsageError(`option '${word}' takes no value`);
    }
    if (spec.key === null) {
      const allowed = IGNORED_VALUES[name];
      if (allowed && !allowed.test(value!)) throw new UsageError(`${word} ${value}: only '${spec.arg}' is supported`);
      args.ignored.push(value === undefined ? word : `${word} ${value}`);
      continue;
    }
    if (spec.kind === 'flag') out[spec.key] = true;
    else if (spec.kind === 'list') (out[spec.key] as string[]).push(value!);
    else if (spec.key === 'timeoutSeconds') {
      const seconds = Number(value);
      if (!Number.isFinite(seconds) || seconds <= 0)
        throw new UsageError(`${word}: '${value}' is not a positive number of seconds`);
      args.timeoutSeconds = seconds;
    } else {
      if (out[spec.key] !== undefined) throw new UsageError(`option '${word}' given more than once`);
      out[spec.key] = value;
    }
  }
  return args;
}

export function runUsage(): string {
  const lines = ['usage: tsvmm run [options]', '', 'options (QEMU spelling; -flag and --flag both work):'];
  for (const [name, spec] of Object.entries(FLAGS)) {
    const left = `  -${name}${spec.arg ? ` ${spec.arg}` : ''}`;
    lines.push(`${left.padEnd(30)} ${spec.help}`);
  }
  return lines.join('\n');
}
