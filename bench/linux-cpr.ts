// bench/linux-cpr: how long a checkpoint/restart pauses a running Linux guest, per CPR flow, under tsvmm and under
// QEMU 10 (Debian's QEMU 7.2 has neither cpr-reboot nor cpr-transfer), measured the same way for both: the guest's
// user-space ticker writes a byte to COM2 every ~1 ms, each VMM passes it to its stdout, and the pause is the
// arrival here of the old process's last byte to the new process's first (bench/linux/cpr-guest.ts). One boot per
// VMM, then a chain of flows, each moving the guest to a new process (bench/linux/cpr-flows.ts). See docs/bench.md.
// `node dist/bench/linux-cpr.js`
//
// Environment: TSVMM_BENCH_LINUX_CPR_RUNS (pauses per flow and VMM; default 5, 3 in the rig),
// TSVMM_BENCH_LINUX_CPR_FLOWS (a comma list of reboot, reboot-prestarted, transfer), TSVMM_RIG_QEMU (a QEMU ≥ 10).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildLinuxGuestInitramfs, linuxGuestCmdline } from '../test/support/linux-guest.js';
import { SHM_DIR } from './cpr-pause/cleanup.js';
import { shmRefusal } from './cpr-pause/host.js';
import { envInt } from './lib/env.js';
import { linuxBenchKernel } from './linux/host-check.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { benchWhere, guardMs, rigDefault } from './lib/where.js';
import { buildTicker, TICKER_PATH, tickerInit } from './linux/cpr-guest.js';
import {
  LINUX_CPR_FLOWS,
  runLinuxFlow,
  type CprVmmKind,
  type FlowRecord,
  type LinuxCprFlow,
} from './linux/cpr-flows.js';
import { TickVmm } from './linux/tick-vmm.js';
import { qemu10, qemuArgv, tsvmmArgv } from './linux/vmms.js';

const RAM = '512M';
/** Ticks before the first pause (the guest has booted and ticks steadily) and after each one. */
const WARM_TICKS = 300;
const AFTER_TICKS = 300;

