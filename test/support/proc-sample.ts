// What a process holds, read from /proc: its open fds (count and kinds) and its resident memory. The soak compares
// these across generations of tsvmm processes, so a kind must not name anything that differs between two healthy
// processes (an inode number, a pid): `socket`, `pipe`, `anon_inode:kvm-vcpu`, `/dev/kvm`, the path of a file.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcessSample {
  fds: number;
  /** How many fds of each kind, e.g. { socket: 5, 'anon_inode:[eventfd]': 12, '/dev/kvm': 1 }. */
  fdKinds: Record<string, number>;
  /** VmRSS: everything resident, the guest RAM pages this process touched included. */
  rssKiB: number;
  /** RssAnon: the process's own heap and stacks — where a leak in tsvmm itself shows. */
  rssAnonKiB: number;
}

/** The kind of an fd from its /proc/PID/fd link text. */
export function fdKind(link: string): string {
  if (/^(socket|pipe):\[\d+\]$/.test(link)) return link.slice(0, link.indexOf(':'));
  if (link.startsWith('anon_inode:')) return link.replace(/:\d+$/, ''); // kvm-vcpu:N → kvm-vcpu
  if (link.startsWith('/memfd:')) return link.replace(/ \(deleted\)$/, '');
  return link;
}

function snapshot(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed between the listing and the readlink
    }
    const kind = fdKind(link);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

const same = (a: Record<string, number>, b: Record<string, number>) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

function statusKiB(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!m) throw new Error(`no ${field} in /proc status`);
  return Number(m[1]);
}

/**
 * The process's fds and memory. The fd table is read until two readings 50 ms apart agree (at most 20 tries), so
 * that an fd opened and closed in passing (a /proc read, a worker starting) does not count.
 */
export async function processSample(pid: number): Promise<ProcessSample> {
  let kinds = snapshot(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = snapshot(pid);
    if (same(kinds, again)) break;
    kinds = again;
  }
  const sorted = Object.fromEntries(Object.entries(kinds).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    fds: Object.values(kinds).reduce((a, b) => a + b, 0),
    fdKinds: sorted,
    rssKiB: statusKiB(status, 'VmRSS'),
    rssAnonKiB: statusKiB(status, 'RssAnon'),
  };
}
