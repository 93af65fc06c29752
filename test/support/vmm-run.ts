// A VMM in a child process, for tests that watch it from outside: its serial output (stdout), stderr and status,
// run inside a tap's network namespace when one is given, with a hook while it runs (openFiles: what it has open).
// Used by linux-full-boot-pvm.test.ts.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { TapNamespace } from '../../examples/guests/virtio-probe-host.js';

export interface VmmRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  /** ttyS0 (the VMM's stdout). */
  serial: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
  argv: string[];
}

/** Runs a VMM command line (program first), inside the tap's network namespace when one is given. */
export function runVmm(
  argv: readonly string[],
  o: {
    tap?: Pick<TapNamespace, 'ns'> | null;
    timeoutMs: number;
    /** Called once the VMM runs (`ip netns exec` execs it: the pid is the VMM's); `exited` resolves at its end. */
    whileRunning?: (pid: number, exited: Promise<void>) => Promise<void>;
  },
): Promise<VmmRun> {
  const full = o.tap ? ['ip', 'netns', 'exec', o.tap.ns, ...argv] : [...argv];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      serial += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', (e) => {
      stderr += `spawn ${full[0]}: ${e.message}\n`;
    });
    let ended!: () => void;
    const exited = new Promise<void>((r) => {
      ended = r;
    });
    child.on('exit', () => ended());
    const watching =
      o.whileRunning && child.pid !== undefined
        ? o.whileRunning(child.pid, exited).catch((e) => {
            stderr += `[whileRunning] ${(e as Error).message}\n`;
          })
        : Promise.resolve();
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      ended();
      void watching.then(() =>
        resolve({ status, signal, serial, stderr, timedOut, ms: Date.now() - started, argv: full }),
      );
    });
  });
}

/** What a running process has open: regular-file paths, and the interface of each /dev/net/tun fd (fdinfo iff:). */
export function openFiles(pid: number): { paths: string[]; taps: string[] } {
  const paths: string[] = [];
  const taps: string[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return { paths, taps };
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target === '/dev/net/tun') {
        const iff = /^iff:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
        if (iff) taps.push(iff);
      } else if (target.startsWith('/')) {
        paths.push(target);
      }
    } catch {
      /* closed meanwhile */
    }
  }
  return { paths, taps };
}

/** A VMM run's status, command line, the end of its serial output and its stderr, for an assertion message. */
export function vmmReport(run: VmmRun): string {
  return (
    `status ${run.status ?? run.signal}${run.timedOut ? ' (killed: timed out)' : ''} after ${run.ms} ms\n` +
    `$ ${run.argv.join(' ')}\n--- serial (last 4000 bytes) ---\n${run.serial.slice(-4000)}\n--- stderr ---\n${run.stderr.slice(-2000)}`
  );
}
