// The Linux scenario machine on a PVM host. There a stock kernel cannot reach user space (docs/linux.md, "On this
// host (PVM)"; linux-devices.test.ts and linux-acpi.test.ts run the scenarios on VMX/SVM, or in the rig), but the
// machine behind their command line must still be built: kernel and initrd loaded, the disk opened, the tap
// attached, the devices on the PCI bus. tsvmm runs the guest until --timeout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { kvmIsPvm } from '../../test/support/kvm-backend.js';
import { linuxGuestKernel } from '../../test/support/linux-guest.js';
import { devicesScenario } from '../../test/support/linux-scenarios.js';
import { scenarioCommand, scenarioImage, writeZeroDisk } from '../../test/support/linux-scenario-run.js';
import { openFiles, runVmm, vmmReport as report } from '../../test/support/vmm-run.js';
import { removeDir, scratchDir } from '../../test/support/vm-process.js';
import { createTapNamespace, tapUnavailable } from '../../examples/guests/virtio-probe-host.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { ExitStatus } from '../util/exit-status.js';

const found = linuxGuestKernel();
const reason =
  kvmMissing() ??
  (kvmIsPvm() ? null : 'KVM here is VMX/SVM, where linux-devices.test.ts boots this machine to power-off') ??
  found.reason ??
  busyboxMissing() ??
  tapUnavailable();

testIf(
  test,
  reason,
  "Linux scenario machine on PVM: tsvmm takes the devices scenario's command line (vmlinux, initrd, virtio-blk disk, virtio-net on a tap, rng, console), has the disk and the tap open, and runs the guest until --timeout",
  async () => {
    const dir = scratchDir('tsvmm-linux-pvm-');
    const disk = join(dir, 'disk.img');
    writeZeroDisk(disk, 1 << 20);
    const tap = createTapNamespace(`tsvmm-lp-${process.pid % 100000}`);
    try {
      // While it runs: the disk image is open and a /dev/net/tun fd is attached to the namespace's tap.
      const seen = { disk: false, tap: false };
      // The devices scenario's command line, with what the PVM emulator needs: no CX16 or XSAVE (docs/linux.md).
      const { argv } = scenarioCommand({
        vmm: 'tsvmm',
        kernel: found.kernel!.vmlinux,
        initrd: scenarioImage('devices', found.kernel!, devicesScenario()),
        smp: 1,
        noReboot: true,
        disk,
        tap,
        dir,
        timeoutS: 3,
      });
      const run = await runVmm(
        [
          ...argv.slice(0, 3),
          '-cpu',
          'pvm-safe',
          ...argv.slice(3).map((a) => (a.startsWith('console=') ? `${a} noxsave` : a)),
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
      removeDir(dir);
    }
  },
);

test.run();
