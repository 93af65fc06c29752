// The machine's QMP commands: run state, reset/power, CPU and VM queries, and checkpoint/restart in both spellings
// (the seed's cpr-save/cpr-load and QEMU's migrate-set-parameters mode=cpr-reboot|cpr-transfer|cpr-exec + migrate).
// Thin: the work is in src/machine and cpr/.
import { openSync, writeSync, closeSync, constants as fsConstants } from 'node:fs';
import { QmpError, defineCommand, type QmpHandlers, type ExtraCommand } from './server.js';
import type { RunState as QmpRunState, MigrationCapabilityStatus, MigrationParameters } from './schema.js';
import type { Machine, RunState } from '../machine/machine.js';
import type { MigrationController } from '../../cpr/flows/migration.js';
import { channelUri, describeUri, parseMigrationUri, type MigrationUri } from '../../cpr/flows/migration-uri.js';
import type { StreamEnd } from '../../cpr/flows/stream-transport.js';
import type { MigrationChannel } from './schema.js';
import { CprError } from '../../cpr/flows/reboot.js';
import { CheckpointError } from '../../cpr/file/checkpoint-file.js';
import { formatTimings, pauseUs, type PhaseMark } from '../../cpr/flows/timings.js';
import type { PhaseClock } from '../../cpr/flows/timings.js';
import { ExitStatus } from '../util/exit-status.js';
import { queryPci } from './pci-query.js';

export interface MachineCommandsOptions {
  machine: Machine;
  migration: MigrationController;
  /** The new process's start-up marks, for the phases of an incoming load. */
  startClock: () => PhaseClock;
  /** Started with -S: an incoming migration leaves the guest paused, as QEMU does. */
  startPaused: boolean;
  /** Transfer-mode handlers (cpr/flows/transfer.ts), when available. */
  transfer?: {
    /** Throws at once when the VM cannot be handed over. */
    check(): void;
    outgoing(cprChannelPath: string): Promise<void>;
  };
  /** Exec-mode handlers (cpr/flows/exec.ts), when available. */
  exec?: {
    /** Throws at once when cpr-exec-command is not acceptable (migrate-set-parameters). */
    checkCommand(command: readonly string[]): void;
    /** Throws at once when the VM cannot be exec'd into a new image now (migrate). */
    check(): void;
    /** Saves to the file and execs; settles only if the exec failed. */
    outgoing(path: string): Promise<void>;
  };
}

/** A CPR refusal or a bad checkpoint is the client's problem: a GenericError with the one-line reason. */
async function asQmp<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof CprError || e instanceof CheckpointError) throw new QmpError('GenericError', e.message);
    throw e;
  }
}

function asQmpSync(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof CprError) throw new QmpError('GenericError', e.message);
    throw e;
  }
}

const RUN_STATE: Record<RunState, QmpRunState> = {
  suspended: 'suspended',
  prelaunch: 'prelaunch',
  running: 'running',
  paused: 'paused',
  inmigrate: 'inmigrate',
  'finish-migrate': 'finish-migrate',
  postmigrate: 'postmigrate',
  shutdown: 'shutdown',
  'internal-error': 'internal-error',
  'guest-panicked': 'guest-panicked',
};

