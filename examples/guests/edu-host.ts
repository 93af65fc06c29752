// The host side of the edu guest (edu.c): every result line it must print, computed here from the same patterns and
// sequence of transfers (so a run is judged against an independent expectation, not only against itself), the lines
// that differ between VMMs by design, and a runner that boots it under QEMU (an emulated `-device edu`, or the real
// one passed through with `-device vfio-pci,host=…`) or tsvmm with the same options.
//
//   const run = await runEdu('qemu', { kernel, device: { vfio: '0000:00:04.0' } });
//   assert.equal(eduComparableLines(run.serial), eduExpectedLines());
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './build.js';
import { QEMU_BINARY, debugExitProcessStatus, qemuAccel } from './qemu-runner.js';

/** The guest's isa-debug-exit values (the VMM's exit status is value * 2 + 1). */
export const EDU_EXIT = {
  ok: 0,
  noEdu: 0x10,
  pci: 0x11,
  registers: 0x20,
  dma: 0x21,
  msi: 0x22,
  intx: 0x23,
  exception: 0x3f,
} as const;

/** The process status of a guest that passed: isa-debug-exit 0 → 1. */
export const EDU_PASSED = debugExitProcessStatus(EDU_EXIT.ok);

/** Where the guest places BAR0 (the lowest free MiB of its window, then the next one): the same under every VMM. */
export const EDU_BAR0_FIRST = 0xc000_0000;
export const EDU_BAR0_SECOND = 0xc010_0000;

/** The device buffer's reach: QEMU ≤ 8.2 aborts on a transfer ending at its last byte (edu.c, EDU_BUF_REACH). */
const BUF = 0x40000;
const REACH = 4095;

const hex8 = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/** CRC-32 (IEEE 802.3, zlib's). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** Byte k of the guest's DMA pattern `seed`: pattern() in edu.c. */
export function eduPatternByte(seed: number, k: number): number {
  return (k * 131 + seed * 29 + (k >> 8) * 7 + 0x3c) & 0xff;
}

function pattern(seed: number, size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, k) => eduPatternByte(seed, k));
}

/** The factorial as the device computes it: u32, wrapping. */
export function eduFactorial(n: number): number {
  let r = 1;
  for (let v = n; v > 0; v--) r = Math.imul(r, v) >>> 0;
  return r;
}

/** The transfers check_dma() makes: device-buffer offset and size, pattern seed = index + 1. */
const DMA_CASES: ReadonlyArray<readonly [offset: number, size: number]> = [
  [0, REACH],
  [0, 1],
  [0x100, 100],
  [0x800, 1000],
  [0xfc0, 63],
  [0x400, 2048],
  [0xffe, 1],
];
const LIVENESS = [0x00000000, 0xffffffff, 0x12345678, 0xa5a5a5a5, 0x80000001];
const FACTORIALS = [0, 1, 2, 5, 10, 12, 13, 20];
const RAISES = [0x00010000, 0x80000000, 0x00000042];

/** The result lines of one interrupt mode (trigger_all in edu.c); the device buffer gets seed `seed` at 0x200. */
function interruptLines(mode: 'msi' | 'intx', buffer: Uint8Array, seed: number): string[] {
  const lines = RAISES.map(
    (v) => `edu: ${mode} raise ${hex8(v)}: 1 interrupt, status ${hex8(v)}, 0x00000000 after the acknowledge`,
  );
  buffer.set(pattern(seed, 256), 0x200);
  lines.push(
    `edu: ${mode} dma ram -> device: 1 interrupt, status 0x00000100, 0x00000000 after the acknowledge`,
    `edu: ${mode} dma device -> ram: 1 interrupt, status 0x00000100, 0x00000000 after the acknowledge`,
    `edu: ${mode} factorial 9: 1 interrupt, status 0x00000001, 0x00000000 after the acknowledge`,
    `edu: ${mode} factorial 9 = ${eduFactorial(9)}`,
  );
  return lines;
}

/**
 * Every line the guest prints that must read the same under every VMM (eduComparableLines), in order, for an edu at
 * QEMU's identity (1234:11e8, class 00ff00, revision 0x10, subsystem 1af4:1100, MSI its only capability).
 * `intx: false` for a run with `intx=0`.
 */
