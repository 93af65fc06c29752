// bench/linux-io: what a Linux guest gets from virtio-blk and virtio-net under tsvmm and under QEMU, side by side in
// one run: `dd` on /dev/vda with direct I/O in 1 MiB and 4 KiB blocks (write, then read), timed by the guest's own
// clock, and the round trip of a ping from the guest to the tap's host end. The same kernel (Debian's generic,
// PVH vmlinux), initramfs, disk image and tap for every VMM; QEMU with -accel kvm as -M pc and -M microvm (with
// its PCIe host, so the same virtio-pci devices). See docs/bench.md. `node dist/bench/linux-io.js`
//
// Environment: TSVMM_BENCH_LINUX_IO_RUNS (boots per VMM, interleaved; default 3, 2 in the rig),
// TSVMM_BENCH_LINUX_IO_REPS (dd rounds per boot, default 3), TSVMM_BENCH_LINUX_IO_MIB (1 MiB blocks per dd, default
// 64), TSVMM_BENCH_LINUX_IO_4K (4 KiB blocks per dd, default 4096, 1024 in the rig), TSVMM_BENCH_LINUX_IO_PINGS (default 50),
// TSVMM_BENCH_LINUX_IO_MICROVM=0 (leave QEMU -M microvm out), TSVMM_QEMU.
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createTapNamespace, tapUnavailable, type TapNamespace } from '../examples/guests/virtio-probe-host.js';
import { buildLinuxGuestInitramfs, kernelWarnings, linuxGuestCmdline } from '../test/support/linux-guest.js';
import { envInt } from './lib/env.js';
import { linuxBenchKernel } from './linux/host-check.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { runTimed } from './lib/spawn.js';
import { summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { benchWhere, guardMs, rigDefault } from './lib/where.js';
import { ddCases, IO_MODULES, ioInit, parseIo, type IoResult } from './linux/io-guest.js';
import { defaultQemu, qemuArgv, tsvmmArgv, VMM_LABEL, type LinuxVmm } from './linux/vmms.js';

const RAM = '512M';
const GUEST_MAC = '52:54:00:12:34:56';
/** tmpfs, as bench/blk: the host's disk is not what is measured. */
const IMAGE_DIR = '/dev/shm';
const TIMEOUT_S = 600;

export async function benchLinuxIo(): Promise<void> {
  const RUNS = envInt('TSVMM_BENCH_LINUX_IO_RUNS', rigDefault(3, 2));
  const REPS = envInt('TSVMM_BENCH_LINUX_IO_REPS', 3);
  const MIB = envInt('TSVMM_BENCH_LINUX_IO_MIB', 64);
  const BLOCKS_4K = envInt('TSVMM_BENCH_LINUX_IO_4K', rigDefault(4096, 1024));
  const PINGS = envInt('TSVMM_BENCH_LINUX_IO_PINGS', 50);
  const withMicrovm = process.env.TSVMM_BENCH_LINUX_IO_MICROVM !== '0';
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/linux-io [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  const kernel = linuxBenchKernel('linux-io');
  if (!kernel) return;
  const noTap = tapUnavailable();
  if (noTap) throw new Error(`bench/linux-io needs a tap: ${noTap}`);
  const q = defaultQemu();
  if (!q.qemu) log(`QEMU columns skipped: ${q.reason}`);

  const dir = scratchDir('linux-io');
  const cases = ddCases(MIB, BLOCKS_4K);
  const initrd = join(dir, 'initrd.img');
  buildLinuxGuestInitramfs(initrd, kernel, ioInit(cases, REPS, PINGS), { modules: IO_MODULES });
  const disk = join(IMAGE_DIR, `tsvmm-bench-linux-io-${process.pid}.img`);
  const diskBytes = Math.max(MIB << 20, BLOCKS_4K * 4096);
  writeFileSync(disk, '');
  truncateSync(disk, diskBytes);

  const vmms: LinuxVmm[] = [
    'tsvmm',
    ...(q.qemu ? (['qemu-pc'] as const) : []),
    ...(q.qemu && withMicrovm ? (['qemu-microvm'] as const) : []),
  ];
  const argv = (vmm: LinuxVmm, tap: TapNamespace): string[] => {
    const isQemu = vmm !== 'tsvmm';
    const legacy = isQemu ? ',disable-legacy=on' : '';
    const common = [
      '-m',
      RAM,
      '-kernel',
      kernel.vmlinux,
      '-initrd',
      initrd,
      '-append',
      linuxGuestCmdline(),
      '-serial',
      'stdio',
      '-no-reboot',
      '-drive',
      `file=${disk},if=none,id=d0,format=raw${isQemu ? ',cache=writeback' : ''}`,
      '-device',
      `virtio-blk-pci,drive=d0${legacy}`,
      '-netdev',
      `tap,id=n0,ifname=${tap.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${GUEST_MAC}${legacy}`,
    ];
    const inner =
      vmm === 'tsvmm'
        ? tsvmmArgv([...common, '--timeout', String(TIMEOUT_S)])
        : qemuArgv(q.qemu!, vmm === 'qemu-pc' ? 'pc' : 'microvm,pcie=on', common);
    return ['ip', 'netns', 'exec', tap.ns, ...inner];
  };

  const results = new Map<LinuxVmm, IoResult[]>(vmms.map((v) => [v, []]));
  const wallMs = new Map<LinuxVmm, number[]>(vmms.map((v) => [v, []]));
  const failures: string[] = [];
  const tap = createTapNamespace(`tsvmm-lio-${process.pid % 100000}`);
  try {
    log(`${RUNS} boots per VMM (${vmms.join(', ')}), interleaved; ${REPS} dd rounds and ${PINGS} pings per boot`);
    for (let run = 0; run < RUNS; run++) {
      for (const vmm of vmms) {
        const cmd = argv(vmm, tap);
        const r = await runTimed(cmd[0], cmd.slice(1), { timeoutMs: guardMs((TIMEOUT_S + 30) * 1000) });
        try {
          if (r.status !== 0) throw new Error(`exit status ${r.status ?? r.signal}\n${r.stderr.trim().slice(-1500)}`);
          const warnings = kernelWarnings(r.stdout);
          if (warnings.length) throw new Error(`kernel warnings:\n${warnings.join('\n')}`);
          const io = parseIo(r.stdout);
          results.get(vmm)!.push(io);
          wallMs.get(vmm)!.push(r.ms);
          log(
            `${VMM_LABEL[vmm]} boot ${run + 1}/${RUNS} (${(r.ms / 1000).toFixed(1)} s): ` +
              cases.map((c) => `${c.name} ${mibps(c, median(io.dd.get(c.name) ?? []))}`).join(', ') +
              ` MiB/s; ping median ${median(io.pingMs).toFixed(3)} ms`,
          );
        } catch (e) {
          const what = `${VMM_LABEL[vmm]} boot ${run + 1}: ${(e as Error).message}`;
          failures.push(what);
          log(`FAILED: ${what}\n--- serial (last 2000 bytes) ---\n${r.stdout.slice(-2000)}`);
        }
      }
    }
  } finally {
    tap.close();
    rmSync(disk, { force: true });
  }

  // ---- tables: median over every dd (boots × rounds) and every ping; ratios against QEMU -M pc -------------------
  const ddSummary = (vmm: LinuxVmm, name: string): Summary | null => {
    const secs = (results.get(vmm) ?? []).flatMap((r) => r.dd.get(name) ?? []);
    return secs.length ? summarize(secs) : null;
  };
  const rate = (c: (typeof cases)[number], s: Summary | null): number | null =>
    s ? (c.count * c.bytesPerBlock) / 2 ** 20 / s.median : null;
  const header = [
    'dd, direct I/O',
    ...vmms.map((v) => `${VMM_LABEL[v]} MiB/s`),
    ...vmms.filter((v) => v !== 'tsvmm').map((v) => `tsvmm/${VMM_LABEL[v]}`),
  ];
  const ddRows: Cell[][] = cases.map((c) => {
    const r = new Map(vmms.map((v) => [v, rate(c, ddSummary(v, c.name))]));
    const t = r.get('tsvmm') ?? null;
    return [
      `${c.name} x ${c.count} (${((c.count * c.bytesPerBlock) / 2 ** 20).toFixed(0)} MiB)`,
      ...vmms.map((v) => (r.get(v) === null ? null : round(r.get(v)!))),
      ...vmms.filter((v) => v !== 'tsvmm').map((v) => (t !== null && r.get(v) ? round(t / r.get(v)!) : null)),
    ];
  });
  const iopsRows: Cell[][] = cases
    .filter((c) => c.bs === '4k')
    .map((c) => {
      const r = new Map(vmms.map((v) => [v, rate(c, ddSummary(v, c.name))]));
      return [
        `${c.name}: IOPS`,
        ...vmms.map((v) => (r.get(v) === null ? null : round((r.get(v)! * 2 ** 20) / 4096))),
        ...vmms.filter((v) => v !== 'tsvmm').map(() => null),
      ];
    });
  const ping = new Map(
    vmms.map((v) => {
      const all = (results.get(v) ?? []).flatMap((r) => r.pingMs);
      return [v, all.length ? summarize(all) : null];
    }),
  );
  const pingRow = (label: string, pick: (s: Summary) => number): Cell[] => {
    const t = ping.get('tsvmm');
    return [
      label,
      ...vmms.map((v) => (ping.get(v) ? round(pick(ping.get(v)!)) : null)),
      ...vmms.filter((v) => v !== 'tsvmm').map((v) => (t && ping.get(v) ? round(pick(t) / pick(ping.get(v)!)) : null)),
    ];
  };
  const pingHeader = [
    'ping guest -> tap host end',
    ...vmms.map((v) => `${VMM_LABEL[v]} ms`),
    ...vmms.filter((v) => v !== 'tsvmm').map((v) => `tsvmm/${VMM_LABEL[v]}`),
  ];
  const title =
    `linux-io: Debian ${kernel.release} (PVH vmlinux), -m ${RAM}, 1 vCPU; ${diskBytes >> 20} MiB raw image in ${IMAGE_DIR}; ` +
    `median of ${RUNS} boots x ${REPS} rounds per VMM (QEMU ${q.qemu?.version ?? 'not run'}, -accel kvm, cache=writeback, vhost off)\n` +
    '> 1 in a ratio column: tsvmm moves more MiB/s';
  const text = [
    formatTable(title, header, [...ddRows, ...iopsRows]),
    formatTable(
      `ping: ${PINGS} back-to-back (-A) round trips per boot, over virtio-net and a tap; < 1 in a ratio column: tsvmm's round trip is shorter`,
      pingHeader,
      [pingRow('round trip, median', (s) => s.median), pingRow('round trip, min', (s) => s.min)],
    ),
  ].join('\n\n');
  process.stdout.write(`${text}\n`);
  for (const f of failures) process.stdout.write(`FAILED: ${f.split('\n')[0]}\n`);
  const path = writeResult('linux-io', {
    parameters: { runs: RUNS, reps: REPS, ram: RAM, diskBytes, pings: PINGS, kernel: kernel.release },
    qemu: q.qemu ? { version: q.qemu.version, argv0: q.qemu.argv[0] } : `skipped: ${q.reason}`,
    vmms,
    samples: Object.fromEntries(
      vmms.map((v) => [
        v,
        (results.get(v) ?? []).map((r) => ({ ddSeconds: Object.fromEntries(r.dd), pingMs: r.pingMs })),
      ]),
    ),
    wallMs: Object.fromEntries(wallMs),
    failures,
    tables: text,
  });
  log(`wrote ${path}`);
  if (failures.length) {
    log(`scratch files kept in ${dir}`);
    process.exitCode = 1;
  } else {
    removeScratch(dir);
  }
}

function median(xs: readonly number[]): number {
  return xs.length ? summarize(xs).median : NaN;
}

function mibps(c: { count: number; bytesPerBlock: number }, seconds: number): string {
  return ((c.count * c.bytesPerBlock) / 2 ** 20 / seconds).toFixed(1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchLinuxIo();
}
