// bench/cpr-parts: pieces of the cpr-transfer pause, each measured on its own and shown beside the pause budget
// (2 ms, see bench/cpr-pause): the CPR channel's round trip between two processes, one vCPU state's conversion to
// and from its vmstate record, and the cost of waiting for a ready fd inline (poll(2)) against on a pool thread.
// Tests once asserted these times; a test must pass on a slow or loaded machine, so they are figures here and the
// tests check only that the same operations are exact. `node dist/bench/cpr-parts.js` (or `node dist/bench/run.js
// cpr-parts`). The channel's far end is this script again, in a child process: `cpr-parts.js peer SOCKET`.
//
// Environment: TSVMM_BENCH_PARTS_ROUNDS (measured round trips per channel case, after 20 unmeasured; default 300),
// TSVMM_BENCH_PARTS_CONVERSIONS (conversions per vCPU case, default 1000), TSVMM_BENCH_PARTS_POLLS (polls per poll
// case, default 2000).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as libc from '../src/sys/libc.js';
import { closeAll, pollAsync, pollSync, sendWithFds, socketPair, POLLIN } from '../src/sys/socket.js';
import { CprChannel, CprChannelError, CprListener, type ReceivedMessage } from '../cpr/flows/channel.js';
import { newRecord } from '../cpr/vmstate/vmstate.js';
import {
  vcpuStateDescriptor,
  vcpuStateToRecord,
  recordToVcpuState,
  MAX_CPUID_ENTRIES,
  MAX_MSRS,
  MAX_XCRS,
  MAX_XSAVE_BYTES,
  LAPIC_BYTES,
} from '../cpr/kvm-state/vcpu.js';
import { kvmMissing, RealModeGuest } from '../kvm/testing/test-guest.js';
import { envInt } from './lib/env.js';
import { removeScratch, scratchDir, writeResult } from './lib/output.js';
import { benchWhere, guardMs } from './lib/where.js';
import { median } from './lib/stats.js';
import { formatTable, round, type Cell } from './lib/table.js';

/** The cpr-transfer pause tsvmm aims for, whole (docs/bench.md, bench/cpr-pause: "target ≤ 2 ms raw"). */
const PAUSE_BUDGET_US = 2000;
/** What the vCPU conversion test asserted before it became this figure: a quarter of the pause per direction. */
const CONVERSION_REFERENCE_US = 500;
const WARM_UP_ROUNDS = 20;

const log = (line: string) => process.stderr.write(`bench/cpr-parts: ${line}\n`);
const micros = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1000;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// ---- the channel's far end (the "new" process) --------------------------------------------------------------------

async function runPeer(path: string): Promise<void> {
  const listener = CprListener.bind(path);
  process.stdout.write('listening\n');
  const channel = await listener.accept(guardMs(60_000));
  listener.close();
  for (;;) {
    let m: ReceivedMessage;
    try {
      m = channel.receiveSync(guardMs(60_000));
    } catch (e) {
      if (e instanceof CprChannelError && e.code === 'closed') break;
      throw e;
    }
    if (m.type === 'echo') channel.send({ type: 'echo', header: m.header, payload: m.payload, fds: m.fds });
    else channel.send({ type: 'ack' });
    closeAll(m.fds);
  }
  channel.close();
}

// ---- channel round trips -------------------------------------------------------------------------------------------

interface ChannelCase {
  label: string;
  size: number;
  withFd: boolean;
  reply: 'echo' | 'ack';
}

const CHANNEL_CASES: readonly ChannelCase[] = [
  { label: '1 fd + 4 KiB, echoed (fd + 4 KiB back)', size: 4096, withFd: true, reply: 'echo' },
  { label: '1 fd + 4 KiB, acked', size: 4096, withFd: true, reply: 'ack' },
  { label: '64 KiB, echoed', size: 65536, withFd: false, reply: 'echo' },
  { label: '64 KiB, acked', size: 65536, withFd: false, reply: 'ack' },
];

interface ChannelResult {
  label: string;
  rounds: number;
  p50: number;
  p99: number;
  max: number;
  samples: number[];
}

