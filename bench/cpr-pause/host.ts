// What the host has to offer a run, and what else it was doing meanwhile: room in /dev/shm and memory for guest
// RAM, and the CPU time all cores spent (a busy or stolen-from host moves every number on a 2-core machine).
import { readFileSync, statfsSync } from 'node:fs';
import { SHM_DIR } from './cleanup.js';

const GiB = 2 ** 30;

/** Free bytes in /dev/shm (what an unprivileged tmpfs user may still allocate). */
export function shmFreeBytes(): number {
  const s = statfsSync(SHM_DIR);
  return s.bavail * s.bsize;
}

/** MemAvailable from /proc/meminfo, in bytes. */
export function memAvailableBytes(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Why guest RAM of `bytes` cannot be placed in /dev/shm now, or null if it can. Room is asked for the whole size
 * (a guest may touch all of it; the touched runs do) plus 1 GiB for everything else on the host.
 */
export function shmRefusal(bytes: number): string | null {
  const margin = GiB;
  const free = shmFreeBytes();
  if (free < bytes + margin)
    return `/dev/shm has ${(free / GiB).toFixed(1)} GiB free, needs ${((bytes + margin) / GiB).toFixed(1)} GiB`;
  const avail = memAvailableBytes();
  if (avail < bytes + margin)
    return `the host has ${(avail / GiB).toFixed(1)} GiB available, needs ${((bytes + margin) / GiB).toFixed(1)} GiB`;
  return null;
}

/** The host's CPU time so far (all cores, jiffies): everything, idle (incl. iowait), and stolen by the hypervisor. */
export interface CpuTimes {
  total: number;
  idle: number;
  steal: number;
}

export function cpuTimes(): CpuTimes {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: f[3] + f[4], steal: f[7] ?? 0 };
}

/** Busy and stolen shares (%) of all cores between two samples. */
export function cpuShare(a: CpuTimes, b: CpuTimes): { busyPercent: number; stealPercent: number } {
  const total = b.total - a.total || 1;
  return {
    busyPercent: Math.round((100 * (total - (b.idle - a.idle))) / total),
    stealPercent: Math.round((100 * (b.steal - a.steal)) / total),
  };
}
