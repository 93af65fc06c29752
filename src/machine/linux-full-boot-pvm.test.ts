// The full Linux boot's machine on a PVM host. There a stock kernel cannot reach user space (docs/linux.md, "On this
// host (PVM)"; linux-full-boot.test.ts runs the boot itself on VMX/SVM, or in the rig), but the machine behind the
// full command line must still be built: kernel and initrd loaded, the disk opened, the tap attached, the devices on
// the PCI bus. tsvmm runs the guest until --timeout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { cliPath } from '../../test/support/tsvmm.js';
import { kvmIsPvm } from '../../test/support/kvm-backend.js';
import {
  fullBootCmdline,
  fullBootDeviceArgs,
  fullBootKernel,
  openFiles,
  runVmm,
} from '../../test/support/full-boot-guest.js';
import { fullBootReport as report, fullBootScratch } from '../../test/support/full-boot-scratch.js';
import { tapUnavailable } from '../../examples/guests/virtio-probe-host.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../util/exit-status.js';

const found = fullBootKernel();
const reason =
  kvmMissing() ??
  (kvmIsPvm() ? null : 'KVM here is VMX/SVM, where linux-full-boot.test.ts boots this machine to power-off') ??
  found.reason ??
  busyboxMissing() ??
  tapUnavailable();
const scratch = fullBootScratch(() => found.modulesDir!);

testIf(
  test,
  reason,
  'full boot on PVM: tsvmm takes the full command line (vmlinux, initrd, virtio-blk disk, virtio-net on a tap), has the disk and the tap open, and runs the guest until --timeout',
  async () => {
    const { nonce, disk, tap } = scratch.freshRun('setup');
    try {
      // While it runs: the disk image is open and a /dev/net/tun fd is attached to the namespace's tap.
      const seen = { disk: false, tap: false };
      const run = await runVmm(
        [
          process.execPath,
          cliPath,
          'run',
          '-m',
          '512M',
          '-cpu',
          'pvm-safe',
          '-kernel',
          found.kernel!.vmlinux,
          '-initrd',
          scratch.image().path,
          '-append',
          fullBootCmdline(nonce, 'noxsave'),
          '-serial',
          'stdio',
          ...fullBootDeviceArgs({ disk, tap }),
          '-no-reboot',
          '--timeout',
          '3',
        ],
        {
          tap,
          timeoutMs: 120_000, // a hang guard far above a loaded machine's start-up plus the 3 s
          whileRunning: async (pid, exited) => {
            let running = true;
            void exited.then(() => {
              running = false;
            });
            while (running && !(seen.disk && seen.tap)) {
              const open = openFiles(pid);
              seen.disk ||= open.paths.includes(disk);
              seen.tap ||= open.taps.includes(tap.tap);
              await new Promise((r) => setTimeout(r, 50));
            }
          },
        },
      );
      assert.is(run.status, ExitStatus.timeout, report(run));
      assert.not.match(run.stderr, /usage|setup failed|cannot|error/i, report(run));
      assert.ok(seen.disk, `tsvmm never had ${disk} open`);
      assert.ok(seen.tap, `tsvmm never had /dev/net/tun attached to ${tap.tap}`);
    } finally {
      tap.close();
    }
  },
);

test.after(() => scratch.remove());

test.run();
