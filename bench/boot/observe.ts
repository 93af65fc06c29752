// Where each VMM hands the CPU to the guest, observed rather than guessed:
//
// - tsvmm: its start-up trace (src/cli/startup-trace.ts, TSVMM_TRACE_STARTUP=1) prints on stderr each mark's time
//   since Node's performance.timeOrigin; "running" is where machine.start() has set the vCPU going at the kernel's
//   entry point (tsvmm loads the kernel itself: no firmware runs). A one-line preload (-r) prints timeOrigin
//   (CLOCK_REALTIME ms), which puts the marks on the same clock as the spawn.
// - QEMU: its trace events (log backend, -msg timestamp=on: "pid@sec.usec:event …", gettimeofday) in a -D file.
//   The first KVM_RUN (kvm_vcpu_ioctl type 0xae80) enters the firmware (qboot for -M microvm); the firmware reads
//   the entry point from fw_cfg ('kernel_entry', key 0x10) and jumps to it, so the KVM_RUN after its last fw_cfg
//   read is the one in which the kernel starts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes the preload that prints Node's time origin; returns its path (for `node -r PATH`). */
export function writeTimeOriginPreload(dir: string): string {
  const path = join(dir, 'time-origin.cjs');
  writeFileSync(path, 'process.stderr.write(`bench-boot: timeOrigin ${performance.timeOrigin}\\n`);\n');
  return path;
}

/** tsvmm's start-up marks as CLOCK_REALTIME ns, from its stderr (needs the preload and TSVMM_TRACE_STARTUP=1). */
export function tsvmmMarks(stderr: string): Map<string, bigint> {
  const origin = /^bench-boot: timeOrigin ([\d.]+)$/m.exec(stderr)?.[1];
  const trace = /^tsvmm: start-up (.*) ms$/m.exec(stderr)?.[1];
  if (!origin || !trace)
    throw new Error(`tsvmm printed no ${origin ? 'start-up trace' : 'time origin'}:\n${stderr.slice(0, 2000)}`);
  const marks = new Map<string, bigint>([['node-origin', BigInt(Math.round(Number(origin) * 1e6))]]);
  for (const item of trace.split(', ')) {
    const m = /^(\S+) ([\d.]+)$/.exec(item);
    if (!m) throw new Error(`start-up trace: cannot read '${item}'`);
    marks.set(m[1], BigInt(Math.round((Number(origin) + Number(m[2])) * 1e6)));
  }
  return marks;
}

/** QEMU options that log what qemuEntry needs to `logFile`. */
export function qemuTraceArgs(logFile: string): string[] {
  return [
    '-trace',
    'kvm_vcpu_ioctl',
    '-trace',
    'fw_cfg_select',
    '-trace',
    'fw_cfg_read',
    '-msg',
    'timestamp=on',
    '-D',
    logFile,
  ];
}

/** KVM_RUN: _IO(KVMIO 0xae, 0x80). */
const KVM_RUN_TYPE = '0xae80';

export interface QemuEntry {
  /** The first KVM_RUN (the firmware's first instruction). */
  firstRunNs: bigint;
  /** The KVM_RUN in which the firmware jumped to the kernel, or null if the firmware read no 'kernel_entry'. */
  kernelEntryNs: bigint | null;
}

/** Reads the trace log written with qemuTraceArgs. */
export function qemuEntry(log: string): QemuEntry {
  const events = log
    .split('\n')
    .map((line) => {
      const m = /^\d+@(\d+)\.(\d{6}):(\S+) (.*)$/.exec(line);
      return m ? { ns: BigInt(m[1]) * 1_000_000_000n + BigInt(m[2]) * 1000n, event: m[3], rest: m[4] } : null;
    })
    .filter((e) => e !== null);
  const isRun = (e: (typeof events)[number]) =>
    e.event === 'kvm_vcpu_ioctl' && e.rest.includes(`type ${KVM_RUN_TYPE},`);
  const first = events.find(isRun);
  if (!first)
    throw new Error(`QEMU's trace log has no KVM_RUN (${events.length} events): is the log trace backend built in?`);
  let kernelEntryNs: bigint | null = null;
  const select = events.findIndex((e) => e.event === 'fw_cfg_select' && e.rest.includes("'kernel_entry'"));
  if (select >= 0) {
    // Its reads (4 one-byte reads of the 32-bit entry point) end the firmware's fw_cfg work: the next selection, if
    // any, is not the firmware's.
    let lastRead = select;
    for (let i = select + 1; i < events.length && events[i].event !== 'fw_cfg_select'; i++) {
      if (events[i].event === 'fw_cfg_read') lastRead = i;
    }
    kernelEntryNs = events.slice(lastRead + 1).find(isRun)?.ns ?? null;
  }
  return { firstRunNs: first.ns, kernelEntryNs };
}
