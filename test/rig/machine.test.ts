// The rig's machine, booted: what a command inside gets, and how the end of a run is reported — its status, a
// time-out, or a machine that died. Runs natively (the rig needs QEMU, not KVM).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testIf } from '../support/skip.js';
import { RigSetupError } from './debian.js';
import { runInRig, type RigOptions, type RigResult } from './machine.js';
import { rigKernel } from './kernel.js';
import { rigQemu } from './qemu.js';

function rigMissing(): string | null {
  if (process.env.TSVMM_IN_RIG === '1') return 'already inside the rig';
  try {
    rigQemu({ install: true });
    rigKernel();
    return null;
  } catch (e) {
    if (e instanceof RigSetupError) return `the rig cannot be set up here: ${e.message}`;
    throw e;
  }
}
const missing = rigMissing();

/** One run with its output and progress lines collected instead of printed. */
async function run(
  o: Partial<RigOptions> & Pick<RigOptions, 'command'>,
): Promise<RigResult & { output: string; log: string[] }> {
  let output = '';
  const log: string[] = [];
  const r = await runInRig({
    memory: '1G',
    ...o,
    output: (d) => {
      output += d;
    },
    log: (l) => log.push(l),
  });
  return { ...r, output, log };
}

testIf(
  test,
  missing,
  'rig: a command runs as root in the caller directory and environment, over a real /dev/kvm; its output and status come back, its writes stay inside',
  async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'rig-machine-'));
    try {
      const r = await run({
        cwd: scratch,
        env: { ...process.env, RIG_TEST_VALUE: "it's there" },
        command: [
          'printf "uid=%s cwd=%s value=%s kvm=%s npt=%s\\n" "$(id -u)" "$PWD" "$RIG_TEST_VALUE" ' +
            '"$(test -c /dev/kvm && echo yes)" "$(cat /sys/module/kvm_amd/parameters/npt)"; touch written-inside; exit 3',
        ],
      });
      assert.is(r.status, 3, r.log.join('\n'));
      assert.not.ok(r.timedOut || r.died);
      assert.is(r.output, `uid=0 cwd=${scratch} value=it's there kvm=yes npt=Y\n`);
      assert.not.ok(existsSync(join(scratch, 'written-inside')), 'the overlay keeps the host untouched');
      assert.equal(r.kernelTrouble, []);
      assert.match(r.log[0], /^rig: .*QEMU \d+\.\d+.*TCG; kernel \S+; 2 CPUs, 1G; host files by /);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
);

testIf(test, missing, 'rig: a run past its time-out is killed and reported as timed out, not as a status', async () => {
  const r = await run({ command: ['sleep 600'], timeoutMs: 5_000 });
  assert.equal([r.timedOut, r.died, r.status], [true, false, null]);
  assert.ok(
    r.log.some((l) => /^rig: timed out after \d+ s; the machine was killed$/.test(l)),
    r.log.join('\n'),
  );
});

testIf(
  test,
  missing,
  'rig: a machine that dies (here a kernel panic) is reported as dead, with its console and the panic',
  async () => {
    const r = await run({ command: ['echo c > /proc/sysrq-trigger; sleep 600'], timeoutMs: 600_000 });
    assert.equal([r.timedOut, r.died, r.status], [false, true, null], r.log.join('\n'));
    assert.ok(
      r.kernelTrouble.some((l) => l.includes('Kernel panic')),
      r.consoleTail,
    );
    assert.ok(r.log.some((l) => l.startsWith("rig: the machine died without the command's status")));
  },
);

testIf(
  test,
  missing,
  'rig: --vfio binds the emulated devices to vfio-pci behind intel-iommu, each in its own IOMMU group',
  async () => {
    const r = await run({
      vfio: ['edu', 'nvme'],
      command: [
        'echo "$TSVMM_RIG_VFIO_DEVICES"; for b in $TSVMM_RIG_VFIO_DEVICES; do d=/sys/bus/pci/devices/${b%%=*}; ' +
          'g=$(basename "$(readlink "$d/iommu_group")"); echo "${b%%=*} $(basename "$(readlink "$d/driver")") $(test -c /dev/vfio/$g && echo group-node)"; done',
      ],
    });
    assert.is(r.status, 0, r.log.join('\n'));
    const [bound, ...devices] = r.output.trim().split('\n');
    assert.match(bound, /^0000:00:[0-9a-f]{2}\.0=1234:11e8 0000:00:[0-9a-f]{2}\.0=1b36:0010$/);
    assert.equal(
      devices.map((l) => l.split(' ').slice(1).join(' ')),
      ['vfio-pci group-node', 'vfio-pci group-node'],
    );
  },
);

test.run();
