// No tsvmm run ends in an unhandled rejection: a rejected promise nobody awaits (a warm-up started and left to run,
// a clean-up that throws) would end tsvmm with a stack trace instead of its exit status. Each run here has a hook
// preloaded that turns any unhandled rejection into status 97 and one line (test/support/unhandled-rejection-hook.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assembleFlat } from '../../test/support/asm.js';
import { repoRoot } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm, type RunResult } from '../../test/support/tsvmm.js';
import { UNHANDLED_REJECTION_LINE } from '../../test/support/unhandled-rejection-hook.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../util/exit-status.js';

const noKvm = kvmMissing();
const hook = pathToFileURL(join(repoRoot, 'dist', 'test', 'support', 'unhandled-rejection-hook.js')).href;
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-rejections-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const nodeOptions = [process.env.NODE_OPTIONS, `--import=${hook}`].filter(Boolean).join(' ');
  return runTsvmm(args, { env: { ...env, NODE_OPTIONS: nodeOptions } });
}

function noRejection(r: RunResult): void {
  assert.not.ok(r.stderr.includes(UNHANDLED_REJECTION_LINE), r.stderr);
}

const flat = (body: string) => [
  '-m',
  '16M',
  '-device',
  'isa-debug-exit',
  '-device',
  `loader,file=${assembleFlat(`.code16\n${body}\n`)},addr=0x1000,mode=real`,
];

test('unhandled rejections: none in failing runs (bad usage, a missing kernel, a refused RAM file, no /dev/kvm)', async () => {
  const usage = await run(['run', '-frobnicate']);
  assert.is(usage.status, ExitStatus.usage, usage.stderr);
  noRejection(usage);

  const kernel = await run(['run', '-kernel', '/nonexistent/kernel']);
  assert.is(kernel.status, ExitStatus.setupFailed, kernel.stderr);
  noRejection(kernel);

  const planted = join(scratch, 'vm0');
  writeFileSync(planted, '');
  chmodSync(planted, 0o666);
  const ram = await run([
    ...flat('  hlt'),
    '-object',
    `memory-backend-file,id=r,size=16M,mem-path=${planted},share=on`,
    '-machine',
    'memory-backend=r',
  ]);
  assert.is(ram.status, ExitStatus.setupFailed, ram.stderr);
  assert.match(ram.stderr, /mode 0666/);
  noRejection(ram);

  const kvm = await run(flat('  hlt'), { TSVMM_KVM_DEVICE: '/nonexistent/kvm' });
  assert.is(kvm.status, ExitStatus.setupFailed, kvm.stderr);
  noRejection(kvm);
});

testIf(test, noKvm, 'unhandled rejections: none in a normal run to the guest’s debug-exit', async () => {
  const r = await run(flat('  mov $0xf4, %dx\n  mov $0x21, %al\n  out %al, %dx\n  hlt'));
  assert.is(r.status, (0x21 << 1) | 1, r.stderr);
  noRejection(r);
});

testIf(
  test,
  noKvm,
  'unhandled rejections: none when a VM started paused (-S) warms up its restore path where no scratch file can be made',
  async () => {
    // TMPDIR is a regular file: the warm-up's throwaway checkpoint cannot be written, nor its clean-up done (the
    // clean-up used to throw ENOTDIR out of a promise nobody awaited, ending tsvmm).
    const notADirectory = join(scratch, 'tmp-is-a-file');
    writeFileSync(notADirectory, '');
    const r = await run([...flat('  hlt'), '-S', '--timeout', '20'], { TMPDIR: notADirectory });
    assert.is(r.status, ExitStatus.timeout, r.stderr);
    noRejection(r);
  },
);

test.run();
