// Runs a test guest under QEMU (the reference machine tsvmm imitates) and collects what it printed and how it
// exited. Used by guests-qemu.test.ts to prove the guests are QEMU-compatible.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debugExitStatus } from '../../devices/debug-exit.js';

export const QEMU_BINARY = process.env.TSVMM_QEMU ?? 'qemu-system-x86_64';

/** Null if QEMU can be run, else a one-line reason. */
export function qemuUnavailable(): string | null {
  const r = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${QEMU_BINARY} not installed (Debian: apt-get install qemu-system-x86)`;
  if (r.status !== 0) return `${QEMU_BINARY} --version failed: ${r.stderr.trim()}`;
  return null;
}

/**
 * The accelerator to test with: KVM when /dev/kvm is usable, because on this host it runs guest code through the
 * same in-kernel emulator tsvmm will use (so a guest that uses iret or int n fails here as it would there);
 * otherwise TCG. TSVMM_QEMU_ACCEL overrides.
 */
export function qemuAccel(): 'kvm' | 'tcg' {
  const forced = process.env.TSVMM_QEMU_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'tcg';
  }
}

export interface QemuRun {
  /** Exit status of QEMU (isa-debug-exit: (value << 1) | 1), or null if it was killed. */
  status: number | null;
  /** Everything the guest wrote to COM1. */
  serial: string;
  /** Bytes the guest wrote to isa-debugcon (port 0xe9), when `debugcon` was asked for. */
  debugcon: Buffer;
  /** QEMU's own messages. */
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface QemuOptions {
  /** -kernel image. */
  kernel?: string;
  append?: string;
  initrd?: string;
  /** A raw disk image to boot from (BIOS boot sector) instead of -kernel. */
  bootDisk?: string;
  smp?: number;
  memoryMiB?: number;
  /** Capture port 0xe9 output. */
  debugcon?: boolean;
  timeoutMs?: number;
  extraArgs?: string[];
}

/** Runs QEMU with no default devices, COM1 on stdout, isa-debug-exit at 0xf4 and -no-reboot. */
export function runQemu(opts: QemuOptions): Promise<QemuRun> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-qemu-'));
  const debugconPath = join(dir, 'debugcon');
  const args = [
    '-nodefaults',
    '-display',
    'none',
    '-no-reboot',
    '-accel',
    qemuAccel(),
    '-m',
    `${opts.memoryMiB ?? 64}M`,
    '-smp',
    String(opts.smp ?? 1),
    '-serial',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x04',
  ];
  if (opts.debugcon) args.push('-debugcon', `file:${debugconPath}`);
  if (opts.kernel) args.push('-kernel', opts.kernel);
  if (opts.append !== undefined) args.push('-append', opts.append);
  if (opts.initrd) args.push('-initrd', opts.initrd);
  if (opts.bootDisk) args.push('-drive', `file=${opts.bootDisk},format=raw,if=ide,snapshot=on`);
  args.push(...(opts.extraArgs ?? []));
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d) => {
      serial += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      let debugcon = Buffer.alloc(0);
      try {
        debugcon = readFileSync(debugconPath);
      } catch {
        /* not asked for, or nothing written */
      }
      rmSync(dir, { recursive: true, force: true });
      resolve({ status, serial, debugcon, stderr, timedOut, ms: Date.now() - started });
    });
  });
}

/**
 * The exit status a process (QEMU, or tsvmm) shows after the guest's isa-debug-exit write of `value`: the device's
 * status, (value << 1) | 1, cut to the 8 bits a process exit status has.
 */
export function debugExitProcessStatus(value: number): number {
  return debugExitStatus(value, 4) & 0xff;
}
