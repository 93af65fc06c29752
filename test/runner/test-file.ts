// One compiled test file run in its own Node process (KVM tests start worker threads and own fds, so isolation
// keeps one failure from taking others down), judged from uvu's totals and the `SKIP …` lines of test/support/skip.ts.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface FileResult {
  /** Path relative to dist/, e.g. "kvm/vcpu.test.js". */
  file: string;
  passed: number;
  failed: number;
  skipped: number;
  /** One line per skipped test: "name: reason". */
  skips: string[];
  ms: number;
  output: string;
}

const SKIP_DIRS = new Set(['node_modules', '.git']);

/** Every `*.test.js` under `dir`, sorted. */
export function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    if (SKIP_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) findTests(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

/** The counts a finished file reports; a file that printed no totals, or exited non-zero with none failed, failed. */
export function judge(
  output: string,
  code: number | null,
): Pick<FileResult, 'passed' | 'failed' | 'skipped' | 'skips'> {
  const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? NaN);
  const passed = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0);
  const skipped = Number(/Skipped:\s+(\d+)/.exec(output)?.[1] ?? 0);
  const skips = [...output.matchAll(/^SKIP (.*)$/gm)].map((m) => m[1]);
  let failed = Number.isNaN(total) ? 1 : Math.max(0, total - passed);
  if (code !== 0 && failed === 0) failed = 1;
  return { passed, failed, skipped: skips.length || skipped, skips };
}

export function runTestFile(distRoot: string, file: string, timeoutMs: number): Promise<FileResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--enable-source-maps', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    const timer = setTimeout(() => {
      output += `\n[runner] timed out after ${timeoutMs} ms, killed\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ file: relative(distRoot, file), ...judge(output, code), ms: Date.now() - started, output });
    });
  });
}

/** The runner's line for a finished file, with its skip reasons and, when it failed, its whole output. */
export function describe(r: FileResult): string {
  const status = r.failed ? 'FAIL' : 'ok  ';
  const lines = [
    `${status} ${r.file.padEnd(48)} ${r.passed} passed${r.skipped ? `, ${r.skipped} skipped` : ''}` +
      `${r.failed ? `, ${r.failed} failed` : ''}  (${r.ms} ms)`,
  ];
  for (const s of r.skips) lines.push(`     skip: ${s}`);
  if (r.failed)
    lines.push(
      r.output
        .split('\n')
        .map((l) => `     | ${l}`)
        .join('\n'),
    );
  return lines.join('\n');
}
