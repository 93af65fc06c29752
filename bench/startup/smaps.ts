// Reading a process's memory from /proc/PID/smaps: its resident set, split into guest RAM (found as the anonymous
// read-write mapping of exactly the guest's RAM size, which is how tsvmm's and QEMU's default backends map it) and
// everything else, which is what the VMM itself costs.
import { readFileSync } from 'node:fs';

export interface Mapping {
  range: string;
  perms: string;
  path: string;
  sizeKiB: number;
  rssKiB: number;
  anonymousKiB: number;
}

export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  let current: Mapping | null = null;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+-[0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
    if (header) {
      current = { range: header[1], perms: header[2], path: header[3].trim(), sizeKiB: 0, rssKiB: 0, anonymousKiB: 0 };
      out.push(current);
      continue;
    }
    const field = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (!field || !current) continue;
    if (field[1] === 'Size') current.sizeKiB = Number(field[2]);
    else if (field[1] === 'Rss') current.rssKiB = Number(field[2]);
    else if (field[1] === 'Anonymous') current.anonymousKiB = Number(field[2]);
  }
  return out;
}

export interface RssSplit {
  /** Resident KiB of the whole process. */
  totalKiB: number;
  /** Resident KiB of the guest RAM mapping(s). */
  guestRamKiB: number;
  /** totalKiB - guestRamKiB: what the VMM itself keeps resident. */
  outsideKiB: number;
  /** Of outsideKiB: anonymous memory (heaps, stacks, JIT code) and file-backed pages (binaries, libraries). */
  outsideAnonymousKiB: number;
  outsideFileKiB: number;
  /** How many mappings were taken for guest RAM (1 expected; 0 means guest RAM could not be told apart). */
  guestRamMappings: number;
}

export function splitRss(mappings: readonly Mapping[], guestRamBytes: number): RssSplit {
  const ramKiB = guestRamBytes / 1024;
  const isRam = (m: Mapping) => m.path === '' && m.perms.startsWith('rw') && m.sizeKiB === ramKiB;
  const ram = mappings.filter(isRam);
  const rest = mappings.filter((m) => !isRam(m));
  const sum = (ms: readonly Mapping[], f: (m: Mapping) => number) => ms.reduce((n, m) => n + f(m), 0);
  const totalKiB = sum(mappings, (m) => m.rssKiB);
  const guestRamKiB = sum(ram, (m) => m.rssKiB);
  const outsideAnonymousKiB = sum(rest, (m) => m.anonymousKiB);
  return {
    totalKiB,
    guestRamKiB,
    outsideKiB: totalKiB - guestRamKiB,
    outsideAnonymousKiB,
    outsideFileKiB: totalKiB - guestRamKiB - outsideAnonymousKiB,
    guestRamMappings: ram.length,
  };
}

export function sampleRss(pid: number, guestRamBytes: number): RssSplit {
  return splitRss(parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8')), guestRamBytes);
}