export function machineCommands(o: MachineCommandsOptions): {
  commands: QmpHandlers;
  extraCommands: Record<string, ExtraCommand>;
} {
  const { machine, migration } = o;
  const checkMode = (mode: string) => {
    if (mode !== 'reboot')
      throw new QmpError(
        'GenericError',
        `cpr mode '${mode}' is not supported: use 'reboot' (or migrate with mode cpr-transfer)`,
      );
  };
  const commands: QmpHandlers = {
    'query-status': () => ({ running: machine.running, status: RUN_STATE[machine.runState] }),
    stop: async () => {
      await machine.pause();
    },
    cont: () => {
      switch (machine.runState) {
        case 'inmigrate':
          throw new QmpError('GenericError', 'Guest can not be started: the incoming migration has not completed');
        case 'postmigrate':
          throw new QmpError(
            'GenericError',
            'the VM state was saved for a restart elsewhere; resuming it here would run the same guest twice',
          );
        case 'suspended':
          throw new QmpError('GenericError', 'the guest is suspended: use system_wakeup');
        case 'finish-migrate':
          throw new QmpError('GenericError', 'the VM state is being saved (a migration is finishing)');
        case 'shutdown':
        case 'guest-panicked':
          // QEMU's words: the guest must be reset before it can run again.
          throw new QmpError('GenericError', 'Resetting the Virtual Machine is required');
        case 'internal-error':
          throw new QmpError('GenericError', `the VM cannot run: it is in state ${machine.runState}`);
        default:
          machine.resume();
      }
    },
    quit: (_args, ctx) =>
      ctx.afterReply(() => {
        void machine.finish(ExitStatus.ok, { event: { guest: false, reason: 'host-qmp-quit' } });
      }),
    system_reset: async () => {
      await machine.reset('QMP system_reset', false);
    },
    system_powerdown: () => {
      machine.powerdown();
    },
    system_wakeup: () => {
      if (machine.runState !== 'suspended')
        throw new QmpError('GenericError', 'Unable to wake up: guest is not in suspended state');
      machine.wakeup('user');
    },
    'query-cpus-fast': () =>
      machine.vcpuThreadIds().map((tid, i) => ({
        'cpu-index': i,
        'qom-path': `/machine/unattached/device[${i}]`,
        'thread-id': tid,
        props: { 'socket-id': 0, 'core-id': i, 'thread-id': 0 },
        target: 'x86_64' as const,
      })),
    'query-name': () => (machine.config.name ? { name: machine.config.name } : {}),
    'query-kvm': () => ({ enabled: true, present: true }),
    'query-pci': () => machine.readPciBus(queryPci) ?? [],
    // QEMU's pmemsave: guest-physical memory to a file (tests hash guest RAM with it). Only RAM can be read.
    pmemsave: ({ val, size, filename }) => {
      const gpa = Number(val);
      const length = Number(size);
      if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || !machine.guestMemory.contains(gpa, length)) {
        throw new QmpError(
          'GenericError',
          `Invalid addr 0x${BigInt(val).toString(16)}/size ${size} specified: not inside one RAM region`,
        );
      }
      // Truncated as QEMU does, but never through a planted symlink, and readable by this user only (guest memory).
      const fd = openSync(
        filename,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW,
        0o600,
      );
      try {
        const chunk = 16 << 20;
        for (let at = 0; at < length; at += chunk)
          writeSync(fd, machine.guestMemory.slice(gpa + at, Math.min(chunk, length - at)));
      } finally {
        closeSync(fd);
      }
    },

    // ---- the seed's spelling --------------------------------------------------------------------------------
    'cpr-save': ({ filename, mode }) =>
      asQmp(async () => {
        checkMode(mode);
        await migration.startOutgoing(filename, 'skip-shared');
      }),
    'cpr-load': ({ filename, mode }) =>
      asQmp(() => {
        checkMode(mode);
        migration.incomingFromFile(filename, o.startClock(), false);
      }),

    // ---- QEMU's spelling ------------------------------------------------------------------------------------
    'migrate-set-parameters': (params) => {
      if (migration.active)
        throw new QmpError('GenericError', 'parameters cannot be changed while a migration is in progress');
      // Checked as a whole first: a refused call changes nothing, as in QEMU.
      const command = params['cpr-exec-command'];
      if (command !== undefined) {
        if (!o.exec) throw new QmpError('GenericError', 'cpr-exec is not available in this tsvmm');
        asQmpSync(() => o.exec!.checkCommand(command));
      }
      for (const [key, value] of Object.entries(params)) {
        if (key === 'mode') migration.mode = value as typeof migration.mode;
        else if (key === 'cpr-exec-command') migration.cprExecCommand = [...(value as string[])];
        else migration.parameters[key] = value;
      }
    },
    'migrate-set-capabilities': ({ capabilities }) => {
      if (migration.active)
        throw new QmpError('GenericError', 'capabilities cannot be changed while a migration is in progress');
      for (const c of capabilities) migration.capabilities.set(c.capability, c.state);
    },
    'query-migrate-parameters': () =>
      ({
        ...migration.parameters,
        mode: migration.mode,
        'cpr-exec-command': [...migration.cprExecCommand],
      }) as MigrationParameters,
    'query-migrate-capabilities': () =>
      [...migration.capabilities].map(([capability, state]) => ({ capability, state }) as MigrationCapabilityStatus),
    migrate: ({ uri, channels }, ctx) =>
      asQmp(() => {
        if ((uri === undefined) === (channels === undefined))
          throw new CprError('migrate needs exactly one of uri and channels');
        if (migration.mode === 'cpr-transfer') {
          const cpr = channels?.find((c) => c['channel-type'] === 'cpr');
          if (cpr?.addr.transport !== 'socket' || cpr.addr.type !== 'unix') {
            throw new CprError(
              'mode cpr-transfer needs a cpr channel on a unix socket: channels: [{"channel-type": "main", …}, {"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": …}}]',
            );
          }
          if (!o.transfer) throw new CprError('cpr-transfer is not available in this tsvmm');
          const path = (cpr.addr as { path: string }).path;
          o.transfer.check();
          void o.transfer.outgoing(path).catch(() => {
            /* reported through query-migrate */
          });
          return;
        }
        const target = mainTarget('migrate', uri, channels);
        if (migration.mode === 'cpr-exec') {
          if (target.transport !== 'file')
            throw new CprError('mode cpr-exec needs a file: URI: the new image reads the state from that file');
          if (!o.exec) throw new CprError('cpr-exec is not available in this tsvmm');
          o.exec.check();
          // As QEMU: migrate returns at once; the save, the exec (or its failure) follow.
          void o.exec.outgoing(target.path).catch(() => {
            /* reported through query-migrate and MIGRATION failed */
          });
          return;
        }
        // Like QEMU, migrate returns at once; the outcome is in query-migrate and the MIGRATION events.
        const started =
          target.transport === 'file'
            ? migration.startOutgoing(target.path)
            : migration.startOutgoingStream(streamEnd(target, ctx.takeNamedFd));
        void started.catch(() => {
          /* reported through query-migrate */
        });
      }),
    'migrate-incoming': ({ uri, channels }, ctx) =>
      asQmp(() => {
        if (machine.runState !== 'inmigrate') throw new CprError("'-incoming' was not specified on the command line");
        const target = mainTarget('migrate-incoming', uri, channels);
        if (target.transport === 'file') {
          migration.incomingFromFile(target.path, o.startClock(), o.startPaused);
          return;
        }
        // A stream may take its time (a command, a slow peer): as QEMU's, migrate-incoming returns once the load
        // has started, and query-migrate and the MIGRATION events tell the rest — QMP stays free meanwhile.
        void migration
          .incomingFromStream(streamEnd(target, ctx.takeNamedFd), o.startClock(), o.startPaused)
          .catch(() => {
            /* reported through query-migrate */
          });
      }),
    migrate_cancel: () => {
      // An fd:/exec: stream is given up at once (the guest runs on); file saves and loads are not cancellable
      // half-way, and with none running there is nothing to do.
      migration.cancel();
    },
    'query-migrate': () => migration.report(),
  };

  const extraCommands = {
    /** tsvmm: the phase timings of the last checkpoint/restart, as marks and as a table. */
    'x-query-cpr-timings': defineCommand({}, () => cprTimings(migration.marks)),
  };
  return { commands, extraCommands };
}

