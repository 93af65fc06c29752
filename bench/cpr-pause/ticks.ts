// The guest's ticks as seen from outside: the counter guest writes '.' to isa-debugcon on every ~1 ms PIT tick, and
// with `timestamps=on` tsvmm logs each byte as "<CLOCK_REALTIME ns> <hex>\n" when the vCPU thread handles the OUT.
// The old process's last line and the new process's first line bracket the guest's pause.
import { readFileSync, statSync } from 'node:fs';
import { nsToUs } from './clock.js';
import { median } from '../lib/stats.js';

/** One line per byte: 19-20 digits, a space, two hex digits, a newline. */
const MIN_LINE = 22;
const LINE = /^(\d{1,20}) ([0-9a-f]{2})$/;

/** Every complete stamped line of a debugcon log, in µs (a line still being written is ignored). */
export function readTicks(path: string): number[] {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: number[] = [];
  const lines = text.split('\n');
  lines.pop(); // after the last newline: empty, or a partial line
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) throw new Error(`${path}: not a timestamped debugcon line: ${JSON.stringify(line)}`);
    out.push(nsToUs(BigInt(m[1])));
  }
  return out;
}

function logBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Waits until the log holds at least `count` lines (judged by its size); rejects on `failed()` or timeout. */
export async function waitForTicks(
  path: string,
  count: number,
  timeoutMs: number,
  failed: () => string | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (logBytes(path) < count * MIN_LINE + 1) {
    const why = failed();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`${path}: fewer than ${count} guest ticks within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The median spacing of consecutive stamps (µs): the guest's tick interval as this log saw it. */
export function medianInterval(stamps: readonly number[]): number {
  const gaps: number[] = [];
  for (let i = 1; i < stamps.length; i++) gaps.push(stamps[i] - stamps[i - 1]);
  return median(gaps);
}
