// The counter guest (examples/guests: a u64 tick count at guest-physical COUNTER_STATE_ADDR) as a QMP client sees
// it: the count read back with pmemsave, which works whether the vCPUs run or not, and the two facts the QMP tests
// check around `stop` and `cont` — a paused guest does not count, a running one goes on.
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { HANG_GUARD_MS } from './hang-guard.js';
import type { VmProcess } from './vm-process.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let fileSeq = 0;

/** The guest's tick count, through QMP pmemsave into a file in `dir` (removed again). */
export async function counterTicks(vm: VmProcess, dir: string): Promise<bigint> {
  const file = join(dir, `ticks-${process.pid}-${fileSeq++}.bin`);
  await vm.qmp.execute('pmemsave', { val: COUNTER_STATE_ADDR, size: 8, filename: file });
  const value = readFileSync(file).readBigUInt64LE(0);
  rmSync(file);
  return value;
}

/**
 * Waits until the tick count reaches `value` and returns it. How soon a guest gets there depends on the machine, so
 * `timeoutMs` is a hang guard, not a speed bound (unless a test says otherwise).
 */
export async function ticksReach(
  vm: VmProcess,
  dir: string,
  value: bigint,
  timeoutMs = HANG_GUARD_MS,
): Promise<bigint> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await counterTicks(vm, dir);
    if (now >= value) return now;
    if (Date.now() > deadline) throw new Error(`the counter stayed at ${now}, wanted ${value}:\n${vm.stderr}`);
    await sleep(20);
  }
}

/**
 * Asserts the VM is stopped as QMP tells it: query-status says paused and the count stays put for `quietMs` (the
 * counter guest ticks every PIT period, 1 ms). Returns the count.
 */
export async function expectPaused(vm: VmProcess, dir: string, quietMs = 150): Promise<bigint> {
  assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'paused' });
  const paused = await counterTicks(vm, dir);
  await sleep(quietMs);
  assert.is(await counterTicks(vm, dir), paused, 'no tick while paused');
  return paused;
}

/** Asserts the VM runs again as QMP tells it: query-status says running and the count passes `from + ticks`. */
export async function expectCounting(
  vm: VmProcess,
  dir: string,
  from: bigint,
  ticks: bigint,
  timeoutMs = HANG_GUARD_MS,
): Promise<void> {
  assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
  await ticksReach(vm, dir, from + ticks, timeoutMs);
}
