#!/usr/bin/env node
// tsvmm's command line: `tsvmm run [QEMU-style options]` (or the options alone, as with qemu-system-x86_64).
import { pathToFileURL } from 'node:url';
import { parseRunArgs, runUsage, UsageError } from './args.js';
import { ExitStatus } from '../util/exit-status.js';
import { SetupError } from '../util/setup-error.js';
import { startupMark, reportStartup } from './startup-trace.js';
import { version } from './version.js';
// Everything else is imported when needed: start-up time is part of a checkpoint/restart's pause.

const USAGE = `usage: tsvmm run [options]      boot a guest (see tsvmm run --help)
       tsvmm vmstate dump FILE  print a checkpoint file as JSON
       tsvmm cpr-timings QMP    print the phases of a running tsvmm's last checkpoint/restart
       tsvmm initramfs -o FILE  build a busybox initramfs (see tsvmm initramfs --help)
       tsvmm --version

Exit status: the guest's isa-debug-exit verdict ((value << 1) | 1), 0 on a clean power-off (or reset with
-no-reboot), ${ExitStatus.usage} bad usage, ${ExitStatus.setupFailed} setup failed (/dev/kvm, RAM, image), ${ExitStatus.tripleFault} triple fault,
${ExitStatus.kvmInternalError} KVM internal/emulation error, ${ExitStatus.failEntry} VM entry failure, ${ExitStatus.timeout} --timeout expired, ${ExitStatus.internalError} tsvmm internal error.`;

function exitWith(status: number, message: string): never {
  process.stderr.write(`tsvmm: ${message}\n`);
  process.exit(status);
}

async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv.includes('-help')) {
    process.stdout.write(`${runUsage()}\n`);
    return 0;
  }
  startupMark('main');
  const args = parseRunArgs(argv);
  // The vCPU threads boot (~20 ms each, plus their modules) while this thread loads the rest of tsvmm.
  const [{ parseSmp }, { prestartVcpuThreads }] = await Promise.all([import('./smp.js'), import('../vcpu/threads.js')]);
  prestartVcpuThreads(vcpusToPrestart(parseSmp, args.smp));
  startupMark('threads-started');
  const { machineConfigFromArgs } = await import('./config.js');
  const config = machineConfigFromArgs(args);
  startupMark('configured');
  const incoming = parseIncoming(args.incoming);
  const { Machine } = await import('../machine/machine.js');
  const { startQmp, startClockAfterCreate } = await import('./control.js');
  // cpr-transfer: the old tsvmm hands over its RAM first; this VM is built around it.
  let transfer: import('../../cpr/flows/transfer.js').IncomingTransfer | null = null;
  const earlyClock = startClockAfterCreate();
  // cpr-exec: this image was exec'd by a tsvmm that kept its RAM (and taps, QMP sockets) open across the exec.
  const inherited = process.env.TSVMM_CPR_EXEC_STATE === undefined ? null : await execInherited(incoming, earlyClock);
  if (incoming?.cprChannel) {
    const { transferIn } = await import('../../cpr/flows/transfer.js');
    transfer = await transferIn(incoming.cprChannel, earlyClock);
  }
  // TSVMM_KVM_DEVICE points tsvmm at another KVM device node (tests use it to check the missing-/dev/kvm error).
  startupMark('modules-loaded');
  const machine = await Machine.create(config, {
    kvmPath: process.env.TSVMM_KVM_DEVICE,
    ram: transfer?.ram ?? inherited?.ram,
    taps: transfer?.taps ?? inherited?.taps,
    yieldCpuWhenEnding: true,
  });
  const startClock = transfer ? earlyClock : startClockAfterCreate();
  // cpr-exec: the new image's start-up is timed as a reboot's (process start → machine created), plus the mapping
  // of the kept RAM it did first.
  if (inherited) startClock.marks.push(...earlyClock.marks.filter((m) => m.phase === 'map-ram'));
  startupMark('machine-created');
  const loadFile = incoming?.file !== undefined && !transfer ? incoming.file : null;
  const control = await startQmp(machine, args.qmp, {
    startPaused: args.startPaused,
    startClock,
    version: version(),
    // -incoming file: the restore goes first; QMP opens once the guest runs again.
    beforeListen: (migration) => {
      if (inherited) {
        // As QEMU's new image after a cpr-exec: the mode is cpr-exec, and the (first) load takes the kept RAM.
        migration.mode = 'cpr-exec';
        migration.inherited = { marks: inherited.marks };
      }
      if (loadFile === null) return;
      machine.start({ paused: true, state: 'inmigrate' });
      migration.incomingFromFile(loadFile, startClock, args.startPaused);
    },
  });
  // Fds a cpr-exec or cpr-transfer left that no device here took (a configuration that differs) hold nothing open.
  if (inherited || transfer) (await import('../sys/exec-fds.js')).closeUnclaimedInheritedFds();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`tsvmm: terminating on signal ${signal}\n`);
      void machine.finish(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[signal], {
        event: { guest: false, reason: 'host-signal' },
      });
    });
  }
  // A VM that waits for a checkpoint (-S for cpr-load, -incoming defer) runs the restore path once now, on its own
  // power-on state, so the real restore runs compiled code inside the guest's pause.
  const waitsForState =
    (incoming === null && args.startPaused) || (incoming !== null && incoming.file === undefined && !transfer);
  if (incoming === null) {
    machine.start();
    if (waitsForState) void control.migration.warmUpIncoming(startClock);
  } else {
    if (waitsForState) void control.migration.warmUpIncoming(startClock);
    if (loadFile === null) machine.start({ paused: true, state: 'inmigrate' });
    try {
      if (transfer) {
        control.migration.beginTransfer();
        const marks = await transfer.complete(machine, args.startPaused);
        control.migration.recordTransfer(marks, true);
      }
      // -incoming fd:N / exec:CMD: QMP is open meanwhile (query-migrate shows it active); a failed load ends
      // tsvmm, as a failed -incoming file: does.
      if (incoming.stream)
        await control.migration.incomingFromStream(await stdioKept(incoming.stream), startClock, args.startPaused);
    } catch (e) {
      await machine.finish(ExitStatus.setupFailed);
      await control.close();
      throw e;
    }
  }
  startupMark('running');
  reportStartup();
  // The bundle's loader keeps V8's compiled code for the next start (see src/cli/code-cache-loader.ts); taken now,
  // it holds everything start-up and a restore compiled.
  setImmediate(() => (globalThis as { __tsvmmSaveCodeCache?: () => void }).__tsvmmSaveCodeCache?.());
  const status = await machine.finished;
  await control.close();
  return status;
}

