// `npm start`: boot the demo guest. Under a usable /dev/kvm it runs here; on a host without one (a PVM guest, a
// cloud VM without nested virtualisation) it runs inside the rig (test/rig/: QEMU with an emulated SVM, whose
// Linux has a real /dev/kvm), and says so in one line; with neither, one line names the way out.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RigSetupError } from '../test/rig/debian.js';
import { runInRig } from '../test/rig/machine.js';
import { hostKvmUnusable } from '../test/rig/host-kvm.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'tsvmm.mjs');
const demo = [process.execPath, cli, 'run', '--demo'];

async function main(): Promise<number> {
  const why = hostKvmUnusable();
  if (why === null) return spawnSync(demo[0], demo.slice(1), { stdio: 'inherit' }).status ?? 1;
  process.stderr.write(
    `tsvmm: ${why}: running the demo inside the rig, a QEMU machine with nested KVM (test/rig/README.md)\n`,
  );
  try {
    const r = await runInRig({ command: demo, installQemu: false, memory: '2G' });
    return r.timedOut ? 124 : (r.status ?? 125);
  } catch (e) {
    if (!(e instanceof RigSetupError)) throw e;
    process.stderr.write(
      `tsvmm: no way to run the demo here: load the kvm module on a host with VMX/SVM, or let the rig run it (${e.message})\n`,
    );
    return 4;
  }
}

process.exitCode = await main();
