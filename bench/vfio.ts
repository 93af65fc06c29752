// bench/vfio: what a passed-through PCI function costs, tsvmm against QEMU `-accel kvm -M pc`, side by side in one run
// (issue 11, item 5), on QEMU's NVMe controller bound to vfio-pci (without /dev/kvm, `npm run bench vfio` boots the
// rig with one; natively it needs such a device and otherwise says why and does nothing):
//   - MMIO round trip: the C guest examples/guests/mmio-bench.c reads BAR0's NVMe CAP register (mapped into the
//     guest: no exit) and an MSI-X table entry (trapped: an exit to the VMM, which emulates the table) N times each,
//     timed with rdtsc;
//   - DMA throughput: Debian's generic kernel with Linux's nvme driver, `dd` with O_DIRECT in 1 MiB blocks, write
//     then read of the namespace, timed by the guest's /proc/uptime.
// Nothing is asserted; a run fails only when a guest does not finish. See docs/bench.md.
//
// Environment: TSVMM_BENCH_VFIO_RUNS (boots per VMM of the MMIO guest, interleaved; default 3),
// TSVMM_BENCH_VFIO_READS (reads per MMIO case, default 65536, 8192 in the rig), TSVMM_BENCH_VFIO_BOOTS (Linux boots
// per VMM, default 2, 1 in the rig), TSVMM_BENCH_VFIO_REPS (dd rounds per boot, default 3), TSVMM_BENCH_VFIO_MIB (1 MiB
// blocks per dd, default 64: the rig's namespace), TSVMM_QEMU.
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { buildGuest } from '../examples/guests/build.js';
import { eduCommand } from '../examples/guests/edu-host.js';
import { QEMU_BINARY, debugExitProcessStatus, qemuUnavailable } from '../examples/guests/qemu-runner.js';
import { kernelWarnings, linuxGuestKernel } from '../test/support/linux-guest.js';
import { NOW_FN, type Vmm, nvmeGuestImage, nvmeGuestReport, runNvmeGuest } from '../test/support/linux-nvme-guest.js';
import { runVmm } from '../test/support/vmm-run.js';
import { vfioMissing, withVfioDevice } from '../test/support/vfio-devices.js';
import { envInt } from './lib/env.js';
import { writeResult } from './lib/output.js';
import { summarize } from './lib/stats.js';
import { type Cell, formatTable, round } from './lib/table.js';
import { benchWhere, rigDefault } from './lib/where.js';

const TIMEOUT_S = 900;

interface MmioSample {
  mhz: number;
  mapped: number;
  trapped: number;
}

/** The mmio-bench guest's figures, or null (with the run kept for the failure line). */
function parseMmio(serial: string): MmioSample | null {
  const mhz = /^mmio-bench: tsc (\d+) MHz$/m.exec(serial);
  const mapped = /^mmio-bench: mapped \d+ reads (\d+) cycles\/read$/m.exec(serial);
  const trapped = /^mmio-bench: trapped \d+ reads (\d+) cycles\/read$/m.exec(serial);
  if (!mhz || !mapped || !trapped || !/^mmio-bench: all ok$/m.test(serial)) return null;
  return { mhz: Number(mhz[1]), mapped: Number(mapped[1]), trapped: Number(trapped[1]) };
}

/** The dd rounds of the Linux guest: `dd write|read SECONDS` per round. */
function ddBody(mib: number, reps: number): string[] {
  const round = [
    't0=$(now)',
    `dd if=/data of=/dev/nvme0n1 bs=1M count=${mib} oflag=direct conv=fsync 2>/dev/null || fail "write"`,
    't1=$(now)',
    `dd if=/dev/nvme0n1 of=/dev/null bs=1M count=${mib} iflag=direct 2>/dev/null || fail "read"`,
    't2=$(now)',
    'say "dd write $(echo "$t1 $t0" | awk \'{ print $1 - $2 }\')"',
    'say "dd read $(echo "$t2 $t1" | awk \'{ print $1 - $2 }\')"',
  ];
  return [
    NOW_FN,
    'wait_for /dev/nvme0n1 || fail "no /dev/nvme0n1"',
    `head -c ${mib << 20} /dev/urandom > /data || fail "urandom"`,
    ...Array.from({ length: reps }, () => round).flat(),
    'say "done"',
    'poweroff -f',
  ];
}