async function channelRoundTrips(rounds: number, dir: string): Promise<ChannelResult[]> {
  const path = join(dir, 'peer.sock');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'peer', path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) =>
      line === 'listening' ? resolve() : reject(new Error(`peer said ${line}`)),
    );
    child.once('exit', (code) => reject(new Error(`peer exited with ${code} before listening`)));
  });
  const channel = CprChannel.connect(path);
  const memfd = libc.memfdCreate('cpr-parts', libc.MFD_CLOEXEC);
  libc.ftruncate(memfd, 4096);
  const results: ChannelResult[] = [];
  try {
    for (const c of CHANNEL_CASES) {
      const payload = new Uint8Array(c.size).fill(0xa5);
      const samples: number[] = [];
      for (let i = 0; i < WARM_UP_ROUNDS + rounds; i++) {
        const t0 = process.hrtime.bigint();
        channel.send({ type: c.reply, header: { i }, payload, fds: c.withFd ? [memfd] : [] });
        const back = channel.receiveSync(guardMs(10_000)); // as in the pause window: a blocking receive, no thread hop
        const us = micros(t0);
        closeAll(back.fds);
        // The bench fails rather than report the time of a round trip that went wrong.
        const expectedFds = c.reply === 'echo' && c.withFd ? 1 : 0;
        const expectedBytes = c.reply === 'echo' ? c.size : 0;
        if (back.type !== c.reply || back.fds.length !== expectedFds || back.payload.length !== expectedBytes) {
          throw new Error(
            `${c.label}: round ${i} came back as '${back.type}' with ${back.fds.length} fds and ${back.payload.length} bytes`,
          );
        }
        if (i >= WARM_UP_ROUNDS) samples.push(us); // after warm-up (JIT, page faults)
      }
      const sorted = [...samples].sort((a, b) => a - b);
      results.push({
        label: c.label,
        rounds,
        p50: percentile(sorted, 0.5),
        p99: percentile(sorted, 0.99),
        max: sorted[sorted.length - 1],
        samples,
      });
      log(`channel ${c.label}: p50 ${percentile(sorted, 0.5).toFixed(0)} µs`);
    }
  } finally {
    libc.close(memfd);
    channel.close();
  }
  const status = await exited;
  if (status !== 0) throw new Error(`the peer process exited with ${status}`);
  return results;
}

// ---- vCPU state ↔ record -----------------------------------------------------------------------------------------

/** Real-mode loop: ebx counts up and every pass writes it to port 0x80 (one exit per pass). */
const COUNTER_LOOP = [0xba, 0x80, 0x00, 0x66, 0x43, 0x66, 0x89, 0xd8, 0x66, 0xef, 0xeb, 0xf7];

function medianMicros(runs: number, fn: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(micros(t0));
  }
  return median(times);
}

interface ConversionFigures {
  source: string;
  getState: number | null;
  intoReused: number;
  intoFresh: number;
  back: number;
}

function conversions(
  state: ReturnType<typeof recordToVcpuState>,
  runs: number,
  source: string,
  getState: (() => void) | null,
): ConversionFigures {
  const record = newRecord(vcpuStateDescriptor);
  for (let i = 0; i < 200; i++) recordToVcpuState(vcpuStateToRecord(state, record)); // warm up
  return {
    source,
    getState: getState ? medianMicros(Math.max(1, runs / 5), getState) : null,
    intoReused: medianMicros(runs, () => vcpuStateToRecord(state, record)),
    intoFresh: medianMicros(Math.max(1, runs / 5), () => vcpuStateToRecord(state)),
    back: medianMicros(runs, () => recordToVcpuState(record)),
  };
}

/** The largest state a record holds: every array at its capacity (zeros), every optional part present. */
function fullCapacityState(): ReturnType<typeof recordToVcpuState> {
  const r = newRecord(vcpuStateDescriptor);
  r.cpuidCount = MAX_CPUID_ENTRIES;
  r.tscKhzPresent = true;
  r.xsavePresent = true;
  r.xsaveLength = MAX_XSAVE_BYTES;
  r.xcrsPresent = true;
  r.xcrsCount = MAX_XCRS;
  r.debugregsPresent = true;
  r.lapicPresent = true;
  r.lapicLength = LAPIC_BYTES;
  r.msrCount = MAX_MSRS;
  r.eventsPresent = true;
  return recordToVcpuState(r);
}

/** A real vCPU's state after it ran (KVM), or null with the reason when /dev/kvm cannot be used. */
function realVcpuConversions(runs: number): ConversionFigures | string {
  const missing = kvmMissing();
  if (missing) return missing;
  const g = new RealModeGuest(COUNTER_LOOP, { irqchip: true });
  try {
    g.runToExit(); // to the first OUT
    g.vcpu.run.immediateExit = 1; // let KVM finish it, as the vCPU loop does before parking
    g.vcpu.runRaw();
    g.vcpu.run.immediateExit = 0;
    const state = g.vcpu.getState();
    const sizes = `${state.cpuid.length} CPUID entries, ${state.msrs.length} MSRs, ${state.xsave?.length ?? 0}-byte XSAVE`;
    return conversions(state, runs, `real vCPU (${sizes})`, () => g.vcpu.getState());
  } finally {
    g.close();
  }
}

