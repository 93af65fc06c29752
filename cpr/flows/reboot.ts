// CPR reboot mode: save a machine's state to an ordinary file and load it into a new tsvmm process, with guest RAM
// left where it is (a persistent shared backend: a file on /dev/shm, a DAX device). RAM that would not survive the
// process is written into the checkpoint instead (a full snapshot), except a memfd, whose contents die with the
// process while looking shared — that is refused with the way out named.
import { performance } from 'node:perf_hooks';
import type { Machine, MachineParts } from '../../src/machine/machine.js';
import { applyRestore } from './apply-restore.js';
import { dirname, join } from 'node:path';
import { syncImages } from './sync-images.js';
import { CprError } from './cpr-error.js';
import { withPrivateDir } from '../../src/sys/private-dir.js';
import {
  writeCheckpoint,
  readCheckpoint,
  openRam,
  type Checkpoint,
  jsonSection,
  parseJsonSection,
  printable,
  CheckpointError,
  type RamSource,
  type RamIo,
  type WriteTimings,
  type Section,
} from '../file/checkpoint-file.js';
import {
  captureSections,
  prepareRestore,
  warmUpCapture,
  SnapshotScratch,
  WARM_UP_ROUNDS,
  type SavedRunState,
} from './snapshot.js';
import { PhaseClock, type PhaseMark } from './timings.js';
import { readRamGeneration, ramGenerationForSave } from '../../src/memory/ram-generation.js';

/** A CPR request that cannot be carried out; the message is one line for the QMP client. */
export { CprError };

export const TIMINGS_SECTION = 'cpr-timings';
/** The `generation` section: which state of the RAM left in its file the checkpoint describes (src/memory/ram-generation.ts). */
export const RAM_GENERATION_SECTION = 'ram';

/** How RAM goes into the checkpoint. */
export type RamPolicy =
  /** cpr-save / cpr-reboot with x-ignore-shared: persistent shared RAM stays out, anything else goes in. */
  | 'skip-shared'
  /** migrate without x-ignore-shared: RAM always goes in. */
  | 'always'
  /** cpr-exec: the RAM fd stays open across the exec, so RAM never goes in; RAM without such an fd is refused. */
  | 'kept';

/** QEMU's words for RAM that CPR cannot keep in place (its cpr blocker), with tsvmm's backends named. */
export function ramNotKeptMessage(parts: MachineParts): string {
  const record = parts.ram.backend.record();
  return (
    `Memory region ${parts.config.memory.backendId ?? 'pc.ram'} is not compatible with CPR. share=on is required for memory-backend objects ` +
    `(use -object memory-backend-memfd,share=on or memory-backend-file,share=on; this VM's RAM is ${record.kind}${record.share ? '' : ', private'})`
  );
}

/** QEMU's refusal (hw/vfio/cpr.c, its cpr-reboot migration notifier) while the guest is not suspended. */
export const VFIO_REBOOT_NOT_SUSPENDED = 'VFIO device only supports cpr-reboot for runstate suspended';

/**
 * Reboot mode (cpr-save, migrate to a file) and a passed-through PCI function: its state is in the host device and
 * its DMA in the IOMMU, which a file does not carry. As QEMU, only with the guest suspended (ACPI S3: its driver
 * quiesced the device and re-initialises it on resume); the new tsvmm opens the device afresh (reset) and restores
 * its virtual config (BARs, COMMAND, MSI/MSI-X) from the vfio-pci record.
 */
export function checkNoPassthrough(parts: MachineParts, runState: string): void {
  if ((parts.config.vfio ?? []).length && runState !== 'suspended') throw new CprError(VFIO_REBOOT_NOT_SUSPENDED);
}

/** Whether RAM is written into the checkpoint; throws CprError when reboot mode cannot preserve it. */
export function ramGoesInFile(parts: MachineParts, policy: RamPolicy): boolean {
  const backend = parts.ram.backend;
  if (policy === 'always') return true;
  if (policy === 'kept') {
    if (!backend.transferable) throw new CprError(ramNotKeptMessage(parts));
    return false;
  }
  if (backend.shared) return false;
  if (backend.kind === 'memfd' && backend.record().share) {
    throw new CprError(
      'guest RAM is a memfd, which does not survive the process in reboot mode: use ' +
        '-object memory-backend-file,mem-path=/dev/shm/…,share=on (RAM stays in place), a private backend (RAM is ' +
        'written into the checkpoint), or cpr-transfer (the memfd is handed to the new process)',
    );
  }
  return true;
}

/** Guest RAM, regions end to end, as the checkpoint writer reads it. */
function ramSource(parts: MachineParts): RamSource {
  const regions = parts.ram.regions;
  const size = regions.reduce((n, r) => n + r.size, 0);
  return {
    size,
    read(offset, length) {
      let base = 0;
      for (const r of regions) {
        if (offset < base + r.size) {
          // The writer asks for chunks that do not cross a region end when region sizes are chunk multiples;
          // otherwise copy across the boundary.
          if (offset + length <= base + r.size) return parts.ram.ram.slice(r.gpa + offset - base, length);
          const out = new Uint8Array(length);
          let done = 0;
          while (done < length) {
            const at = offset + done;
            let b = 0;
            for (const q of regions) {
              if (at < b + q.size) {
                const n = Math.min(length - done, b + q.size - at);
                out.set(parts.ram.ram.slice(q.gpa + at - b, n), done);
                done += n;
                break;
              }
              b += q.size;
            }
          }
          return out;
        }
        base += r.size;
      }
      throw new RangeError(`RAM offset ${offset} beyond ${size}`);
    },
  };
}