export async function benchLinuxCpr(): Promise<void> {
  const RUNS = envInt('TSVMM_BENCH_LINUX_CPR_RUNS', rigDefault(5, 3));
  const flows = (process.env.TSVMM_BENCH_LINUX_CPR_FLOWS || LINUX_CPR_FLOWS.join(','))
    .split(',')
    .map((f) => f.trim()) as LinuxCprFlow[];
  for (const f of flows) if (!LINUX_CPR_FLOWS.includes(f)) throw new Error(`unknown flow '${f}' (${LINUX_CPR_FLOWS})`);
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/linux-cpr [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  const kernel = linuxBenchKernel('linux-cpr');
  if (!kernel) return;
  const shm = shmRefusal(512 * 2 ** 20);
  if (shm) throw new Error(`bench/linux-cpr: ${shm}`);
  const q = qemu10();
  if (!q.qemu) log(`QEMU 10 column skipped: ${q.reason}`);

  const dir = scratchDir('linux-cpr');
  const initrd = join(dir, 'initrd.img');
  buildLinuxGuestInitramfs(initrd, kernel, tickerInit, { modules: [], files: [`${buildTicker()}=${TICKER_PATH}`] });
  const timeoutMs = guardMs(60_000);

  const machine = (ramPath: string) => [
    '-m',
    RAM,
    '-object',
    `memory-backend-file,id=ram0,size=${RAM},mem-path=${ramPath},share=on`,
    '-machine',
    'memory-backend=ram0',
    '-kernel',
    kernel.vmlinux,
    '-initrd',
    initrd,
    '-append',
    linuxGuestCmdline('earlyprintk=serial,ttyS0'),
    '-no-reboot',
  ];
  // The same machine under both VMMs; QEMU also needs its own ROMs in shared memory for cpr-transfer.
  const kindFor = (id: 'tsvmm' | 'qemu', ramPath: string): CprVmmKind => {
    const args = machine(ramPath);
    return {
      id,
      argv: (extra, qmpPath, serialPath) => {
        // COM1: the kernel's console, to a file; COM2: the ticks, to stdout.
        const own = [
          '-serial',
          `file:${serialPath}`,
          '-serial',
          'stdio',
          ...extra,
          '-qmp',
          `unix:${qmpPath},server=on,wait=off`,
        ];
        return id === 'tsvmm'
          ? tsvmmArgv([...args, ...own])
          : qemuArgv(q.qemu!, 'pc', [...args, '-machine', 'aux-ram-share=on', ...own]);
      },
      transferMain: (path) => (id === 'tsvmm' ? 'defer' : `unix:${path}`),
    };
  };
  const kinds = [
    { id: 'tsvmm' as const, label: 'tsvmm' },
    ...(q.qemu ? [{ id: 'qemu' as const, label: `QEMU ${q.qemu.version} -M pc` }] : []),
  ];

  const records = new Map<string, FlowRecord[]>();
  const failures: string[] = [];
  for (const { id, label } of kinds) {
    const ramPath = join(SHM_DIR, `tsvmm-bench-linux-cpr-${process.pid}-${id}`);
    const kind = kindFor(id, ramPath);
    let n = 0;
    const nextName = () => `${id}-${n++}`;
    const list: FlowRecord[] = [];
    records.set(label, list);
    const statePath = join(SHM_DIR, `tsvmm-bench-linux-cpr-${process.pid}.state`);
    let cur: TickVmm | null = null;
    try {
      log(`${label}: boot`);
      cur = new TickVmm(nextName(), dir, (qmp, serial) => kind.argv([], qmp, serial));
      await cur.waitTicks(WARM_TICKS, guardMs(120_000));
      await cur.connect(timeoutMs);
      log(`${label}: the guest ticks; ${RUNS} rounds of ${flows.join(', ')}`);
      for (let round = 0; round < RUNS; round++) {
        for (const flow of flows) {
          const setup = { kind, dir, statePath, timeoutMs, afterTicks: AFTER_TICKS, nextName };
          const { next, record } = await runLinuxFlow(flow, cur, setup);
          cur = next;
          list.push(record);
          log(
            `${label} ${flow} ${round + 1}/${RUNS}: pause ${record.gapMs.toFixed(2)} ms` +
              `${record.vmmPauseMs === null ? '' : ` (VMM's view ${record.vmmPauseMs.toFixed(2)})`}` +
              `${record.downtimeMs === null ? '' : `, query-migrate downtime ${record.downtimeMs} ms`}` +
              `${record.continuous ? '' : ', TICKS NOT CONTINUOUS'}`,
          );
        }
      }
    } catch (e) {
      failures.push(`${label}: ${(e as Error).message}`);
      log(`${label}: FAILED: ${(e as Error).message}`);
    } finally {
      if (cur?.qmp && cur.running) await cur.qmp.execute('quit').catch(() => undefined);
      await cur?.kill();
      rmSync(ramPath, { force: true });
      rmSync(statePath, { force: true });
    }
  }

  // ---- table: pause per flow, both VMMs, ratio ------------------------------------------------------------------
  const [tLabel, qLabel] = [kinds[0].label, kinds[1]?.label];
  const pick = (label: string | undefined, flow: LinuxCprFlow, f: (r: FlowRecord) => number | null): Summary | null => {
    const xs = (label ? (records.get(label) ?? []) : []).filter((r) => r.flow === flow).map(f);
    return xs.length && xs.every((x) => x !== null) ? summarize(xs as number[]) : null;
  };
  const rows: Cell[][] = flows.map((flow) => {
    const t = pick(tLabel, flow, (r) => r.gapMs);
    const qq = pick(qLabel, flow, (r) => r.gapMs);
    const all = [...(records.get(tLabel) ?? []), ...(qLabel ? (records.get(qLabel) ?? []) : [])].filter(
      (r) => r.flow === flow,
    );
    return [
      flow,
      t ? round(t.median) : null,
      t ? `${round(t.min)}-${round(t.max)}` : null,
      qq ? round(qq.median) : null,
      qq ? `${round(qq.min)}-${round(qq.max)}` : null,
      t && qq ? round(t.median / qq.median) : null,
      pick(tLabel, flow, (r) => r.vmmPauseMs)?.median ?? null,
      pick(qLabel, flow, (r) => r.downtimeMs)?.median ?? null,
      all.length ? (all.every((r) => r.continuous) ? 'yes' : 'NO') : null,
    ].map((c) => (typeof c === 'number' ? round(c) : c));
  });
  const title =
    `linux-cpr: Debian ${kernel.release} (PVH vmlinux), -m ${RAM} on ${SHM_DIR} (share=on), 1 vCPU, a ~1 ms user-space tick to COM2; ` +
    `median and min-max of ${RUNS} pauses per flow (ms: old process's last tick → new process's first, as received on their stdout)\n` +
    `QEMU: ${q.qemu ? `${q.qemu.version}, -accel kvm -M pc,aux-ram-share=on` : `not run (${q.reason})`}; < 1 in the ratio column: tsvmm pauses the guest for less`;
  const table = formatTable(
    title,
    [
      'flow',
      'tsvmm',
      'tsvmm min-max',
      'QEMU',
      'QEMU min-max',
      'tsvmm/QEMU',
      "tsvmm's own view",
      'QEMU downtime',
      'ticks continuous',
    ],
    rows,
  );
  process.stdout.write(`${table}\n`);
  process.stdout.write(
    "tsvmm's own view: x-query-cpr-timings pause-us (old stop-vcpus → new resume); QEMU downtime: the old process's query-migrate (its side only)\n",
  );
  for (const f of failures) process.stdout.write(`FAILED: ${f.split('\n')[0]}\n`);
  const path = writeResult('linux-cpr', {
    parameters: {
      runs: RUNS,
      flows,
      ram: RAM,
      kernel: kernel.release,
      warmTicks: WARM_TICKS,
      afterTicks: AFTER_TICKS,
    },
    qemu: q.qemu ? { version: q.qemu.version, argv: q.qemu.argv } : `skipped: ${q.reason}`,
    records: Object.fromEntries(records),
    failures,
    table,
  });
  log(`wrote ${path}`);
  if (failures.length) {
    log(`scratch files kept in ${dir}`);
    process.exitCode = 1;
  } else {
    removeScratch(dir);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchLinuxCpr();
}
