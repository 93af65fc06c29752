// bench/boot: process start → kernel entry → first kernel output → (on VMX/SVM) init → power-off (process exit),
// for tsvmm and for QEMU -M microvm and -M pc with the same kernel (Debian's generic kernel, the vmlinux entered
// through PVH: test/support/linux-guest.ts), initrd and command line, in one run, with the ratios; the same for the
// tiny hello guest (against -M microvm). See docs/bench.md for the method. `node dist/bench/boot.js`
//
// Environment: TSVMM_BENCH_BOOT_RUNS (runs per case, default 5, also in the rig), TSVMM_QEMU (the QEMU binary).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readFileSync, rmSync } from 'node:fs';
import { buildGuest } from '../examples/guests/build.js';
import { QEMU_BINARY } from '../examples/guests/qemu-runner.js';
import { repoRoot } from '../test/support/cc.js';
import { linuxGuestKernel } from '../test/support/linux-guest.js';
import { kvmIsPvm, PVM_NO_USER_SPACE } from '../test/support/kvm-backend.js';
import { kvmMissing } from '../kvm/testing/test-guest.js';
import { findBusybox } from '../src/images/busybox.js';
import { writeInitramfs } from '../src/images/initramfs.js';
import { envInt } from './lib/env.js';
import { summarize, type Summary } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, guardMs } from './lib/where.js';
import { runWatched, sinceSpawn, type WatchedRun } from './boot/watch.js';
import { qemuEntry, qemuTraceArgs, tsvmmMarks, writeTimeOriginPreload } from './boot/observe.js';
import { defaultQemu } from './linux/vmms.js';

const RAM = '512M';
const HELLO_RAM = '64M';
/** The bundled command users run. */
const BUNDLE = join(repoRoot, 'dist', 'tsvmm.mjs');
/** What the bench's /init prints before `poweroff -f`. */
const INIT_MARKER = 'bench-boot: init reached';
const HELLO_LINE = 'Hello from tsvmm guest';
/** isa-debug-exit's status for a guest that writes 0. */
const GUEST_EXIT_OK = 1;
const BOOT_TIMEOUT_S = 120;
/** tsvmm's start-up marks, in order (src/cli/main.ts). */
const TSVMM_MARKS = [
  'node-origin',
  'main',
  'threads-started',
  'configured',
  'modules-loaded',
  'machine-created',
  'running',
] as const;