/** The main stream of migrate / migrate-incoming: a URI, or the address of the `main` channel. */
function mainTarget(command: string, uri: string | undefined, channels: MigrationChannel[] | undefined): MigrationUri {
  if ((uri === undefined) === (channels === undefined))
    throw new CprError(`${command} needs exactly one of uri and channels`);
  if (uri !== undefined) return parseMigrationUri(uri);
  const main = channels?.find((c) => c['channel-type'] === 'main');
  if (!main) throw new CprError(`${command}: no main channel`);
  return channelUri(main.addr as Parameters<typeof channelUri>[0]);
}

/**
 * An fd: or exec: target as the stream to use. Over QMP, fd: takes a name given to getfd (the fd is handed over
 * and closed when the migration ends); a number is refused: it would be any fd of this process.
 */
function streamEnd(
  target: Exclude<MigrationUri, { transport: 'file' }>,
  takeNamedFd: (name: string) => number | undefined,
): StreamEnd {
  if (target.transport === 'exec') return { kind: 'exec', argv: target.argv, label: describeUri(target) };
  if (/^[0-9]/.test(target.fd))
    throw new CprError(`fd:${target.fd}: over QMP, fd: takes the name of a descriptor passed with getfd`);
  const fd = takeNamedFd(target.fd);
  if (fd === undefined) throw new CprError(`File descriptor named '${target.fd}' has not been found`);
  return { kind: 'fd', fd, label: `fd:${target.fd}` };
}

export function cprTimings(marks: readonly PhaseMark[]): {
  marks: readonly PhaseMark[];
  'pause-us': number | null;
  table: string;
} {
  return { marks, 'pause-us': pauseUs(marks), table: formatTimings(marks) };
}
