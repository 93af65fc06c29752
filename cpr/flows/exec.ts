// CPR exec mode (QEMU 10.2's mode "cpr-exec" with its `cpr-exec-command` parameter): the running tsvmm saves the
// guest's state to the migration file, then execve()s the command — normally tsvmm again, with the same options plus
// -incoming — in the same process. The pid stays; guest RAM (a memfd or shared file), the taps and the QMP listening
// sockets stay open across the exec; everything else closes (FD_CLOEXEC). The new image finds the fds it was left
// through a small memfd whose fd number is in TSVMM_CPR_EXEC_STATE (QEMU: QEMU_CPR_EXEC_STATE), checks that every
// one is what the old image described, maps the same RAM and loads the file.
//
//   old image: checks → setup, active → stop, capture, write file (no RAM) → completed → state memfd, fds → execve
//              execve failed: fds as they were, guest resumed, MIGRATION failed (QEMU: completed → failed)
//   new image: TSVMM_CPR_EXEC_STATE → validate → map RAM, build the VM around it → -incoming loads → guest runs
//
// vCPU and I/O threads die with the exec: the guest is parked (state captured) before, as for cpr-save.
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  readSync,
  readlinkSync,
  statSync,
  type BigIntStats,
} from 'node:fs';
import { isAbsolute } from 'node:path';
import type { Machine } from '../../src/machine/machine.js';
import type { MachineRam } from '../../src/memory/config.js';
import { openGuestRamFromRecord } from '../../src/memory/config.js';
import type { BackendRecord } from '../../src/memory/backend.js';
import { close as closeFd, execve, memfdCreate, write, MFD_CLOEXEC } from '../../src/sys/libc.js';
import { errnoName } from '../../src/sys/errno.js';
import { fdsKeptAcrossExec, prepareFdsForExec, setInheritedFds, type NamedFd } from '../../src/sys/exec-fds.js';
import { vfioHandover } from '../../src/machine/vfio-cpr.js';
import { CprError, saveToFile, ramNotKeptMessage, type SaveReport } from './reboot.js';
import { PhaseClock, nowUs, type PhaseMark } from './timings.js';
import type { MigrationController } from './migration.js';

/** The environment variable holding the state memfd's fd number (QEMU's is QEMU_CPR_EXEC_STATE). */
export const CPR_EXEC_ENV = 'TSVMM_CPR_EXEC_STATE';
/** The memfd's name, as /proc/self/fd shows it ("/memfd:tsvmm-cpr-exec-state (deleted)"). */
const STATE_NAME = 'tsvmm-cpr-exec-state';
const MAGIC = 'tsvmm cpr-exec state';
const VERSION = 1;
const MAX_STATE_BYTES = 1 << 20;

/** What the old image leaves the new one, as JSON in the state memfd. */
interface ExecState {
  magic: typeof MAGIC;
  version: typeof VERSION;
  /** The exec keeps the pid: a state written by another process is not ours. */
  pid: number;
  /** Every kept fd, with the device and inode it had, so the new image adopts nothing else. */
  fds: Array<NamedFd & { dev: string; ino: string }>;
  /** The RAM backend (its fd is the one named `ram`). */
  ram: BackendRecord;
  /** The old image's phase marks, up to the exec. */
  marks: PhaseMark[];
}

// ---- parameters ------------------------------------------------------------------------------------------------

/** migrate-set-parameters' check of cpr-exec-command, in QEMU's words for a bad parameter value. */
export function checkExecCommand(command: readonly string[]): void {
  if (command.length === 0) return; // QEMU's default: unset (migrate in mode cpr-exec then refuses)
  if (command.some((a) => a.includes('\0')))
    throw new CprError("Parameter 'cpr-exec-command' expects strings without NUL bytes");
  if (!isAbsolute(command[0]))
    throw new CprError(
      `Parameter 'cpr-exec-command' expects an absolute path as the program (tsvmm execs it without searching PATH), not '${command[0]}'`,
    );
}

/** Throws a CprError when this machine cannot be exec'd into a new image now (checked before `migrate` returns). */
export function checkExecable(machine: Machine, migration: MigrationController): void {
  const command = migration.cprExecCommand;
  if (command.length === 0) throw new CprError('cpr-exec mode requires setting cpr-exec-command');
  if (machine.runState === 'postmigrate') throw new CprError('the VM state was already handed over');
  if (migration.active) throw new CprError('a migration is already in progress');
  const parts = machine.parts();
  try {
    vfioHandover()?.check();
  } catch (e) {
    throw new CprError(`cpr-exec: ${(e as Error).message}`);
  }
  if (!parts.ram.backend.transferable) throw new CprError(ramNotKeptMessage(parts));
  // The obvious exec failures are refused before the guest stops (execve would report them only after the save).
  try {
    if (!statSync(command[0]).isFile()) throw new Error('not a regular file');
    accessSync(command[0], constants.X_OK);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new CprError(`cpr-exec-command: cannot execute '${command[0]}': ${why}`);
  }
}