type Vmm = 'tsvmm' | 'qemu';
/** The QEMU machines the Linux boot runs on (hello runs on microvm only). */
const MACHINES = ['microvm', 'pc'] as const;
type Machine = (typeof MACHINES)[number];
interface Command {
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

/** One Linux boot's times, ms from spawn (absent: not observed in this kind of run). */
interface LinuxSample {
  handover?: number;
  entry?: number;
  firstOutput: number;
  banner: number;
  init?: number;
  exit?: number;
  entryToOutput?: number;
  marks?: Record<string, number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function failRun(what: string, run: WatchedRun, why: string): never {
  throw new Error(
    `${what}: ${why} (status ${run.status ?? run.signal}${run.timedOut ? ', timed out' : ''})\n` +
      `--- stdout (first 1500 bytes) ---\n${run.stdout.slice(0, 1500)}\n--- stderr ---\n${run.stderr.slice(-1500)}`,
  );
}

export async function benchBoot(): Promise<void> {
  const RUNS = envInt('TSVMM_BENCH_BOOT_RUNS', 5);
  const dir = scratchDir('boot');
  const t0 = performance.now();
  const log = (line: string) =>
    process.stderr.write(`bench/boot [${((performance.now() - t0) / 1000).toFixed(1)} s]: ${line}\n`);

  const kvm = kvmMissing();
  if (kvm) throw new Error(`bench/boot needs KVM: ${kvm}`);
  const pvm = kvmIsPvm();
  const qemuFound = defaultQemu();
  const qemuMissing = qemuFound.reason;
  const qemuVersion = qemuFound.qemu?.version ?? '-';
  const found = linuxGuestKernel();
  const busybox = findBusybox();
  const initSkipped = pvm
    ? PVM_NO_USER_SPACE
    : busybox === null
      ? 'no static busybox (apt-get install busybox-static) for the initramfs'
      : null;
  if (qemuMissing) log(`QEMU skipped: ${qemuMissing}`);
  if (found.reason) log(`Linux skipped: ${found.reason}`);
  if (initSkipped) log(`init skipped: ${initSkipped}`);

  // The initrd goes to both VMMs on every host (loading it is part of start-up); its /init prints the marker.
  let initrd: string | null = null;
  if (busybox !== null) {
    initrd = join(dir, 'initrd.img');
    writeInitramfs(initrd, { init: `#!/bin/sh\necho '${INIT_MARKER}'\npoweroff -f\n` });
  }
  // PVM: the guest's CPUID must not offer XSAVE/CX16 (the emulator lacks them), as in the partial boot test.
  const cmdline = ['console=ttyS0', 'earlyprintk=serial,ttyS0', ...(pvm ? ['noxsave'] : ['panic=-1'])].join(' ');
  const preload = writeTimeOriginPreload(dir);
  const traceLog = join(dir, 'qemu-trace.log');

  const tsvmm = (extra: string[]): Command => ({
    command: process.execPath,
    args: [
      '-r',
      preload,
      BUNDLE,
      'run',
      '-cpu',
      pvm ? 'pvm-safe' : 'host',
      '-serial',
      'stdio',
      '-no-reboot',
      '--timeout',
      String(BOOT_TIMEOUT_S),
      ...extra,
    ],
    env: { ...process.env, TSVMM_TRACE_STARTUP: '1' },
  });
  const qemu = (extra: string[], machine: Machine = 'microvm'): Command => ({
    command: QEMU_BINARY,
    args: [
      '-M',
      machine,
      '-accel',
      'kvm',
      '-cpu',
      pvm ? 'host,-xsave,-cx16' : 'host',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-no-reboot',
      ...extra,
    ],
  });
  const linuxArgs = found.kernel
    ? ['-m', RAM, '-kernel', found.kernel.vmlinux, ...(initrd ? ['-initrd', initrd] : []), '-append', cmdline]
    : [];
  const helloArgs = (hello: string, vmm: Vmm) => [
    '-m',
    HELLO_RAM,
    '-device',
    vmm === 'tsvmm' ? 'isa-debug-exit' : 'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel',
    hello,
  ];

  // ---- one Linux boot --------------------------------------------------------------------------------------------
  const patterns = { banner: /Linux version [^\n]*\n/, init: new RegExp(INIT_MARKER) };
  /** On PVM a run ends at the banner (the kernel stops at the emulator's wall ~a minute later); else at power-off. */
  const bootLinux = async (vmm: Vmm, traced: boolean, machine: Machine = 'microvm'): Promise<LinuxSample> => {
    const what = `${vmm === 'tsvmm' ? vmm : `QEMU -M ${machine}`}${traced ? ' (traced)' : ''} Linux boot`;
    rmSync(traceLog, { force: true });
    const c =
      vmm === 'tsvmm' ? tsvmm(linuxArgs) : qemu([...linuxArgs, ...(traced ? qemuTraceArgs(traceLog) : [])], machine);
    const stopEarly = pvm || traced;
    const run = await runWatched(c.command, c.args, {
      patterns,
      env: c.env,
      timeoutMs: (BOOT_TIMEOUT_S + 30) * 1000,
      stopAt: stopEarly ? 'banner' : undefined,
      stopSignal: traced ? 'SIGTERM' : 'SIGKILL',
    });
    const banner = run.seen.get('banner');
    if (run.firstOutputNs === null || banner === undefined)
      failRun(what, run, 'no "Linux version" line on the serial console');
    if (!/^\s*(\[[\s\d.]+\] )?Linux version/.test(run.stdout))
      failRun(what, run, "the first output is not the kernel's banner");
    const sample: LinuxSample = { firstOutput: sinceSpawn(run, run.firstOutputNs), banner: sinceSpawn(run, banner) };
    if (!stopEarly) {
      const init = run.seen.get('init');
      if (init === undefined) failRun(what, run, `no "${INIT_MARKER}" from /init`);
      if (run.status !== 0) failRun(what, run, 'the VMM did not exit 0 after the guest powered off');
      sample.init = sinceSpawn(run, init);
      sample.exit = sinceSpawn(run, run.exitNs);
    }
    if (vmm === 'tsvmm') {
      const marks = tsvmmMarks(run.stderr);
      sample.marks = Object.fromEntries([...marks].map(([k, ns]) => [k, sinceSpawn(run, ns)]));
      sample.handover = sample.entry = sample.marks.running;
      sample.entryToOutput = sample.firstOutput - sample.entry;
    } else if (traced) {
      const e = qemuEntry(readFileSync(traceLog, 'utf8'));
      sample.handover = sinceSpawn(run, e.firstRunNs);
      // -M pc's PVH option ROM is not qboot: if it read no kernel_entry, the entry rows stay empty for it.
      if (e.kernelEntryNs === null && machine === 'microvm')
        failRun(what, run, 'the firmware never read kernel_entry from fw_cfg (trace log)');
      if (e.kernelEntryNs !== null) {
        sample.entry = sinceSpawn(run, e.kernelEntryNs);
        sample.entryToOutput = sample.firstOutput - sample.entry;
      }
    }
    return sample;
  };

  // ---- the hello guest -------------------------------------------------------------------------------------------
  const bootHello = async (vmm: Vmm, hello: string): Promise<{ output: number; exit: number; entry?: number }> => {
    const c = vmm === 'tsvmm' ? tsvmm(helloArgs(hello, vmm)) : qemu(helloArgs(hello, vmm));
    const run = await runWatched(c.command, c.args, {
      patterns: { hello: new RegExp(HELLO_LINE) },
      env: c.env,
      timeoutMs: guardMs(60_000),
    });
    const seen = run.seen.get('hello');
    if (seen === undefined || run.status !== GUEST_EXIT_OK)
      failRun(`${vmm} hello`, run, `expected "${HELLO_LINE}" and status ${GUEST_EXIT_OK}`);
    return {
      output: sinceSpawn(run, seen),
      exit: sinceSpawn(run, run.exitNs),
      entry: vmm === 'tsvmm' ? sinceSpawn(run, tsvmmMarks(run.stderr).get('running')!) : undefined,
    };
  };

  const hello = (await buildGuest('hello')).path;
  log(`warm-up: one hello run per VMM (tsvmm's code cache, page cache); then ${RUNS} runs per case, interleaved`);
  await bootHello('tsvmm', hello);
  if (!qemuMissing) await bootHello('qemu', hello);

  const linux: Record<'tsvmm' | Machine | `${Machine}Traced`, LinuxSample[]> = {
    tsvmm: [],
    microvm: [],
    microvmTraced: [],
    pc: [],
    pcTraced: [],
  };
  const helloRuns: Record<Vmm, { output: number; exit: number; entry?: number }[]> = { tsvmm: [], qemu: [] };
  for (let i = 0; i < RUNS; i++) {
    helloRuns.tsvmm.push(await bootHello('tsvmm', hello));
    if (!qemuMissing) helloRuns.qemu.push(await bootHello('qemu', hello));
    if (found.kernel) {
      log(`Linux run ${i + 1}/${RUNS}: tsvmm`);
      linux.tsvmm.push(await bootLinux('tsvmm', false));
      if (!qemuMissing) {
        for (const machine of MACHINES) {
          log(`Linux run ${i + 1}/${RUNS}: QEMU -M ${machine}, then traced`);
          linux[machine].push(await bootLinux('qemu', false, machine));
          linux[`${machine}Traced`].push(await bootLinux('qemu', true, machine));
        }
      }
    }
    await sleep(100);
  }

  // ---- tables ------------------------------------------------------------------------------------------------
  const sum = (xs: (number | undefined)[]): Summary | null =>
    xs.length && xs.every((x) => x !== undefined) ? summarize(xs as number[]) : null;
  const cells = (s: Summary | null): Cell[] => (s ? [round(s.median), round(s.min)] : [null, null]);
  const ratio = (a: Summary | null, b: Summary | null): Cell => (a && b ? round(a.median / b.median) : null);
  const row = (label: string, a: Summary | null, b: Summary | null): Cell[] => [
    label,
    ...cells(a),
    ...cells(b),
    ratio(a, b),
  ];
  const pick = (xs: LinuxSample[], k: keyof LinuxSample) => sum(xs.map((x) => x[k] as number | undefined));
  const header = ['ms from spawn', 'tsvmm med', 'tsvmm min', 'QEMU med', 'QEMU min', 'tsvmm/QEMU'];

  // Linux: tsvmm against each QEMU machine; QEMU's entry rows come from its traced runs, the others from untraced.
  const linuxHeader = [
    'ms from spawn',
    'tsvmm med',
    'tsvmm min',
    ...MACHINES.flatMap((m) => [`${m} med`, `${m} min`]),
    ...MACHINES.map((m) => `tsvmm/${m}`),
  ];
  const linuxRow = (label: string, key: keyof LinuxSample, traced: boolean): Cell[] => {
    const t = pick(linux.tsvmm, key);
    const qs = MACHINES.map((m) => pick(linux[traced ? (`${m}Traced` as const) : m], key));
    return [label, ...cells(t), ...qs.flatMap(cells), ...qs.map((q) => ratio(t, q))];
  };
  const linuxRatio = (key: keyof LinuxSample, traced: boolean, m: Machine) =>
    ratio(pick(linux.tsvmm, key), pick(linux[traced ? (`${m}Traced` as const) : m], key));
  const out: string[] = [];
  if (found.kernel) {
    const release = found.kernel.release;
    out.push(
      formatTable(
        `boot: Debian ${release} vmlinux (PVH entry), -m ${RAM}, 1 vCPU, initrd ${initrd ? 'yes' : 'no'}; tsvmm vs QEMU ${qemuVersion} -M microvm and -M pc (-accel kvm), median and min of ${RUNS}\n` +
          `command line: ${cmdline}; > 1 in a ratio column: tsvmm takes longer`,
        linuxHeader,
        [
          linuxRow('VMM starts the guest (tsvmm: trace "running"; QEMU: 1st KVM_RUN, firmware) *', 'handover', true),
          linuxRow('kernel entry (tsvmm: = running; QEMU: KVM_RUN after fw_cfg kernel_entry) *', 'entry', true),
          linuxRow('first kernel output (first serial byte on stdout)', 'firstOutput', false),
          linuxRow('"Linux version" line complete', 'banner', false),
          linuxRow('  kernel entry -> first output (guest time before its console) *', 'entryToOutput', true),
          ...(initSkipped
            ? [
                [
                  `init marker: skipped (${pvm ? 'PVM: no user space' : 'no busybox'})`,
                  ...linuxHeader.slice(1).map(() => null),
                ] as Cell[],
              ]
            : [
                linuxRow(`init marker ("${INIT_MARKER}")`, 'init', false),
                linuxRow('power-off: process exit after poweroff -f', 'exit', false),
              ]),
        ],
      ),
    );
    const markRows = TSVMM_MARKS.map((m) => {
      const s = sum(linux.tsvmm.map((x) => x.marks?.[m]));
      return [m, ...cells(s)] as Cell[];
    });
    out.push(
      formatTable(
        `tsvmm start-up marks in the Linux runs (TSVMM_TRACE_STARTUP=1), ms from spawn`,
        ['mark', 'median', 'min'],
        markRows,
      ),
    );
  } else {
    out.push(`boot: Linux skipped: ${found.reason}`);
  }
  const H = {
    entry: sum(helloRuns.tsvmm.map((r) => r.entry)),
    output: [sum(helloRuns.tsvmm.map((r) => r.output)), qemuMissing ? null : sum(helloRuns.qemu.map((r) => r.output))],
    exit: [sum(helloRuns.tsvmm.map((r) => r.exit)), qemuMissing ? null : sum(helloRuns.qemu.map((r) => r.exit))],
  } as const;
  out.push(
    formatTable(
      `hello guest (multiboot, -m ${HELLO_RAM}): tsvmm vs QEMU -M microvm, median and min of ${RUNS}`,
      header,
      [
        row('VMM starts the guest (tsvmm: trace "running")', H.entry, null),
        row(`"${HELLO_LINE}" on the serial console`, ...H.output),
        row('process exit (isa-debug-exit)', ...H.exit),
      ],
    ),
  );
  const notes = [
    "* QEMU's entry rows come from separate traced runs (trace events to a -D file); its other rows from untraced runs.",
    ...(pvm
      ? [
          'PVM host: every guest instruction runs in KVM\'s emulator, so "entry -> first output" is mostly emulation time.',
        ]
      : []),
  ];
  const text = `${out.join('\n\n')}\n${notes.join('\n')}`;
  process.stdout.write(`${text}\n`);

  const path = writeResult('boot', {
    parameters: {
      runs: RUNS,
      ram: RAM,
      cmdline,
      kernel: found.kernel ?? `skipped: ${found.reason}`,
      initrd: initrd !== null,
      qemu: qemuMissing ? `skipped: ${qemuMissing}` : `${QEMU_BINARY} ${qemuVersion}`,
      init: initSkipped ? `skipped: ${initSkipped}` : 'measured',
    },
    linux,
    hello: helloRuns,
    ratios: Object.fromEntries(
      MACHINES.map((m) => [
        m,
        {
          firstKernelOutput: linuxRatio('firstOutput', false, m),
          kernelEntry: linuxRatio('entry', true, m),
          init: linuxRatio('init', false, m),
          exit: linuxRatio('exit', false, m),
        },
      ]),
    ),
    helloOutputRatio: ratio(H.output[0], H.output[1]),
    tables: text,
  });
  removeScratch(dir);
  log(`wrote ${path}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${benchWhere().line}\n`);
  await benchBoot();
}
