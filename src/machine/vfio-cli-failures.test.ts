// A host that is not ready for `-device vfio-pci,host=BDF`, seen from the command line (issue 11, item 4): tsvmm
// ends with its set-up status (4) and one line on stderr that names the function and what to do. vfio-host.test.ts
// checks each message over a scratch sysfs, vfio/viability.test.ts the kernel's own refusal; here the real CLI meets
// a real host: a wrong address (anywhere), and in the rig (q35 + intel-iommu, every function in an IOMMU group) a
// function bound to another driver, and ICH9's shared group with one function handed to vfio-pci while the LPC
// function keeps lpc_ich. Machine.restore(file), which takes the function from the checkpoint's CONFIG record
// instead of a command line, refuses the same hosts with the same line.
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeCheckpoint } from '../../cpr/file/checkpoint-file.js';
import { machineConfigDescriptor, machineConfigToRecord } from '../../cpr/machine-state/index.js';
import { encodeRecord } from '../../cpr/vmstate/stream.js';
import { Machine } from '../api/index.js';
import { parseRunArgs } from '../cli/args.js';
import { machineConfigFromArgs } from '../cli/config.js';
import { groupDevices } from '../../vfio/sysfs.js';
import { withDirLockAsync } from '../../test/support/dir-lock.js';
import { testIf } from '../../test/support/skip.js';
import { type RunResult, runTsvmm } from '../../test/support/tsvmm.js';
import { vfioMissing, vfioRebindLockDir } from '../../test/support/vfio-devices.js';
import { bindHint } from './vfio-host.js';

const SETUP_FAILED = 4;
const inRig =
  vfioMissing('edu') ?? (process.env.TSVMM_IN_RIG === '1' ? null : 'needs a host function to rebind: only in the rig');

const run = (device: string): Promise<RunResult> =>
  runTsvmm(['run', '-m', '64M', '-device', device, '--timeout', '30'], { timeoutMs: 240_000 });

/** Status 4 and exactly `line` on stderr. */
function refused(r: RunResult, line: string): void {
  const why = `\nstatus ${r.status}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}`;
  assert.is(r.status, SETUP_FAILED, `set-up status${why}`);
  assert.equal(r.stderr.trimEnd().split('\n'), [line], why);
}

const driverOf = (bdf: string): string | null => {
  try {
    return basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/driver`));
  } catch {
    return null;
  }
};

const groupOf = (bdf: string): number | null => {
  try {
    return Number(basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`)));
  } catch {
    return null;
  }
};

/** Binds `bdf` to `driver` through driver_override (after unbinding whatever it has); null: back to the default. */
function bind(bdf: string, driver: string | null): void {
  const now = driverOf(bdf);
  if (now) writeFileSync(`/sys/bus/pci/drivers/${now}/unbind`, bdf);
  writeFileSync(`/sys/bus/pci/devices/${bdf}/driver_override`, driver ?? '\n');
  writeFileSync('/sys/bus/pci/drivers_probe', bdf);
}

/**
 * A checkpoint whose CONFIG record is the configuration `tsvmm run -m 64M -device DEVICE` has, and nothing else the
 * restore would reach: Machine.restore builds the machine from that record (checking the host's functions first,
 * before /dev/kvm), so a host that is not ready refuses it before any state is read.
 */
function checkpointWith(dir: string, device: string): string {
  const config = machineConfigFromArgs(parseRunArgs(['-m', '64M', '-device', device]));
  const size = config.memory.size;
  const ram = {
    kind: 'anon' as const,
    size,
    offset: 0,
    share: false,
    hugetlb: false,
    hugetlbSize: 0,
    path: null,
    fd: -1,
  };
  const path = join(dir, 'vm.cpr');
  writeCheckpoint(path, {
    sections: [
      {
        kind: 'config',
        name: machineConfigDescriptor.name,
        instance: 0,
        version: machineConfigDescriptor.version,
        payload: encodeRecord(machineConfigDescriptor, machineConfigToRecord(config, ram)),
      },
    ],
  });
  return path;
}

/** The CLI's refusal of `-device DEVICE` and Machine.restore's of a checkpoint with it: the same line. */
async function refusedAlike(device: string, line: string): Promise<void> {
  refused(await run(device), `tsvmm: ${line}`);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-vfio-restore-'));
  try {
    const e = await Machine.restore(checkpointWith(dir, device), { serial: 'null' }).then(
      async (m) => {
        await m.quit();
        return null;
      },
      (e: unknown) => e as Error,
    );
    assert.ok(e, `Machine.restore with ${device} was not refused`);
    assert.is(e!.message, line, 'Machine.restore: the CLI line without its "tsvmm: "');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('vfio-pci CLI and Machine.restore: a host address with no PCI function is refused with one line naming it (the CLI: status 4)', async () => {
  await refusedAlike('vfio-pci,host=0000:3f:1f.7', 'vfio0: no PCI device at /sys/bus/pci/devices/0000:3f:1f.7');
  await refusedAlike('vfio-pci,host=3f:1f.7,id=nic0', 'nic0: no PCI device at /sys/bus/pci/devices/0000:3f:1f.7');
});

testIf(
  test,
  inRig,
  'vfio-pci CLI and Machine.restore: a function bound to another driver (ICH9 LPC, lpc_ich) is refused with the line that says how to rebind it (the CLI: status 4)',
  async () => {
    const bdf = readdirSync('/sys/bus/pci/devices')
      .sort()
      .find((d) => driverOf(d) === 'lpc_ich' && groupOf(d) !== null);
    assert.ok(bdf, 'an ICH9 LPC function bound to lpc_ich in an IOMMU group (the rig is q35)');
    await refusedAlike(
      `vfio-pci,host=${bdf}`,
      `vfio0: ${bdf} is bound to lpc_ich, not vfio-pci; bind it to vfio-pci: echo ${bdf} > /sys/bus/pci/devices/${bdf}/driver/unbind; ${bindHint(bdf!)}`,
    );
  },
);

testIf(
  test,
  inRig,
  'vfio-pci CLI: a function whose IOMMU group keeps a device on another driver ends with status 4 and the line naming it',
  () =>
    // vfio/viability.test.ts rebinds the same functions: one file at a time.
    withDirLockAsync(vfioRebindLockDir(), async () => {
      const lpc = readdirSync('/sys/bus/pci/devices')
        .sort()
        .find((d) => driverOf(d) === 'lpc_ich' && groupOf(d) !== null);
      assert.ok(lpc, 'an ICH9 LPC function bound to lpc_ich in an IOMMU group (the rig is q35)');
      const group = groupOf(lpc!)!;
      const moved = groupDevices(group)
        .filter((d) => d.bdf !== lpc)
        .at(-1);
      assert.ok(moved, `another function in group ${group}: ${JSON.stringify(groupDevices(group))}`);
      try {
        bind(moved!.bdf, 'vfio-pci');
        assert.is(driverOf(moved!.bdf), 'vfio-pci');
        const others = groupDevices(group)
          .filter((d) => d.bdf !== moved!.bdf && d.driver !== null && d.driver !== 'vfio-pci')
          .map((d) => `${d.bdf} (bound to ${d.driver})`);
        refused(
          await run(`vfio-pci,host=${moved!.bdf}`),
          `tsvmm: vfio0: IOMMU group ${group} is not viable: ${moved!.bdf} shares it with ${others.join(', ')}; bind every device of the group to vfio-pci`,
        );
      } finally {
        bind(moved!.bdf, null);
      }
      assert.is(driverOf(moved!.bdf), moved!.driver, `${moved!.bdf} is back with its driver`);
    }),
);

test.run();
