// The test runner behind `npm test`: runs every compiled `*.test.js` in its own Node process (KVM tests start
// worker threads and own fds, so isolation keeps one failure from taking others down), collects uvu's totals and
// the one-line skip reasons, and ends with the line `N passed, N failed` that CI reads.
//
// Usage: node dist/test/run.js [filter …]   (a filter is a substring of the test file's path)
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';

const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const skipDirs = new Set(['node_modules', '.git']);
const fileTimeoutMs = Number(process.env.TSVMM_TEST_TIMEOUT_MS ?? 300_000);

function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    if (skipDirs.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) findTests(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

interface FileResult { file: string; passed: number; failed: number; skipped: number; skips: string[]; ms: number; output: string }

function runFile(file: string): Promise<FileResult> {
  const started = Date.now();
  return new Promise(resolve => {
    const child = spawn(process.execPath, ['--enable-source-maps', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    let output = '';
    child.stdout.on('data', d => { output += d; });
    child.stderr.on('data', d => { output += d; });
    const timer = setTimeout(() => { output += `\n[runner] timed out after ${fileTimeoutMs} ms, killed\n`; child.kill('SIGKILL'); }, fileTimeoutMs);
    child.on('close', code => {
      clearTimeout(timer);
      const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? NaN);
      const passed = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(output)?.[1] ?? 0);
      const skips = [...output.matchAll(/^SKIP (.*)$/gm)].map(m => m[1]);
      let failed = Number.isNaN(total) ? 1 : Math.max(0, total - passed);
      // A file that crashed after printing totals, or exited non-zero with none failed, still counts as a failure.
      if (code !== 0 && failed === 0) failed = 1;
      resolve({ file: relative(distRoot, file), passed, failed, skipped: skips.length || skipped, skips, ms: Date.now() - started, output });
    });
  });
}

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  const files = findTests(distRoot).filter(f => filters.length === 0 || filters.some(x => f.includes(x)));
  const parallel = Number(process.env.TSVMM_TEST_JOBS ?? Math.max(1, Math.min(2, availableParallelism())));
  const results: FileResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const r = await runFile(files[next++]);
      results.push(r);
      const status = r.failed ? 'FAIL' : 'ok  ';
      console.log(`${status} ${r.file.padEnd(48)} ${r.passed} passed${r.skipped ? `, ${r.skipped} skipped` : ''}${r.failed ? `, ${r.failed} failed` : ''}  (${r.ms} ms)`);
      for (const s of r.skips) console.log(`     skip: ${s}`);
      if (r.failed) console.log(r.output.split('\n').map(l => `     | ${l}`).join('\n'));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const passed = results.reduce((a, r) => a + r.passed, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const skipped = results.reduce((a, r) => a + r.skipped, 0);
  if (skipped) console.log(`${skipped} skipped (reasons above)`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