export async function benchVfio(): Promise<void> {
  const RUNS = envInt('TSVMM_BENCH_VFIO_RUNS', 3);
  const READS = envInt('TSVMM_BENCH_VFIO_READS', rigDefault(65536, 8192));
  const BOOTS = envInt('TSVMM_BENCH_VFIO_BOOTS', rigDefault(2, 1));
  const REPS = envInt('TSVMM_BENCH_VFIO_REPS', 3);
  const MIB = envInt('TSVMM_BENCH_VFIO_MIB', 64);
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/vfio [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  // Built first (natively too), so a rerun in the rig finds them in build/.
  const guest = await buildGuest('mmio-bench');
  const found = linuxGuestKernel();
  const initrd = found.kernel ? nvmeGuestImage('vfio-bench', found.kernel, ddBody(MIB, REPS)) : null;
  const missing = vfioMissing('nvme');
  if (missing) {
    process.stdout.write(
      `bench/vfio: skipped: ${missing} (run it in the rig: npm run rig -- --vfio nvme -- node dist/bench/vfio.js)\n`,
    );
    return;
  }
  const noQemu = qemuUnavailable();
  const vmms: Vmm[] = noQemu ? ['tsvmm'] : ['tsvmm', 'qemu'];
  if (noQemu) log(`QEMU columns skipped: ${noQemu}`);
  const qemuVersion = noQemu ? null : spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const failures: string[] = [];

  // MMIO: the same guest image and options as the edu guest's runs, the NVMe function instead of edu.
  const mmio = new Map<Vmm, MmioSample[]>(vmms.map((v) => [v, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const vmm of vmms) {
      const r = await withVfioDevice('nvme', async ({ bdf }) => {
        const argv = eduCommand(vmm, { kernel: guest.path, device: { vfio: bdf }, timeoutS: TIMEOUT_S });
        argv.push('-append', `reads=${READS}`);
        return runVmm(argv, { timeoutMs: (TIMEOUT_S + 60) * 1000 });
      });
      const s = parseMmio(r.serial);
      if (r.status !== debugExitProcessStatus(0) || !s)
        failures.push(`mmio ${vmm} run ${run}${nvmeGuestReport(vmm, r)}`);
      else mmio.get(vmm)!.push(s);
      log(
        `mmio ${vmm} run ${run + 1}/${RUNS}: ${s ? `mapped ${s.mapped}, trapped ${s.trapped} cycles/read, tsc ${s.mhz} MHz` : 'FAILED'}`,
      );
    }
  }

  // DMA: one namespace, one VMM at a time.
  const dd = new Map<Vmm, { write: number[]; read: number[] }>(vmms.map((v) => [v, { write: [], read: [] }]));
  if (!initrd) log(`DMA skipped: ${found.reason}`);
  for (let boot = 0; initrd && boot < BOOTS; boot++) {
    for (const vmm of vmms) {
      const r = await withVfioDevice('nvme', ({ bdf }) =>
        runNvmeGuest(vmm, { kernel: found.kernel!, initrd, bdf, timeoutS: TIMEOUT_S }),
      );
      const warnings = kernelWarnings(r.serial);
      if (r.status !== 0 || !r.lines.includes('done') || warnings.length)
        failures.push(`dd ${vmm} boot ${boot}: ${warnings.join('; ')}${nvmeGuestReport(vmm, r)}`);
      for (const l of r.lines) {
        const m = /^dd (write|read) ([\d.]+)$/.exec(l);
        if (m) dd.get(vmm)![m[1] as 'write' | 'read'].push(Number(m[2]));
      }
      log(`dd ${vmm} boot ${boot + 1}/${BOOTS}: ${r.lines.filter((l) => l.startsWith('dd ')).join(', ')}`);
    }
  }

  const med = (xs: number[]) => (xs.length ? summarize(xs).median : null);
  const ratio = (a: number | null, b: number | null) => (a !== null && b ? round(a / b) : null);
  const ns = (v: Vmm, pick: 'mapped' | 'trapped') => {
    const xs = mmio.get(v)!.map((s) => (s[pick] * 1000) / s.mhz);
    return med(xs);
  };
  const cycles = (v: Vmm, pick: 'mapped' | 'trapped') => med(mmio.get(v)!.map((s) => s[pick]));
  const mmioRows: Cell[][] = (['mapped', 'trapped'] as const).map((pick) => [
    pick === 'mapped' ? 'BAR0 NVMe CAP (mapped: no exit)' : 'BAR0 MSI-X table (trapped: VMM emulates)',
    ...vmms.flatMap((v) => [cycles(v, pick), ns(v, pick) === null ? null : round(ns(v, pick)!)]),
    ...(vmms.includes('qemu') ? [ratio(ns('tsvmm', pick), ns('qemu', pick))] : []),
  ]);
  mmioRows.push([
    'trapped / mapped',
    ...vmms.flatMap((v) => [ratio(cycles(v, 'trapped'), cycles(v, 'mapped')), null]),
    ...(vmms.includes('qemu') ? [null] : []),
  ]);
  const mibps = (v: Vmm, dir: 'write' | 'read') => {
    const s = med(dd.get(v)![dir]);
    return s ? MIB / s : null;
  };
  const ddRows: Cell[][] = (['write', 'read'] as const).map((dir) => [
    `dd ${dir}, 1 MiB O_DIRECT${dir === 'write' ? ' + fsync' : ''}`,
    ...vmms.map((v) => (mibps(v, dir) === null ? null : round(mibps(v, dir)!))),
    ...(vmms.includes('qemu') ? [ratio(mibps('tsvmm', dir), mibps('qemu', dir))] : []),
  ]);
  const text = [
    formatTable(
      `vfio MMIO: examples/guests/mmio-bench.c on QEMU's NVMe passed through, ${READS} reads per case (rdtsc; ns from the TSC rate against the PIT), median of ${RUNS} runs per VMM (${qemuVersion ?? 'QEMU not run'}, -accel kvm -M pc)\n< 1 in the ratio column: tsvmm's read is quicker`,
      [
        'read of',
        ...vmms.flatMap((v) => [`${v} cycles`, `${v} ns`]),
        ...(vmms.includes('qemu') ? ['tsvmm/qemu ns'] : []),
      ],
      mmioRows,
    ),
    formatTable(
      `vfio DMA: Debian ${found.kernel?.release ?? '-'} with the nvme driver, -m 512M -smp 2, ${MIB} MiB per dd, median of ${BOOTS} boots x ${REPS} rounds per VMM\n> 1 in the ratio column: tsvmm moves more MiB/s`,
      ['dd on /dev/nvme0n1', ...vmms.map((v) => `${v} MiB/s`), ...(vmms.includes('qemu') ? ['tsvmm/qemu'] : [])],
      ddRows,
    ),
  ].join('\n\n');
  process.stdout.write(`${text}\n`);
  for (const f of failures) process.stdout.write(`FAILED: ${f.split('\n')[0]}\n`);
  const path = writeResult('vfio', {
    parameters: { runs: RUNS, reads: READS, boots: BOOTS, reps: REPS, mib: MIB, kernel: found.kernel?.release },
    qemu: qemuVersion ?? `skipped: ${noQemu}`,
    samples: {
      mmio: Object.fromEntries(mmio),
      ddSeconds: Object.fromEntries(dd),
    },
    failures,
    tables: text,
  });
  log(`wrote ${path}`);
  if (failures.length) {
    for (const f of failures) process.stderr.write(`${f}\n`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchVfio();
}
