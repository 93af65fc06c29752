// What each vCPU thread of a tsvmm that stopped making progress is doing, as the host kernel sees it: a guest that
// hangs halted (the thread sleeps in KVM waiting for an interrupt) is told apart from one spinning in guest mode (the
// thread runs, burning CPU) and from a VMM stuck outside KVM_RUN. For a hang guard's failure message.
import { readFileSync } from 'node:fs';
import type { VmProcess } from './vm-process.js';

const SAMPLE_MS = 1000;

interface ThreadSample {
  state: string;
  cpuTicks: number;
  wchan: string;
}

function sample(pid: number, tid: number): ThreadSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    // Fields after the command name (which may hold spaces) start after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
    let wchan = '';
    try {
      wchan = readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'latin1');
    } catch {
      // wchan is hidden on some kernels: the state alone still says sleeping or running.
    }
    return { state: fields[0], cpuTicks, wchan };
  } catch {
    return null;
  }
}

/** One line per vCPU thread: its state, where it sleeps, and the CPU it used over a second. Never throws. */
export async function vcpuReport(vm: VmProcess): Promise<string> {
  try {
    const pid = vm.child.pid!;
    const cpus: { 'cpu-index': number; 'thread-id': number }[] = await Promise.race([
      vm.qmp.execute('query-cpus-fast'),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('query-cpus-fast: no answer in 10 s')), 10_000),
      ),
    ]);
    const before = cpus.map((c) => sample(pid, c['thread-id']));
    await new Promise((r) => setTimeout(r, SAMPLE_MS));
    const lines = cpus.map((c, i) => {
      const a = before[i];
      const b = sample(pid, c['thread-id']);
      if (!a || !b) return `vcpu ${c['cpu-index']} (tid ${c['thread-id']}): thread gone`;
      const ticks = b.cpuTicks - a.cpuTicks;
      return `vcpu ${c['cpu-index']} (tid ${c['thread-id']}): state ${b.state}, wchan ${b.wchan || '?'}, ${ticks} clock ticks of CPU in ${SAMPLE_MS} ms`;
    });
    return `vCPU threads:\n${lines.join('\n')}`;
  } catch (e) {
    return `vCPU threads: no report (${(e as Error).message})`;
  }
}