export function eduExpectedLines(o: { intx?: boolean } = {}): string[] {
  const buffer = new Uint8Array(REACH);
  const lines = [
    'edu: start',
    'edu: id 1234:11e8 class 00ff00 revision 0x10 header 0x00 subsystem 1af4:1100 pin INTA',
    'edu: capabilities 0x05',
    'edu: bar0 reads 0xfff00000 after all-ones: memory, 32-bit, non-prefetchable, 1024 KiB; bars 1-5 unimplemented',
    `edu: bar0 placed at ${hex8(EDU_BAR0_FIRST)} by the guest, memory decoding and bus mastering on`,
    'edu: at the first address: identification 0x010000ed, version 1.0',
    ...LIVENESS.map((v) => `edu: liveness ${hex8(v)} reads ${hex8(~v)}`),
    `edu: bar0 moved to ${hex8(EDU_BAR0_SECOND)}`,
    'edu: at the second address: identification 0x010000ed, version 1.0',
    'edu: liveness after the move ok',
    ...FACTORIALS.map((n) => `edu: factorial ${n} = ${eduFactorial(n)} (guest: ${eduFactorial(n)})`),
  ];
  DMA_CASES.forEach(([offset, size], c) => {
    const data = pattern(c + 1, size);
    buffer.set(data, offset);
    lines.push(
      `edu: dma ${size} bytes ram -> device ${hex8(BUF + offset)} -> ram: equal, guards intact, crc32 ${hex8(crc32(data))}`,
    );
  });
  lines.push(
    `edu: device buffer after the transfers: ${REACH} bytes as the guest wrote them, crc32 ${hex8(crc32(buffer))}`,
    'edu: msi capability: 64-bit address, 1 vector(s), no per-vector masking',
    'edu: msi enabled: address 0xfee00000 data 0x0041 (apic 0, vector 0x41)',
    ...interruptLines('msi', buffer, 0x40),
    'edu: msi: 6 interrupts for 6 causes, 0 more in 200 ms',
  );
  if (o.intx !== false) {
    lines.push(
      'edu: intx: msi off, INTx# level-triggered to vector 0x50',
      ...interruptLines('intx', buffer, 0x41),
      'edu: intx disabled: raise 0x00000008, status.interrupt 1, 0 interrupts in 200 ms',
      'edu: intx enabled again: 1 interrupt, status 0x00000008, 0x00000000 after the acknowledge',
      'edu: intx: 7 interrupts for 7 causes, 0 more in 200 ms',
    );
  }
  lines.push(
    `edu: device buffer at the end: ${REACH} bytes as the guest wrote them, crc32 ${hex8(crc32(buffer))}`,
    'edu: all ok',
  );
  return lines;
}

/**
 * The guest's lines that must be the same under every VMM: all `edu: ` lines but `edu: at …` (slot, the firmware's
 * BAR and INTERRUPT_LINE) and `edu: note …` (what a previous user left, the GSI, redeliveries after early EOIs).
 */
export function eduComparableLines(serial: string): string[] {
  return serial
    .split(/\r?\n/)
    .filter((l) => l.startsWith('edu: ') && !l.startsWith('edu: at 00:') && !l.startsWith('edu: note '));
}

/** What the VMM-specific line says: the device's slot, where firmware left BAR0 (0: nowhere), INTERRUPT_LINE. */
export function eduPlacement(serial: string): { slot: number; firmwareBar0: number; line: number } | null {
  const m = /^edu: at 00:([0-9a-f]{2})\.[0-7], firmware left bar0 at 0x([0-9a-f]{8}) and interrupt line (\d+)$/m.exec(
    serial,
  );
  return m ? { slot: parseInt(m[1], 16), firmwareBar0: parseInt(m[2], 16), line: Number(m[3]) } : null;
}

export interface EduOptions {
  kernel: string;
  /** QEMU's emulated edu, or a host device bound to vfio-pci (its sysfs address, e.g. 0000:00:04.0). */
  device: 'emulated' | { vfio: string };
  /** Skip the INTx part (`intx=0`). */
  intx?: boolean;
  /** Hang guard, seconds (default 300: ~25 s in the rig under nested KVM). */
  timeoutS?: number;
}

export interface EduRun {
  vmm: 'qemu' | 'tsvmm';
  argv: string[];
  status: number | null;
  serial: string;
  stderr: string;
  ms: number;
}

/** The command line: QEMU's pc with `-accel` as qemuAccel() says, or tsvmm, with the same options. */
export function eduCommand(vmm: 'qemu' | 'tsvmm', o: EduOptions): string[] {
  const device = o.device === 'emulated' ? 'edu' : `vfio-pci,host=${o.device.vfio}`;
  const common = [
    '-m',
    '64M',
    '-no-reboot',
    '-serial',
    'stdio',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel',
    o.kernel,
    ...(o.intx === false ? ['-append', 'intx=0'] : []),
    '-device',
    device,
  ];
  return vmm === 'qemu'
    ? [QEMU_BINARY, '-accel', qemuAccel(), '-M', 'pc', '-nodefaults', '-display', 'none', ...common]
    : [
        process.execPath,
        join(repoRoot(), 'dist', 'tsvmm.mjs'),
        'run',
        ...common,
        '--timeout',
        String(o.timeoutS ?? 300),
      ];
}

/** Boots the guest and collects COM1, stderr and the exit status (null if the hang guard killed it). */
export function runEdu(vmm: 'qemu' | 'tsvmm', o: EduOptions): Promise<EduRun> {
  const argv = eduCommand(vmm, o);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let stderr = '';
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d) => {
      serial += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', (e) => {
      stderr += `spawn ${argv[0]}: ${e.message}\n`;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), ((o.timeoutS ?? 300) + 30) * 1000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ vmm, argv, status, serial, stderr, ms: Date.now() - started });
    });
  });
}

/** The run as a failure message's context: the command, COM1 and stderr. */
export function eduContext(r: EduRun): string {
  return `\n$ ${r.argv.join(' ')}\n(${r.ms} ms)\nCOM1:\n${r.serial}\nstderr:\n${r.stderr}`;
}
