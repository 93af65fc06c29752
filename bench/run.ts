// `npm run bench`: every benchmark in sequence, each in its own process (so one bench's JIT, heap and koffi state
// cannot colour the next one's numbers). Each prints its tables and writes build/bench/<name>.json.
//   node dist/bench/run.js [name…]      names: exits, startup, cpr-pause, cpr-parts, cpr-file, blk, boot, linux-io,
//                                       linux-cpr, vfio
//                                       (default: all)
// On a host without a usable /dev/kvm the whole run goes into the rig (test/rig/), one boot for all benches; its
// lines come out marked `[rig]`, and each bench says there that only its side-by-side ratios are figures to read.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RigSetupError } from '../test/rig/debian.js';
import { hostKvmUnusable } from '../test/rig/host-kvm.js';
import { benchOutputDir } from './lib/output.js';
import { RIG_VFIO_DEVICES } from '../test/support/rig-provides.js';

const BENCHES = [
  'exits',
  'startup',
  'cpr-pause',
  'cpr-parts',
  'cpr-file',
  'blk',
  'boot',
  'linux-io',
  'linux-cpr',
  'vfio',
] as const;

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(BENCHES as readonly string[]).includes(name)) {
    process.stderr.write(`bench: unknown benchmark '${name}' (known: ${BENCHES.join(', ')})\n`);
    process.exit(2);
  }
}

function runHere(): number {
  let failed = 0;
  for (const name of wanted.length ? wanted : BENCHES) {
    process.stdout.write(`\n=== bench/${name} ===\n`);
    const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
    const r = spawnSync(process.execPath, [script], { stdio: 'inherit' });
    if (r.status !== 0) {
      failed++;
      process.stderr.write(`bench/${name} failed (${r.status ?? r.signal})\n`);
    }
  }
  return failed ? 1 : 0;
}

/** Copies the result files (JSON, SVG) from `from` to `to`, leaving scratch directories behind. */
function copyResults(from: string, to: string): void {
  if (!existsSync(from)) return;
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    if (/\.(json|svg)$/.test(name)) copyFileSync(join(from, name), join(to, name));
  }
}

/** The same run inside the rig: 2 vCPUs and 16 GiB, so cpr-pause's 4 GiB guests fit on the rig's /dev/shm. */
async function runInTheRig(why: string): Promise<number> {
  process.stderr.write(
    `bench: ${why}: running the benchmarks inside the rig, a QEMU machine with nested KVM (test/rig/README.md); its figures are marked [rig]\n`,
  );
  const { runInRig } = await import('../test/rig/machine.js');
  let pending = '';
  const mark = (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) process.stdout.write(`[rig] ${line}\n`);
  };
  // Inside, the checkout is a read-only 9p mount under a tmpfs overlay: the results come back through the run's share.
  const shareDir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-rig-'));
  try {
    const r = await runInRig({
      command: [process.execPath, fileURLToPath(import.meta.url), ...wanted],
      memory: '16G',
      // bench/vfio passes QEMU's edu and nvme through: the rig boots q35 + intel-iommu with them bound to vfio-pci.
      vfio: wanted.length === 0 || wanted.includes('vfio') ? [...RIG_VFIO_DEVICES] : [],
      output: mark,
      shareDir,
    });
    if (pending) process.stdout.write(`[rig] ${pending}\n`);
    copyResults(join(shareDir, 'bench'), benchOutputDir);
    if (r.timedOut) return 124;
    return r.status ?? 125;
  } catch (e) {
    if (!(e instanceof RigSetupError)) throw e;
    process.stderr.write(
      `bench: no way to run the benchmarks here: load the kvm module on a host with VMX/SVM, or let the rig run them (${e.message})\n`,
    );
    return 4;
  } finally {
    rmSync(shareDir, { recursive: true, force: true });
  }
}

const why = process.env.TSVMM_IN_RIG === '1' ? null : hostKvmUnusable();
if (why === null) {
  process.exitCode = runHere();
  if (process.env.TSVMM_IN_RIG === '1') {
    const { RIG_SHARE_IN_GUEST } = await import('../test/rig/machine.js');
    if (existsSync(RIG_SHARE_IN_GUEST)) copyResults(benchOutputDir, join(RIG_SHARE_IN_GUEST, 'bench'));
  }
} else {
  process.exitCode = await runInTheRig(why);
}
