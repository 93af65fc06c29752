// Reboot mode over a stream (migrate to fd:/exec:, -incoming/migrate-incoming from fd:/exec:): the file flows of
// reboot.ts with a private file in between (stream-transport.ts says why). Outgoing, the guest stays stopped until
// the stream has taken the last byte (and an exec: command exited with 0): only then is the state handed over and
// the VM postmigrate; a stream that fails resumes the guest here, as a failed file save does.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Machine } from '../../src/machine/machine.js';
import { closeAll } from '../../src/sys/socket.js';
import { makePrivateDir, removePrivateDir } from '../../src/sys/private-dir.js';
import { MAX_RETAINED_BYTES } from '../file/checkpoint-file.js';
import { saveToFile, type RamPolicy, type SaveReport } from './reboot.js';
import type { SnapshotScratch } from './snapshot.js';
import { receiveFile, sendFile, type StreamEnd } from './stream-transport.js';
import { nowUs } from './timings.js';

/** Room for what is not RAM in a checkpoint stream: headers, names, the sections the reader keeps. */
const NON_RAM_BYTES = MAX_RETAINED_BYTES + (64 << 20);

/** The fd of an fd: end that will not be used after all (a refusal before the stream started) is closed. */
export function releaseEnd(end: StreamEnd): void {
  if (end.kind === 'fd') closeAll([end.fd]);
}

/** The most bytes a checkpoint of this machine can take: its RAM (if written into the stream) and the rest. */
export function maxCheckpointBytes(machine: Machine): number {
  return machine.parts().config.memory.size + NON_RAM_BYTES;
}

/** Saves the machine's state into `to`; the fd of an fd: end is closed whatever happens. */
export async function saveToStream(
  machine: Machine,
  to: StreamEnd,
  policy: RamPolicy,
  scratch: SnapshotScratch,
  signal?: AbortSignal,
): Promise<SaveReport> {
  let dir: string | undefined;
  let sending = false;
  try {
    dir = makePrivateDir(tmpdir(), 'tsvmm-migrate-');
    const path = join(dir, 'checkpoint.cpr');
    // saveToFile resumes the guest itself when the save fails; keepStopped leaves it in finish-migrate after.
    const report = await saveToFile(machine, path, policy, scratch, { keepStopped: true });
    const startUs = nowUs();
    sending = true;
    try {
      await sendFile(path, to, signal);
    } catch (e) {
      if (!machine.running) {
        machine.setPausedState(report.runState === 'suspended' ? 'suspended' : 'paused');
        if (report.runState === 'running') machine.resume();
      }
      throw e;
    }
    machine.setPausedState('postmigrate');
    return {
      ...report,
      path: to.label,
      marks: [...report.marks, { phase: 'send', process: 'old', startUs, endUs: nowUs() }],
    };
  } finally {
    if (!sending) releaseEnd(to);
    if (dir !== undefined) removePrivateDir(dir);
  }
}

/**
 * Receives a checkpoint from `from` into a private file and runs `load` on its path (which verifies all of it
 * before changing anything); the file goes afterwards. The fd of an fd: end is closed whatever happens.
 */
export async function receiveToFile<T>(
  from: StreamEnd,
  maxBytes: number,
  load: (path: string) => T,
  receiveTimed: (fn: () => Promise<number>) => Promise<number> = (fn) => fn(),
  signal?: AbortSignal,
): Promise<T> {
  let dir: string | undefined;
  let receiving = false;
  try {
    dir = makePrivateDir(tmpdir(), 'tsvmm-incoming-');
    const path = join(dir, 'checkpoint.cpr');
    receiving = true;
    await receiveTimed(() => receiveFile(from, path, maxBytes, signal));
    return load(path);
  } finally {
    if (!receiving) releaseEnd(from);
    if (dir !== undefined) removePrivateDir(dir);
  }
}
