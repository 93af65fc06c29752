// `npm start`: build the hello test guest (examples/guests/) and boot it with `tsvmm run -kernel`. Under a usable
// /dev/kvm it runs here; on a host without one (a PVM guest, a cloud VM without nested virtualisation) it runs
// inside the rig (test/rig/: QEMU with an emulated SVM, whose Linux has a real /dev/kvm, and which sees the host's
// files, the built guest included), and says so in one line; with neither, one line names the way out.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGuest, GuestBuildError, GuestToolchainError } from '../examples/guests/build.js';
import { RigSetupError } from '../test/rig/debian.js';
import { runInRig } from '../test/rig/machine.js';
import { hostKvmUnusable } from '../test/rig/host-kvm.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'tsvmm.mjs');
/** tsvmm's "set-up failed" status (src/util/exit-status.ts), for a demo that cannot start. */
const SETUP_FAILED = 4;

/** The hello guest reports success the QEMU way (isa-debug-exit 0 → status 1); as a command, the demo succeeds. */
function demoStatus(status: number | null): number {
  if (status === 1) {
    process.stderr.write('tsvmm: demo guest passed (guest exit status 1)\n');
    return 0;
  }
  process.stderr.write(`tsvmm: demo failed (${status === null ? 'no exit status' : `exit status ${status}`})\n`);
  return status ?? 125;
}

async function main(): Promise<number> {
  let kernel: string;
  try {
    kernel = (await buildGuest('hello')).path;
  } catch (e) {
    if (!(e instanceof GuestToolchainError || e instanceof GuestBuildError)) throw e;
    process.stderr.write(`tsvmm: cannot build the demo guest: ${e.message}\n`);
    return SETUP_FAILED;
  }
  const demo = [process.execPath, cli, 'run', '-kernel', kernel, '-device', 'isa-debug-exit'];
  const why = hostKvmUnusable();
  if (why === null) return demoStatus(spawnSync(demo[0], demo.slice(1), { stdio: 'inherit' }).status);
  process.stderr.write(
    `tsvmm: ${why}: running the demo inside the rig, a QEMU machine with nested KVM (test/rig/README.md)\n`,
  );
  try {
    const r = await runInRig({ command: demo, installQemu: false, memory: '2G' });
    return r.timedOut ? 124 : demoStatus(r.status);
  } catch (e) {
    if (!(e instanceof RigSetupError)) throw e;
    process.stderr.write(
      'tsvmm: no way to run the demo here: load the kvm module on a host with VMX/SVM, ' +
        `or let the rig run it (${e.message})\n`,
    );
    return SETUP_FAILED;
  }
}

process.exitCode = await main();