// ---- old image ---------------------------------------------------------------------------------------------------

export interface ExecHooks {
  /** Everything the old image still owes its clients (the QMP MIGRATION completed event) goes out. */
  flush(): Promise<void>;
}

/**
 * Saves the guest to `path` and execs `migration.cprExecCommand` in this process. Returns only when the exec
 * failed — the guest then runs on here (if it ran before) and the migration is `failed` — by throwing a CprError.
 */
export async function execOut(
  machine: Machine,
  path: string,
  migration: MigrationController,
  hooks: ExecHooks,
): Promise<never> {
  checkExecable(machine, migration);
  const command = [...migration.cprExecCommand];
  migration.beginTransfer();
  let report: SaveReport;
  try {
    report = await saveToFile(machine, path, 'kept', migration.scratch, { keepStopped: true, vfioKept: true });
  } catch (e) {
    // saveToFile put the guest back as it was.
    migration.recordTransfer([], false, (e as Error).message);
    throw e instanceof CprError ? e : new CprError(`cpr-exec failed: ${(e as Error).message}`);
  }
  migration.recordSaved(report.marks, report.bytes);
  const clock = new PhaseClock('old');
  let error: string;
  try {
    await clock.timeAsync('flush', () => hooks.flush());
    if (machine.ended) throw new CprError('the VM was ended before the exec');
    error = execImage(machine, command, report.marks, clock);
  } catch (e) {
    error = (e as Error).message;
  }
  // The exec did not happen: nothing of the process changed, the guest goes on here.
  if (!machine.ended) {
    machine.setPausedState(report.runState === 'suspended' ? 'suspended' : 'paused');
    if (report.runState === 'running') machine.resume();
  }
  migration.recordTransfer([...report.marks, ...clock.marks], false, error);
  throw new CprError(error);
}

/**
 * Writes the state memfd, sets the fd table and execs. Returns the error text if execve returned. `saved` are the
 * save's marks; `clock`'s (the flush, the DMA addresses' invalidation) follow them into the new image.
 */