/** How many vCPU threads to start ahead: a bad -smp starts none, and machineConfigFromArgs reports it as usage. */
function vcpusToPrestart(parseSmp: (text: string | undefined) => number, smp: string | undefined): number {
  try {
    return parseSmp(smp);
  } catch {
    return 0;
  }
}

/** The fds a cpr-exec left this image (checked first: a stray TSVMM_CPR_EXEC_STATE is refused, not followed). */
async function execInherited(
  incoming: Incoming | null,
  clock: import('../../cpr/flows/timings.js').PhaseClock,
): Promise<import('../../cpr/flows/exec.js').ExecInheritance> {
  const { execIn } = await import('../../cpr/flows/exec.js');
  const { CprError } = await import('../../cpr/flows/reboot.js');
  const inherited = execIn(clock);
  if (inherited === null) throw new Error('TSVMM_CPR_EXEC_STATE vanished');
  if (incoming === null || incoming.cprChannel !== undefined) {
    inherited.ram.close();
    throw new CprError(
      'cpr-exec: the new tsvmm needs -incoming defer or -incoming file:PATH (and no cpr channel) in cpr-exec-command',
    );
  }
  return inherited;
}

/**
 * -incoming fd:0 (a pipe on stdin, say) is read through a duplicate, which the load closes when done: fds 0-2
 * stay open, so nothing opened later can take their numbers.
 */
async function stdioKept(
  end: import('../../cpr/flows/stream-transport.js').StreamEnd,
): Promise<import('../../cpr/flows/stream-transport.js').StreamEnd> {
  if (end.kind !== 'fd' || end.fd > 2) return end;
  const { fcntl } = await import('../sys/libc.js');
  const F_DUPFD_CLOEXEC = 1030; // <fcntl.h>: F_LINUX_SPECIFIC_BASE + 6
  return { ...end, fd: fcntl(end.fd, F_DUPFD_CLOEXEC, 3) };
}

/** What -incoming asked for: wait (defer), a checkpoint file or stream to load, and/or a cpr-transfer channel. */
interface Incoming {
  file?: string;
  /** fd:N (an inherited fd number) or exec:COMMAND (its stdout): received, then loaded as a file. */
  stream?: import('../../cpr/flows/stream-transport.js').StreamEnd;
  cprChannel?: string;
}

/**
 * `-incoming defer`, `-incoming file:PATH`, and QEMU 10's cpr channel
 * `-incoming '{"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": "cpr.sock"}}'`
 * (given beside the main channel, which may be defer).
 */