// ---- poll(2) inline against a pool thread -------------------------------------------------------------------------

interface PollFigures {
  polls: number;
  inlineUs: number;
  poolThreadUs: number;
}

async function pollCosts(polls: number): Promise<PollFigures> {
  const [a, b] = socketPair();
  try {
    sendWithFds(a, [new Uint8Array(1)]); // always readable: measures the call, not a wait
    const ready = [{ fd: b, events: POLLIN }];
    for (let i = 0; i < 100; i++) {
      pollSync(ready, 1000);
      await pollAsync(ready, 1000);
    } // warm up
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < polls; i++) pollSync(ready, 1000);
    const inlineUs = micros(t0) / polls;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < polls; i++) await pollAsync(ready, 1000);
    const poolThreadUs = micros(t0) / polls;
    return { polls, inlineUs, poolThreadUs };
  } finally {
    closeAll([a, b]);
  }
}

// ---- the run -------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  process.stdout.write(`${benchWhere().line}\n`);
  const rounds = envInt('TSVMM_BENCH_PARTS_ROUNDS', 300);
  const runs = envInt('TSVMM_BENCH_PARTS_CONVERSIONS', 1000);
  const polls = envInt('TSVMM_BENCH_PARTS_POLLS', 2000);
  const dir = scratchDir('cpr-parts');
  const out = process.stdout;

  const channel = await channelRoundTrips(rounds, dir);
  removeScratch(dir);
  const channelTable = formatTable(
    `CPR channel round trip between two processes, µs (${rounds} rounds after ${WARM_UP_ROUNDS} unmeasured; blocking receive)`,
    ['case', 'p50', 'p99', 'max', 'budget (whole pause)', 'p50 / budget'],
    channel.map((c) => [
      c.label,
      round(c.p50),
      round(c.p99),
      round(c.max),
      PAUSE_BUDGET_US,
      round(c.p50 / PAUSE_BUDGET_US),
    ]),
  );
  out.write(`${channelTable}\n\n`);

  const real = realVcpuConversions(runs);
  if (typeof real === 'string') log(`real vCPU column skipped: ${real}`);
  const full = conversions(fullCapacityState(), runs, 'every array at capacity', null);
  const columns = [...(typeof real === 'string' ? [] : [real]), full];
  const vcpuRows: Cell[][] = [
    [
      'getState (KVM ioctls)',
      ...columns.map((c) => (c.getState === null ? null : round(c.getState))),
      null,
      PAUSE_BUDGET_US,
    ],
    ['state → reused record', ...columns.map((c) => round(c.intoReused)), CONVERSION_REFERENCE_US, PAUSE_BUDGET_US],
    ['state → fresh record', ...columns.map((c) => round(c.intoFresh)), null, PAUSE_BUDGET_US],
    ['record → state', ...columns.map((c) => round(c.back)), CONVERSION_REFERENCE_US, PAUSE_BUDGET_US],
  ];
  const vcpuTable = formatTable(
    `One vCPU state ↔ its vmstate record, µs (median of ${runs} conversions; ${runs / 5} for getState and fresh records)`,
    ['operation', ...columns.map((c) => c.source), 'reference', 'budget (whole pause)'],
    vcpuRows,
  );
  out.write(`${vcpuTable}\n${typeof real === 'string' ? `(real vCPU: skipped, ${real})\n` : ''}\n`);

  const poll = await pollCosts(polls);
  const pollTable = formatTable(
    `Waiting for a ready fd, µs per call (${polls} calls each)`,
    ['poll(2)', 'µs per call', 'vs inline'],
    [
      ['inline (pollSync, as receiveSync in the pause)', round(poll.inlineUs), 1],
      [
        'on a pool thread (pollAsync, as receive())',
        round(poll.poolThreadUs),
        round(poll.poolThreadUs / poll.inlineUs),
      ],
    ],
  );
  out.write(`${pollTable}\n`);

  const path = writeResult('cpr-parts', {
    pauseBudgetUs: PAUSE_BUDGET_US,
    conversionReferenceUs: CONVERSION_REFERENCE_US,
    channel: { rounds, warmUp: WARM_UP_ROUNDS, cases: channel },
    vcpu: { runs, columns, realSkipped: typeof real === 'string' ? real : null },
    poll,
    tables: [channelTable, vcpuTable, pollTable],
  });
  log(`wrote ${path}`);
}

if (process.argv[2] === 'peer') await runPeer(process.argv[3]);
else await main();
