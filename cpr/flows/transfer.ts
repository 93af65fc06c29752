// CPR transfer mode (QEMU's mode "cpr-transfer" with its `cpr` channel). The new tsvmm is started first, listening
// on the cpr channel (a 0600 unix socket). The old one, on `migrate`:
//   1. sends its RAM descriptor (memfd or file fd, SCM_RIGHTS) and backend record while the guest still runs;
//   2. the new process maps that RAM, builds its whole VM around it (vCPU threads parked, code paths warmed) and
//      answers `ready` — all of this outside the guest's pause;
//   3. the old process stops its vCPUs, captures the state and sends it; the new one checks everything, restores
//      and resumes the guest, and answers `resumed` with its phase marks.
// The guest's pause is therefore steps 3 only: no process start-up, no RAM mapping, no file I/O.
import type { Machine } from '../../src/machine/machine.js';
import type { MachineRam } from '../../src/memory/config.js';
import { attachGuestRam } from '../../src/memory/config.js';
import { openBackendFromRecord } from '../../src/memory/backends.js';
import type { BackendRecord, RamBackend } from '../../src/memory/backend.js';
import { closeAll } from '../../src/sys/socket.js';
import { collectGarbage } from '../../src/sys/gc.js';
import { CprChannel } from './channel.js';
import {
  captureSections,
  prepareRestore,
  warmUpCapture,
  warmUpRestore,
  checkConfigSection,
  configSection,
  SnapshotScratch,
  WARM_UP_ROUNDS,
} from './snapshot.js';
import { encodeSections, decodeSections } from '../file/sections-codec.js';
import { CprError } from './reboot.js';
import { vfioHandover } from '../../src/machine/vfio-cpr.js';
import { DRIVE_FD_PREFIX } from '../../src/machine/virtio-plan.js';
import { applyRestore } from './apply-restore.js';
import { undoPoint } from './undo-point.js';
import { closeUnclaimedInheritedFds, fdsKeptAcrossExec, setInheritedFds } from '../../src/sys/exec-fds.js';
import { PhaseClock, nowUs, type PhaseMark } from './timings.js';
import type { MigrationController } from './migration.js';

const PROTOCOL = 1;
/**
 * How long the new process spins for the state before it sleeps in poll. Measured on the 2-core host: spinning
 * through the old process's whole stop-and-capture (50 ms) made the pause longer (7-8 ms: the spinner takes a core
 * the old process needs), not spinning at all 6-7 ms, a short spin ~5 ms.
 */
const STATE_SPIN_MICROS = Number(process.env.TSVMM_CPR_SPIN_US ?? 200);
/** How long each side waits for the other's next step inside the hand-over (milliseconds of work on either side). */
const STEP_TIMEOUT_MS = 60_000;
/**
 * How long the old process waits for `ready`: the new one checks the configuration and warms its restore path up
 * first, which a loaded host slows a lot (a starved nested-KVM rig took over 60 s). The guest runs meanwhile, so a
 * long wait costs nothing; a new process that dies closes the socket and ends the wait at once.
 */
const READY_TIMEOUT_MS = 10 * 60_000;

// ---- old process -------------------------------------------------------------------------------------------

/**
 * Hands the running guest to the tsvmm listening on `channelPath`. Resolves when the new process has resumed the
 * guest (the VM here is then `postmigrate`); on any failure before the state was sent, the guest runs on here.
 */
/** Throws a CprError when this machine cannot be handed over (checked before `migrate` returns). */
export function checkTransferable(machine: Machine, migration: MigrationController): void {
  try {
    vfioHandover()?.check();
  } catch (e) {
    throw new CprError(`cpr-transfer: ${(e as Error).message}`);
  }
  const backend = machine.parts().ram.backend;
  if (backend.fd < 0 || !backend.record().share) {
    throw new CprError(
      `cpr-transfer hands guest RAM over as a file descriptor: use -object memory-backend-memfd,share=on or memory-backend-file,share=on (this VM's RAM is ${backend.kind}${backend.record().share ? '' : ', private'})`,
    );
  }
  if (machine.runState === 'postmigrate') throw new CprError('the VM state was already handed over');
  if (migration.active) throw new CprError('a migration is already in progress');
}

