// Linux's own nvme driver on a passed-through NVMe controller: QEMU's nvme (64 MiB namespace) bound to vfio-pci in
// the rig, Debian's generic kernel under tsvmm. The first boot writes 64 MiB of random data through /dev/nvme0n1
// (MSI-X queues, DMA into and out of guest RAM), drops the page cache and reads it back; the second boot, a new
// tsvmm process after VFIO reset the controller, reads the namespace again: both checksums equal the data's.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../../test/support/cc.js';
import { linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import {
  SCENARIO_PREFIX,
  buildLinuxGuestInitramfs,
  kernelWarnings,
  linuxGuestCmdline,
  linuxGuestKernel,
  scenarioInit,
} from '../../test/support/linux-guest.js';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { type VfioTestDevice, vfioMissing, withVfioDevice } from '../../test/support/vfio-devices.js';
import { resolveKernelModules } from '../../src/images/kernel-modules.js';
import { busyboxMissing } from '../../src/images/testing/host-tools.js';

const MIB = 64;
const found = linuxGuestKernel();
const imageReason = found.reason ?? busyboxMissing();

const write = [
  'wait_for /dev/nvme0n1 || fail "no /dev/nvme0n1"',
  'say "nvme0n1 $(cat /sys/block/nvme0n1/size) sectors, $(ls /sys/class/nvme/nvme0/device/msi_irqs | wc -l) msi-x vectors"',
  `dd if=/dev/urandom of=/data bs=1M count=${MIB} 2>/dev/null || fail "urandom"`,
  'say "data $(md5sum < /data | cut -c1-32)"',
  'dd if=/data of=/dev/nvme0n1 bs=1M conv=fsync 2>/dev/null || fail "write"',
  'echo 3 > /proc/sys/vm/drop_caches',
  `say "disk $(dd if=/dev/nvme0n1 bs=1M count=${MIB} 2>/dev/null | md5sum | cut -c1-32)"`,
  'poweroff -f',
];
const read = [
  'wait_for /dev/nvme0n1 || fail "no /dev/nvme0n1"',
  `say "disk $(dd if=/dev/nvme0n1 bs=1M count=${MIB} 2>/dev/null | md5sum | cut -c1-32)"`,
  'poweroff -f',
];

/** An initramfs whose /init loads nvme and runs `body`, built once into build/linux-scenarios/ (natively). */
function image(name: string, body: readonly string[]): string {
  const kernel = found.kernel!;
  const dir = join(repoRoot, 'build', 'linux-scenarios');
  mkdirSync(dir, { recursive: true });
  const modules = resolveKernelModules(kernel.modulesDir, ['nvme']).modules.map((m) => m.path);
  const hash = createHash('sha256')
    .update(`${kernel.release}\n${scenarioInit(body, modules)}`)
    .digest('hex')
    .slice(0, 16);
  const path = join(dir, `${name}-${hash}.img`);
  if (existsSync(path)) return path;
  const tmp = `${path}.tmp-${process.pid}`;
  buildLinuxGuestInitramfs(tmp, kernel, (m) => scenarioInit(body, m), { modules: ['nvme'] });
  renameSync(tmp, path);
  return path;
}

const images = imageReason === null ? { write: image('nvme-write', write), read: image('nvme-read', read) } : null;
const reason = vfioMissing('nvme') ?? linuxUserSpaceUnreachable() ?? imageReason;

const said = (serial: string) =>
  serial
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.startsWith(SCENARIO_PREFIX))
    .map((l) => l.slice(SCENARIO_PREFIX.length + 1));

async function boot(
  nvme: VfioTestDevice,
  initrd: string,
): Promise<{ lines: string[]; serial: string; status: number | null }> {
  const r = await runTsvmm(
    [
      '-m',
      '512M',
      '-smp',
      '2',
      '-kernel',
      found.kernel!.bzImage,
      '-initrd',
      initrd,
      '-append',
      linuxGuestCmdline(),
      '-device',
      `vfio-pci,host=${nvme.bdf}`,
      '-no-reboot',
      '--timeout',
      '600',
    ],
    { timeoutMs: 700_000 },
  );
  const context = `\nstatus ${r.status}\nserial:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.is(r.status, 0, `power-off${context}`);
  assert.equal(kernelWarnings(r.stdout), [], `kernel warnings${context}`);
  return { lines: said(r.stdout), serial: context, status: r.status };
}

testIf(
  test,
  reason,
  `vfio-pci nvme: Linux's nvme driver writes ${MIB} MiB through a passed-through controller and reads it back, in this boot and the next`,
  () =>
    withVfioDevice('nvme', async (nvme) => {
      const first = await boot(nvme, images!.write);
      assert.is(first.lines.length, 3, first.serial);
      assert.match(first.lines[0], /^nvme0n1 131072 sectors, \d+ msi-x vectors$/, first.serial);
      const data = /^data ([0-9a-f]{32})$/.exec(first.lines[1])?.[1];
      assert.ok(data, first.serial);
      assert.is(first.lines[2], `disk ${data}`, first.serial);
      const second = await boot(nvme, images!.read);
      assert.equal(second.lines, [`disk ${data}`], second.serial);
    }),
);

test.run();
