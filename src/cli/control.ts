// The control plane of a running tsvmm: its QMP servers (each -qmp), the migration controller behind the CPR
// commands, and the forwarding of machine events to every QMP client.
import { clockNs, CLOCK_REALTIME } from '../sys/libc.js';
import { QmpServer, type QmpHandlers } from '../qmp/server.js';
import { machineCommands } from '../qmp/machine-commands.js';
import { MigrationController } from '../../cpr/flows/migration.js';
import { processStartMarks } from '../../cpr/flows/reboot.js';
import { transferOut, checkTransferable } from '../../cpr/flows/transfer.js';
import { execOut, checkExecable, checkExecCommand } from '../../cpr/flows/exec.js';
import { keepAcrossExec, forgetAcrossExec, takeInheritedFd } from '../sys/exec-fds.js';
import { parseQmpSpec } from '../qmp/spec.js';
import { nowUs, type PhaseClock } from '../../cpr/flows/timings.js';
import type { Machine } from '../machine/machine.js';

export interface Control {
  readonly migration: MigrationController;
  /** The QMP commands' handlers, for callers in this process (the Node library runs them without a socket). */
  readonly commands: QmpHandlers;
  close(): Promise<void>;
}

/** The new process's first marks: from Node's start to now (the machine has just been created). */
export function startClockAfterCreate(): PhaseClock {
  return processStartMarks(nowUs());
}

export interface StartQmpOptions {
  startPaused: boolean;
  startClock: PhaseClock;
  version: string;
  /** Runs before the QMP sockets open (-incoming file: loads here: a restore must not wait for socket set-up). */
  beforeListen?: (migration: MigrationController) => void;
}

export async function startQmp(machine: Machine, specs: readonly string[], o: StartQmpOptions): Promise<Control> {
  const servers: QmpServer[] = [];
  const migration = new MigrationController(machine, (status) => {
    for (const s of servers) s.emit('MIGRATION', { status });
  });
  const { commands, extraCommands } = machineCommands({
    machine,
    migration,
    startClock: () => o.startClock,
    startPaused: o.startPaused,
    transfer: {
      check: () => checkTransferable(machine, migration),
      outgoing: (path) => transferOut(machine, path, migration),
    },
    exec: {
      checkCommand: checkExecCommand,
      check: () => checkExecable(machine, migration),
      outgoing: (path) =>
        execOut(machine, path, migration, {
          flush: async () => {
            for (const s of servers) await s.flush();
          },
        }),
    },
  });
  machine.onEvent((e) => {
    for (const s of servers) {
      if ('data' in e) s.emit(e.event, e.data as never);
      else s.emit(e.event);
    }
  });
  try {
    o.beforeListen?.(migration);
    for (const spec of specs) {
      // A cpr-exec keeps each QMP listening socket open across the exec, under its path: the new image serves the
      // same socket, so a client that reconnects during the exec waits in its backlog instead of finding no socket.
      const parsed = parseQmpSpec(spec);
      const name = `qmp:${parsed.path}`;
      const server = await QmpServer.listen(parsed, {
        version: o.version.replace(/^tsvmm /, ''),
        commands,
        extraCommands,
        realtimeNs: () => clockNs(CLOCK_REALTIME),
        log: (line) => process.stderr.write(`tsvmm: qmp: ${line}\n`),
        inheritedFd: takeInheritedFd(name),
      });
      servers.push(server);
      if (server.listeningFd !== undefined) keepAcrossExec(name, server.listeningFd);
    }
    // `-qmp …,server` without wait=off: as QEMU, wait for the first client before the guest starts.
    for (const s of servers) if (s.wait) await s.firstClient;
  } catch (e) {
    for (const s of servers) await s.close();
    await machine.finish(0);
    throw e;
  }
  return {
    migration,
    commands,
    async close() {
      for (const s of servers) {
        forgetAcrossExec(`qmp:${s.path}`);
        await s.close();
      }
    },
  };
}