export async function transferOut(
  machine: Machine,
  channelPath: string,
  migration: MigrationController,
  scratch = new SnapshotScratch(),
): Promise<void> {
  checkTransferable(machine, migration);
  const parts = machine.parts();
  const backend = parts.ram.backend;
  migration.beginTransfer();
  const clock = new PhaseClock('old');
  clock.time('warm-up', () => {
    for (let i = 0; i < WARM_UP_ROUNDS; i++) warmUpCapture(parts, scratch, machine.powerOnStates());
  });
  let channel: CprChannel | null = null;
  let stateSent = false;
  const wasRunning = machine.runState === 'running';
  // Passed-through functions: their container, group and device fds go with the RAM; their DMA stays mapped.
  const vfio = vfioHandover();
  const vfioFds = vfio?.fds ?? [];
  // The disk images go too: their fds carry this process's image locks, which a fresh open there would collide with.
  const driveFds = fdsKeptAcrossExec().filter((f) => f.name.startsWith(DRIVE_FD_PREFIX));
  try {
    channel = clock.time('connect', () => CprChannel.connect(channelPath));
    // The RAM and the configuration go first, while the guest runs: the new tsvmm maps the RAM and checks that its
    // VM matches before anyone stops anything.
    // A tap can be attached by one fd only: the new process gets this one's (the guest's frames keep flowing to
    // whichever process runs the guest).
    clock.time('send-ram', () =>
      channel!.send({
        type: 'ram',
        header: {
          protocol: PROTOCOL,
          record: backend.record(),
          taps: parts.taps.map((t) => t.ifname),
          vfio: vfioFds.map((f) => f.name),
          drives: driveFds.map((f) => f.name),
        },
        fds: [backend.fd, ...parts.taps.map((t) => t.fd), ...vfioFds.map((f) => f.fd), ...driveFds.map((f) => f.fd)],
        payload: encodeSections([configSection(parts, scratch)]),
      }),
    );
    const ready = await channel.receive(READY_TIMEOUT_MS);
    if (ready.type !== 'ready')
      throw new CprError(
        `the new tsvmm refused the hand-over: ${(ready.header as { error?: string } | undefined)?.error ?? ready.type}`,
      );

    clock.time('gc', collectGarbage);
    // The pause starts here.
    const runState = wasRunning ? 'running' : machine.runState === 'suspended' ? 'suspended' : 'paused';
    await clock.timeAsync('stop-vcpus', () => machine.pause('finish-migrate', { sync: true, capture: true }));
    const sections = captureSections(parts, runState, scratch, clock);
    const payload = clock.time('encode', () => encodeSections(sections));
    // Just before the hand-over: the IOMMU keeps every mapping (the device's DMA goes on), this process's addresses
    // are forgotten; the new process gives them its own before it restores the devices.
    if (vfio) clock.time('vfio-invalidate-vaddr', () => vfio.invalidate());
    clock.time('send-state', () => channel!.send({ type: 'state', header: { marks: clock.marks }, payload }));
    stateSent = true;
    const done = channel.receiveSync(STEP_TIMEOUT_MS);
    const newMarks = (done.header as { marks?: PhaseMark[] } | undefined)?.marks ?? [];
    if (done.type !== 'resumed')
      throw new CprError(
        `the new tsvmm could not restore the guest: ${(done.header as { error?: string } | undefined)?.error ?? done.type}`,
      );
    if (vfio) vfio.handedOver = true;
    machine.setPausedState('postmigrate');
    migration.recordTransfer([...clock.marks, ...newMarks], true);
  } catch (e) {
    const message = (e as Error).message;
    // The new process did not take the guest (it said so, or it never got the state): the guest goes on here. If
    // the state was sent and the answer was lost, the guest may be running there: keep it stopped here.
    const state = machine.runState as string;
    if (state === 'finish-migrate' && (!stateSent || message.includes('could not restore'))) {
      try {
        vfio?.revalidate();
      } catch (r) {
        process.stderr.write(`tsvmm: cpr-transfer: DMA addresses not given back: ${(r as Error).message}\n`);
      }
      machine.setPausedState('paused');
      if (wasRunning) machine.resume();
    }
    migration.recordTransfer(clock.marks, false, message);
    throw e instanceof CprError ? e : new CprError(`cpr-transfer failed: ${message}`);
  } finally {
    channel?.close();
  }
}

// ---- new process -------------------------------------------------------------------------------------------

export interface IncomingTransfer {
  /** The old process's RAM, mapped here. */
  readonly ram: MachineRam;
  /** The old process's taps, by interface name (the new machine takes them over). */
  readonly taps: ReadonlyMap<string, number>;
  /** Finish the transfer once the machine exists: answer ready, receive the state, restore, resume. */
  complete(machine: Machine, stayPaused: boolean): Promise<PhaseMark[]>;
}

/**
 * Waits on the cpr channel for the old tsvmm and maps the RAM it hands over. The caller then creates its machine
 * around `ram` and calls `complete`.
 */