function parseIncoming(values: readonly string[]): Incoming | null {
  if (values.length === 0) return null;
  const out: Incoming = {};
  let main = 0;
  for (const value of values) {
    if (value.trimStart().startsWith('{')) {
      let channel: { 'channel-type'?: unknown; addr?: { transport?: unknown; type?: unknown; path?: unknown } };
      try {
        channel = JSON.parse(value);
      } catch {
        throw new UsageError(`-incoming: '${value}' is not valid JSON`);
      }
      const addr = channel.addr;
      if (
        channel['channel-type'] !== 'cpr' ||
        addr?.transport !== 'socket' ||
        addr.type !== 'unix' ||
        typeof addr.path !== 'string' ||
        addr.path === ''
      ) {
        throw new UsageError(
          '-incoming: a JSON channel must be {"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": PATH}}',
        );
      }
      if (out.cprChannel !== undefined) throw new UsageError('-incoming: only one cpr channel');
      out.cprChannel = addr.path;
    } else if (value === 'defer') {
      main++;
    } else if (value.startsWith('file:') && value.length > 5) {
      main++;
      out.file = value.slice(5);
    } else if (/^fd:[0-9]+$/.test(value)) {
      main++;
      out.stream = { kind: 'fd', fd: Number(value.slice(3)), label: value };
    } else if (value.startsWith('exec:') && value.slice(5).trim() !== '') {
      main++;
      out.stream = { kind: 'exec', argv: ['/bin/sh', '-c', value.slice(5)], label: value };
    } else {
      throw new UsageError(`-incoming ${value}: use defer, file:PATH, fd:N, exec:COMMAND or a cpr channel (JSON)`);
    }
  }
  if (main > 1) throw new UsageError('-incoming: only one main channel (defer, file:PATH, fd:N or exec:COMMAND)');
  if ((out.file !== undefined || out.stream !== undefined) && out.cprChannel !== undefined)
    throw new UsageError(
      '-incoming: with a cpr channel the state comes over the channel; use defer as the main channel',
    );
  return out;
}

/** `tsvmm cpr-timings QMP-SOCKET`: the last checkpoint/restart's phases of a running tsvmm, as a table. */
async function cprTimingsCommand(argv: string[]): Promise<number> {
  if (argv.length !== 1) throw new UsageError('usage: tsvmm cpr-timings QMP-SOCKET');
  const { queryQmp } = await import('../qmp/query.js');
  const result = (await queryQmp(argv[0], 'x-query-cpr-timings')) as { table: string };
  process.stdout.write(`${result.table}\n`);
  return 0;
}

async function vmstate(argv: string[]): Promise<number> {
  if (argv[0] !== 'dump' || argv.length !== 2) throw new UsageError('usage: tsvmm vmstate dump FILE');
  const { vmstateDump } = await import('./vmstate-dump.js');
  const { descriptorFor } = await import('../../cpr/flows/registry.js');
  process.stdout.write(`${vmstateDump(argv[1], descriptorFor)}\n`);
  return 0;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(command === undefined ? ExitStatus.usage : 0);
    }
    if (command === '--version' || command === '-version') {
      process.stdout.write(`${version()}\n`);
      process.exit(0);
    }
    const status =
      command === 'run'
        ? await run(rest)
        : command === 'vmstate'
          ? await vmstate(rest)
          : command === 'cpr-timings'
            ? await cprTimingsCommand(rest)
            : command === 'initramfs'
              ? (await import('../images/initramfs-cli.js')).initramfsMain(rest)
              : command.startsWith('-')
                ? await run(argv)
                : exitWith(ExitStatus.usage, `unknown command '${command}'\n${USAGE}`);
    process.exit(status);
  } catch (e) {
    // vCPU threads started ahead may still be loading koffi: exiting under them would abort the process.
    await (await import('../vcpu/threads.js')).discardVcpuThreads();
    // Whatever stops the VM from being set up (the command line, /dev/kvm, RAM backend, guest image) is one clear
    // line, and its error class carries the exit status.
    if (e instanceof SetupError) exitWith(e.exitStatus, e.message);
    exitWith(ExitStatus.internalError, `internal error: ${(e as Error)?.stack ?? String(e)}`);
  }
}

/** The command line's entry (the bundle's launcher calls it). */
export function runMain(): Promise<void> {
  return main(process.argv.slice(2));
}

// Run directly (node dist/src/cli/main.js …) rather than through the bundle's launcher.
// (In the bundle every module shares the bundle's URL, hence the file-name check.)
if (
  process.argv[1] &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  import.meta.url.endsWith('/cli/main.js')
)
  void runMain();
