// The counter guest as the cpr tests run it: its command line with guest RAM on a chosen backend, and where a
// /dev/shm-backed RAM file lives (the host reads the counter from it while the guest runs).
import { join } from 'node:path';
import { buildGuest } from '../../examples/guests/build.js';

/** Guest RAM of the counter VMs. */
export const COUNTER_RAM = '64M';

/** The /dev/shm file that holds the RAM of the counter VM of scratch directory `dir` (backend 'shm'). */
export const shmRamFile = (dir: string) => join('/dev/shm', `${dir.split('/').pop()}-ram`);

/**
 * `tsvmm run` arguments for the counter guest (or smp-counter, one counter per vCPU) with RAM on `ram`: a shared file
 * in /dev/shm (shmRamFile), private anonymous memory, or a shared memfd; `extra` goes last.
 */
export async function counterVmArgs(
  dir: string,
  ram: 'shm' | 'private' | 'memfd',
  extra: string[] = [],
  guestName: 'counter' | 'smp-counter' = 'counter',
): Promise<string[]> {
  const guest = await buildGuest(guestName);
  const backend =
    ram === 'shm'
      ? `memory-backend-file,id=ram0,size=${COUNTER_RAM},mem-path=${shmRamFile(dir)},share=on`
      : ram === 'memfd'
        ? `memory-backend-memfd,id=ram0,size=${COUNTER_RAM},share=on`
        : `memory-backend-ram,id=ram0,size=${COUNTER_RAM}`;
  return ['-m', COUNTER_RAM, '-kernel', guest.path, '-object', backend, '-machine', 'memory-backend=ram0', ...extra];
}
