// What the threads of a process are doing, read from /proc: for a test's failure message when a guest stalls — a
// vCPU thread running (R, CPU time growing, in ioctl: inside KVM_RUN), one waiting on a lock (futex), an I/O thread
// asleep in epoll_wait while the guest waits on it. Best effort: a thread or process that ends meanwhile is skipped.
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

/** x86-64 system call numbers that tell a tsvmm thread's role when it is blocked in one. */
const SYSCALLS: Record<number, string> = {
  0: 'read',
  1: 'write',
  7: 'poll',
  16: 'ioctl',
  35: 'nanosleep',
  74: 'fsync',
  75: 'fdatasync',
  202: 'futex',
  232: 'epoll_wait',
  281: 'epoll_pwait',
};

export interface ThreadSample {
  comm: string;
  /** R running, S sleeping, D in uninterruptible wait, … */
  state: string;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
  /** The system call it is blocked in (a name where known), `running`, or `?`. */
  call: string;
  /** The kernel function it sleeps in ('' where the kernel hides it). */
  wchan: string;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'latin1').trim();
  } catch {
    return null;
  }
}

/** Thread `tid` of process `pid`, or null once it is gone. */
export function threadSample(pid: number, tid: number): ThreadSample | null {
  const stat = read(`/proc/${pid}/task/${tid}/stat`);
  if (!stat) return null;
  // The command name may hold spaces and parentheses: the fields after it start past the last ')'.
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const call = read(`/proc/${pid}/task/${tid}/syscall`)?.split(' ')[0] ?? '?';
  return {
    comm,
    state: fields[0],
    cpuTicks: Number(fields[11]) + Number(fields[12]),
    call: /^\d+$/.test(call) ? (SYSCALLS[Number(call)] ?? `syscall ${call}`) : call,
    wchan: read(`/proc/${pid}/task/${tid}/wchan`) ?? '',
  };
}

/** One line per thread of `pid` (tid, name, state, CPU ticks, system call, wchan), under the host's load. */
export function threadStates(pid: number): string {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return `process ${pid}: gone`;
  }
  const lines = [
    `process ${pid}, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  ];
  for (const tid of tids) {
    const t = threadSample(pid, Number(tid));
    if (t)
      lines.push(
        `  ${tid.padStart(7)} ${t.comm.padEnd(16)} ${t.state} cpu ${String(t.cpuTicks).padStart(6)} ${t.call} ${t.wchan || '?'}`,
      );
  }
  return lines.join('\n');
}
