// What each vCPU thread of a tsvmm that stopped making progress is doing, as the host kernel sees it: a guest that
// hangs halted (the thread sleeps in KVM waiting for an interrupt) is told apart from one spinning in guest mode (the
// thread runs, burning CPU) and from a VMM stuck outside KVM_RUN. For a hang guard's failure message.
import { threadSample as sample } from './thread-states.js';
import type { VmProcess } from './vm-process.js';

const SAMPLE_MS = 1000;

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