/**
 * Writes and reads back a throwaway checkpoint in `dir` (beside the real one: the same file system), so the file code
 * (and the file system's metadata paths) are warm when the guest is stopped. The throwaway lives in a private
 * directory of its own (mkdtemp, 0700: no predictable name to plant a symlink or a directory at), removed after. A
 * warm-up never throws, not even from its clean-up: callers run it from promises nobody awaits.
 */
export function warmUpFileIo(dir: string, sections: Section[], rounds = 3): void {
  try {
    withPrivateDir(dir, '.tsvmm-warm-up-', (scratch) => {
      const path = join(scratch, 'warm-up.cpr');
      for (let i = 0; i < rounds; i++) {
        writeCheckpoint(path, { sections: [...sections, jsonSection('timings', TIMINGS_SECTION, [])] });
        readCheckpoint(path);
      }
    });
  } catch {
    // Only a warm-up: the real write reports any problem with the directory.
  }
}

export interface SaveReport {
  readonly path: string;
  readonly bytes: number;
  readonly ramWritten: boolean;
  readonly runState: SavedRunState;
  readonly marks: PhaseMark[];
  readonly write: WriteTimings;
  /** How RAM went into the file (O_DIRECT or the page cache, and why), when it did. */
  readonly ramIo?: RamIo;
}

/**
 * Stops the guest, writes its state to `path` (atomically) and leaves the VM stopped in `postmigrate`: after a
 * save the guest must not run here again, or the new process would resume a guest that has moved on. On failure
 * the guest runs on (if it was running) and nothing is left at `path`.
 */
export async function saveToFile(
  machine: Machine,
  path: string,
  policy: RamPolicy,
  scratch = new SnapshotScratch(),
  {
    keepStopped = false,
    vfioKept = false,
  }: {
    keepStopped?: boolean;
    /** cpr-exec: passed-through functions stay open across the exec (cpr/flows/exec.ts), not in the file. */
    vfioKept?: boolean;
  } = {},
): Promise<SaveReport> {
  const parts = machine.parts();
  if (!vfioKept) checkNoPassthrough(parts, machine.runState);
  const withRam = ramGoesInFile(parts, policy);
  if (machine.runState === 'postmigrate')
    throw new CprError('the VM state was already saved; it cannot be saved again from this process');
  const runState: SavedRunState =
    machine.runState === 'running' ? 'running' : machine.runState === 'suspended' ? 'suspended' : 'paused';
  const clock = new PhaseClock('old');
  clock.time('warm-up', () => {
    let sections: Section[] = [];
    for (let i = 0; i < WARM_UP_ROUNDS; i++) sections = warmUpCapture(parts, scratch, machine.powerOnStates());
    warmUpFileIo(dirname(path), sections);
  });
  try {
    // Inside the try: a pause that fails leaves the guest running (Machine.pause is all or nothing), and the
    // clean-up below must then leave it alone.
    await clock.timeAsync('stop-vcpus', () => machine.pause('finish-migrate', { sync: true, capture: true }));
    // The I/O thread parked between requests, so every request it took from a ring has completed (or was given
    // back to the ring whole). What the guest was told is written must now survive the host rebooting (the point
    // of this mode): page cache does not.
    clock.time('sync-images', () => syncImages(parts.images));
    const sections = captureSections(parts, runState, scratch, clock);
    // RAM left in its file is tied to the checkpoint by the file's generation (which the next run replaces).
    const generation = withRam ? undefined : ramGenerationForSave(parts.ram.backend);
    if (generation !== undefined) sections.push(jsonSection('generation', RAM_GENERATION_SECTION, generation));
    const write = clock.time('write', () =>
      writeCheckpoint(path, {
        sections: [...sections, jsonSection('timings', TIMINGS_SECTION, clock.marks)],
        ram: withRam ? ramSource(parts) : undefined,
        description: {
          tsvmm: 'checkpoint',
          runState,
          ramInFile: withRam,
          vcpus: parts.vcpus.length,
          ramBytes: parts.config.memory.size,
        },
      }),
    );
    // Not silently: a RAM save through the page cache evicts as much of the host's cache as the guest has RAM.
    if (write.ramIo?.mode === 'buffered')
      process.stderr.write(`tsvmm: ${path}: guest RAM written through the page cache: ${write.ramIo.reason}\n`);
    // cpr-exec leaves the VM in finish-migrate: it execs at once, or resumes the guest if the exec fails.
    if (!keepStopped) machine.setPausedState('postmigrate');
    return {
      path,
      bytes: write.bytes,
      ramWritten: withRam,
      runState,
      marks: clock.marks,
      write: write.timings,
      ...(write.ramIo ? { ramIo: write.ramIo } : {}),
    };
  } catch (e) {
    if (!machine.running) {
      machine.setPausedState(runState === 'suspended' ? 'suspended' : 'paused');
      if (runState === 'running') machine.resume();
    }
    throw e;
  }
}