function execImage(machine: Machine, command: string[], saved: PhaseMark[], clock: PhaseClock): string {
  const parts = machine.parts();
  const fds: NamedFd[] = [
    { name: 'ram', fd: parts.ram.backend.fd },
    ...parts.taps.map((t) => ({ name: `tap:${t.ifname}`, fd: t.fd })),
    ...fdsKeptAcrossExec(),
  ];
  const kept = fds.map(({ name, fd }) => {
    const st = fstatSync(fd, { bigint: true });
    return { name, fd, dev: String(st.dev), ino: String(st.ino) };
  });
  const stateFd = memfdCreate(STATE_NAME, MFD_CLOEXEC);
  try {
    const env = Object.entries(process.env)
      .filter(([k, v]) => k !== CPR_EXEC_ENV && v !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    env.push(`${CPR_EXEC_ENV}=${stateFd}`);
    const table = prepareFdsForExec([...fds.map((f) => f.fd), stateFd]);
    // Passed-through functions: the IOMMU keeps their DMA mappings across the exec, this image's addresses go
    // (the new image gives its own before it restores the devices). Before the state memfd is written, so that
    // its marks — the new image's x-query-cpr-timings — have this phase, as cpr-transfer's state message does.
    const vfio = vfioHandover();
    // The exec did not happen: this image keeps the guest, with its DMA addresses and fd flags as before.
    const undo = () => {
      try {
        vfio?.revalidate();
      } finally {
        table.restore();
      }
    };
    let execUs: number;
    try {
      if (vfio) clock.time('vfio-invalidate-vaddr', () => vfio.invalidate());
      execUs = nowUs();
      const state: ExecState = {
        magic: MAGIC,
        version: VERSION,
        pid: process.pid,
        fds: kept,
        ram: parts.ram.backend.record(),
        marks: [...saved, ...clock.marks, { phase: 'exec', process: 'old', startUs: execUs, endUs: execUs }],
      };
      const bytes = Buffer.from(JSON.stringify(state));
      for (let at = 0; at < bytes.length; ) {
        const n = write(stateFd, bytes.subarray(at));
        if (n > 0) at += n;
      }
    } catch (e) {
      undo();
      throw e;
    }
    const errno = execve(command[0], command, env);
    undo();
    clock.mark('exec-failed', execUs, nowUs());
    return `execve ${command[0]} failed: ${errnoName(errno)} (errno ${errno})`;
  } finally {
    closeFd(stateFd);
  }
}

// ---- new image ---------------------------------------------------------------------------------------------------

export interface ExecInheritance {
  /** The old image's RAM, mapped here. */
  readonly ram: MachineRam;
  /** Its taps, by interface name. */
  readonly taps: ReadonlyMap<string, number>;
  /** Its phase marks up to the exec. */
  readonly marks: PhaseMark[];
}

/**
 * In a tsvmm started by a cpr-exec (TSVMM_CPR_EXEC_STATE set): checks the state memfd and every fd it names, then
 * maps the RAM and hands the other fds to the registry (src/sys/exec-fds.ts). Null when the variable is not set.
 * Anything wrong is a CprError naming it, before any fd is closed or used: a stray or planted value is not followed.
 */
export function execIn(clock: PhaseClock): ExecInheritance | null {
  const value = process.env[CPR_EXEC_ENV];
  if (value === undefined) return null;
  delete process.env[CPR_EXEC_ENV]; // not for the processes this one starts
  const shown = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  const bad = (why: string) =>
    new CprError(
      `cpr-exec: ${CPR_EXEC_ENV}=${shown} ${why}; this tsvmm was not started by a cpr-exec (unset ${CPR_EXEC_ENV} to start normally)`,
    );
  if (!/^[0-9]{1,7}$/.test(value)) throw bad('is not a file descriptor number');
  const stateFd = Number(value);
  if (stateFd <= 2) throw bad('names stdin, stdout or stderr');
  let link: string;
  try {
    link = readlinkSync(`/proc/self/fd/${stateFd}`);
  } catch {
    throw bad(`names fd ${stateFd}, which is not open`);
  }
  if (!link.startsWith(`/memfd:${STATE_NAME} `) && link !== `/memfd:${STATE_NAME}`)
    throw bad(`names fd ${stateFd}, which is ${link}, not a cpr-exec state memfd`);
  const size = fstatSync(stateFd).size;
  if (size === 0 || size > MAX_STATE_BYTES) throw bad(`names a state memfd of ${size} bytes`);
  const bytes = Buffer.alloc(size);
  let read = 0;
  while (read < size) {
    const n = readSync(stateFd, bytes, read, size - read, read);
    if (n <= 0) break;
    read += n;
  }
  let state: ExecState;
  try {
    state = JSON.parse(bytes.subarray(0, read).toString('utf8'));
  } catch {
    throw bad('names a state memfd that does not hold JSON');
  }
  checkState(state, bad);
  // Every fd is what the old image described: open, same device and inode.
  for (const f of state.fds) {
    let st: BigIntStats;
    try {
      st = fstatSync(f.fd, { bigint: true });
    } catch {
      throw bad(`names fd ${f.fd} (${f.name}), which is not open`);
    }
    if (String(st.dev) !== f.dev || String(st.ino) !== f.ino)
      throw bad(`names fd ${f.fd} (${f.name}), which is not the file the old image kept`);
  }
  // Checked: from here this image owns the fds.
  closeSync(stateFd);
  const byName = new Map(state.fds.map((f) => [f.name, f.fd]));
  const ramFd = byName.get('ram')!;
  const taps = new Map<string, number>();
  const rest: NamedFd[] = [];
  for (const f of state.fds) {
    if (f.name === 'ram') continue;
    if (f.name.startsWith('tap:')) taps.set(f.name.slice(4), f.fd);
    else rest.push({ name: f.name, fd: f.fd });
  }
  const ram = clock.time('map-ram', () => openGuestRamFromRecord(state.ram, { fd: ramFd }));
  setInheritedFds(rest);
  return { ram, taps, marks: state.marks };
}

function checkState(state: ExecState, bad: (why: string) => CprError): void {
  const o = state as unknown as Record<string, unknown>;
  if (o === null || typeof o !== 'object' || o.magic !== MAGIC) throw bad('names a memfd without a cpr-exec state');
  if (o.version !== VERSION) throw bad(`names a cpr-exec state of version ${o.version}, this tsvmm reads ${VERSION}`);
  if (o.pid !== process.pid)
    throw bad(`names a cpr-exec state written by process ${o.pid}, this is ${process.pid} (an exec keeps the pid)`);
  const fds = o.fds;
  if (
    !Array.isArray(fds) ||
    !fds.every(
      (f) =>
        f !== null &&
        typeof f === 'object' &&
        typeof f.name === 'string' &&
        Number.isInteger(f.fd) &&
        f.fd > 2 &&
        typeof f.dev === 'string' &&
        typeof f.ino === 'string',
    )
  )
    throw bad('names a cpr-exec state whose fd list is malformed');
  const names = new Set(fds.map((f) => f.name));
  if (names.size !== fds.length || !names.has('ram')) throw bad('names a cpr-exec state without its RAM fd');
  if (o.ram === null || typeof o.ram !== 'object') throw bad('names a cpr-exec state without its RAM record');
  if (!Array.isArray(o.marks)) throw bad('names a cpr-exec state without its phase marks');
}