export async function transferIn(
  channelPath: string,
  clock: PhaseClock,
  timeoutMs = 24 * 3600_000,
): Promise<IncomingTransfer> {
  const channel = await CprChannel.listen(channelPath, { timeoutMs });
  let ram: MachineRam;
  let config: Uint8Array;
  const taps = new Map<string, number>();
  try {
    const first = await channel.receive(STEP_TIMEOUT_MS);
    const header = first.header as
      | { protocol?: number; record?: BackendRecord; taps?: unknown; vfio?: unknown; drives?: unknown }
      | undefined;
    const names = (v: unknown) => (Array.isArray(v) && v.every((t) => typeof t === 'string') ? (v as string[]) : null);
    const tapNames = names(header?.taps);
    const vfioNames = header?.vfio === undefined ? [] : names(header.vfio);
    const driveNames = header?.drives === undefined ? [] : names(header.drives);
    if (
      first.type !== 'ram' ||
      header?.protocol !== PROTOCOL ||
      !header.record ||
      !tapNames ||
      !vfioNames ||
      !driveNames?.every((name) => name.startsWith(DRIVE_FD_PREFIX)) ||
      first.fds.length !== 1 + tapNames.length + vfioNames.length + driveNames.length
    ) {
      closeAll(first.fds);
      throw new CprError(`cpr channel: expected the RAM hand-over (protocol ${PROTOCOL}), got '${first.type}'`);
    }
    // Until the RAM is mapped every fd received is this function's to close on failure: a refused hand-over leaves
    // the process with the fds it had (the backend takes the RAM fd only once it is created, see openBackendFromRecord).
    let backend: RamBackend;
    try {
      if (header.record.kind === 'anon')
        throw new CprError('cpr channel: the RAM record is anonymous memory, which no file descriptor carries');
      backend = clock.time('map-ram', () => openBackendFromRecord(header.record!, { fd: first.fds[0] }));
    } catch (e) {
      closeAll(first.fds);
      throw e;
    }
    // attachGuestRam closes the backend (and its fd) itself if it fails.
    ram = (() => {
      try {
        return attachGuestRam(backend);
      } catch (e) {
        closeAll(first.fds.slice(1));
        throw e;
      }
    })();
    for (const [i, name] of tapNames.entries()) taps.set(name, first.fds[1 + i]);
    // The VFIO container, groups and devices: the machine's plan adopts them (src/machine/vfio-plan.ts).
    setInheritedFds(vfioNames.map((name, i) => ({ name, fd: first.fds[1 + tapNames.length + i] })));
    // The disk images: the machine's virtio plan adopts them with their locks (src/machine/virtio-plan.ts).
    const drivesAt = 1 + tapNames.length + vfioNames.length;
    setInheritedFds(driveNames.map((name, i) => ({ name, fd: first.fds[drivesAt + i] })));
    config = first.payload ?? new Uint8Array(0);
  } catch (e) {
    channel.close();
    throw e;
  }
  return {
    ram,
    taps,
    async complete(machine, stayPaused) {
      try {
        const parts = machine.parts();
        const scratch = new SnapshotScratch();
        clock.time('check-config', () => {
          const [saved] = decodeSections(config);
          if (saved?.kind !== 'config') throw new CprError('cpr channel: the hand-over carries no configuration');
          checkConfigSection(parts, saved, scratch);
        });
        clock.time('warm-up', () => {
          for (let i = 0; i < WARM_UP_ROUNDS; i++) warmUpRestore(parts, scratch, new PhaseClock('new'));
        });
        // What a restore that KVM refuses part-way goes back to, read now rather than inside the guest's pause (the
        // VM is parked and has not run: its state stays this until the restore).
        const undo = clock.time('undo-point', () => undoPoint(parts));
        clock.time('gc', collectGarbage);
        channel.send({ type: 'ready' });
        // Blocking, spinning first: the state follows within a few milliseconds, nothing else should run before it is
        // applied, and a sleeping thread's wake-up would add to the guest's pause.
        const state = channel.receiveSync(STEP_TIMEOUT_MS, STATE_SPIN_MICROS);
        // The state carries no fds; any that came with it are the old process's mistake, not this one's to keep.
        closeAll(state.fds);
        if (state.type !== 'state' || !state.payload)
          throw new CprError(`cpr channel: expected the guest state, got '${state.type}'`);
        const oldMarks = (state.header as { marks?: PhaseMark[] } | undefined)?.marks ?? [];
        clock.mark('state-received', nowUs());
        const sections = clock.time('decode', () => decodeSections(state.payload!));
        const prepared = clock.time('check-state', () =>
          prepareRestore(parts, sections, scratch, { configChecked: true, undo }),
        );
        applyRestore(machine, prepared, clock, stayPaused);
        channel.send({ type: 'resumed', header: { marks: clock.marks } });
        return [...oldMarks, ...clock.marks];
      } catch (e) {
        // Passed-through functions' fds the machine did not adopt (it has no such device) go with the refusal.
        closeUnclaimedInheritedFds();
        try {
          channel.send({ type: 'failed', header: { error: (e as Error).message } });
        } catch {
          /* the old process is gone */
        }
        throw e;
      } finally {
        channel.close();
      }
    },
  };
}