export interface LoadReport {
  readonly path: string;
  readonly runState: SavedRunState;
  readonly ramLoaded: boolean;
  /** The saving process's marks (from the file) and this process's. */
  readonly marks: PhaseMark[];
}

/** Marks this process collected before the load: its start (Node's time origin) and the machine's creation. */
export function processStartMarks(createdUs: number): PhaseClock {
  const clock = new PhaseClock('new');
  clock.mark('process-start', Math.round(performance.timeOrigin * 1000), createdUs);
  return clock;
}

/**
 * Loads a checkpoint into a machine that has not run yet (-S or -incoming): verifies the whole file and every
 * section against this machine before touching anything, restores, and resumes the guest if it was running when
 * saved (unless `stayPaused`: QEMU's -S after an incoming migration). A refused file is left untouched and the machine stays as it was.
 */
export function loadFromFile(
  machine: Machine,
  path: string,
  clock = new PhaseClock('new'),
  {
    stayPaused = false,
    scratch = new SnapshotScratch(),
    inherited,
  }: {
    stayPaused?: boolean;
    scratch?: SnapshotScratch;
    /** cpr-exec: guest RAM came over the exec (the file has none) and the old image's complete marks. */
    inherited?: { marks: PhaseMark[] };
  } = {},
): LoadReport {
  if (machine.runState !== 'prelaunch' && machine.runState !== 'inmigrate') {
    throw new CprError(
      `cpr-load needs a VM that has not run yet (start tsvmm with -S or -incoming defer); this one is ${machine.runState}`,
    );
  }
  const parts = machine.parts();
  const checkpoint = clock.time('read-verify', () => readCheckpoint(path));
  const prepared = clock.time('check-state', () =>
    prepareRestore(parts, checkpoint.sections, scratch, { loadRam: (clock) => loadRam(clock) }),
  );
  if (!checkpoint.ram && !parts.ram.backend.shared && !inherited) {
    throw new CheckpointError(
      `checkpoint ${path} has no RAM section, and this VM's RAM (${parts.ram.backend.kind}) does not hold the guest's memory: use the same persistent shared memory backend as the saving VM`,
    );
  }
  if (!checkpoint.ram) checkRamGeneration(parts, checkpoint, path);
  const old = checkpoint.sections.find((s) => s.kind === 'timings' && s.name === TIMINGS_SECTION);
  const oldMarks = inherited?.marks ?? (old ? (parseJsonSection(old) as PhaseMark[]) : []);
  // Guest RAM is written inside the commit, once KVM took the vCPUs and chips (see RestoreOptions.loadRam).
  function loadRam(clock: PhaseClock): void {
    if (!checkpoint.ram) return;
    clock.time('load-ram', () => {
      const reader = openRam(checkpoint);
      try {
        let offset = 0;
        const chunk = 64 << 20;
        for (const r of parts.ram.regions) {
          for (let at = 0; at < r.size; at += chunk) {
            const n = Math.min(chunk, r.size - at);
            reader.read(offset + at, n, parts.ram.ram.slice(r.gpa + at, n));
          }
          offset += r.size;
        }
      } finally {
        reader.close();
      }
    });
  }
  applyRestore(machine, prepared, clock, stayPaused);
  return {
    path,
    runState: prepared.runState,
    ramLoaded: checkpoint.ram !== undefined,
    marks: [...oldMarks, ...clock.marks],
  };
}

/**
 * Refuses a checkpoint whose RAM (left in its file) has moved on since the save: the file's generation is replaced
 * whenever a guest starts running on it, so a checkpoint loaded once and run on, or older than the last boot, no
 * longer matches. Checkpoints without a generation (RAM on a file system without user xattrs, or an older tsvmm's)
 * and RAM that cannot carry one are not checked.
 */
function checkRamGeneration(parts: MachineParts, checkpoint: Checkpoint, path: string): void {
  const section = checkpoint.sections.find((s) => s.kind === 'generation' && s.name === RAM_GENERATION_SECTION);
  if (!section) return;
  const saved = parseJsonSection(section);
  if (typeof saved !== 'string') throw new CheckpointError(`checkpoint ${path}: its RAM generation is not a string`);
  const current = readRamGeneration(parts.ram.backend);
  if (current === undefined || current === saved) return;
  const ram = parts.ram.backend.record().path ?? 'the RAM file';
  throw new CheckpointError(
    `checkpoint ${path} describes generation ${printable(saved)} of guest RAM, but ${ram} is at ${current === null ? 'no generation' : `generation ${current}`}: a guest has run on that RAM since the save (the checkpoint was loaded already, or the VM booted), and loading it again would corrupt the guest; load a checkpoint saved since`,
  );
}
