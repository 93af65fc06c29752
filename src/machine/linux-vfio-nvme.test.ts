// Linux's own nvme driver on a passed-through NVMe controller (issue 11, item 4): QEMU's nvme with its 64 MiB
// scratch namespace, bound to vfio-pci in the rig (booted q35 + intel-iommu, test/rig/), driven by Debian's generic
// kernel under QEMU `-accel kvm -M pc -device vfio-pci,host=BDF` (the reference) and under tsvmm with the same
// options. Each boot writes 64 MiB of random data to /dev/nvme0n1 (O_DIRECT, fsync), reads it back past the page
// cache and checksums it; /proc/interrupts shows the queues on PCI-MSI and sysfs says MSI-X; no kernel warnings;
// after power-off the rig's file behind the namespace (TSVMM_RIG_NVME_IMAGE: the outer QEMU's drive, on the host,
// seen inside through the read-only 9p root) holds the data. The two runs' lines agree but for checksums and counts.
//
// Natively (no NVMe bound to vfio-pci) the test skips with vfio-devices.ts's reason, and the runner reruns the file
// in the rig. The device goes to one VMM at a time (withVfioDevice).
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { qemuUnavailable } from '../../examples/guests/qemu-runner.js';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import { kernelWarnings, linuxGuestKernel } from '../../test/support/linux-guest.js';
import {
  NOW_FN,
  type NvmeGuestRun,
  type Vmm,
  nvmeBackingFile,
  nvmeGuestImage,
  nvmeGuestReport,
  runNvmeGuest,
} from '../../test/support/linux-nvme-guest.js';
import { testIf } from '../../test/support/skip.js';
import { vfioMissing, withVfioDevice } from '../../test/support/vfio-devices.js';

const MIB = 64;
/** linux-guest.ts kernelWarnings' list, for grep -E in the guest. */
const WARNING = 'WARNING:|BUG:|rcu: INFO|soft lockup|clocksource .*unstable|Oops|Kernel panic';
const found = linuxGuestKernel();
const imageReason = found.reason ?? busyboxMissing();

const body = [
  NOW_FN,
  'wait_for /dev/nvme0n1 || fail "no /dev/nvme0n1"',
  'say "nvme0n1 $(cat /sys/block/nvme0n1/size) sectors"',
  `head -c ${MIB << 20} /dev/urandom > /data || fail "urandom"`,
  'say "data $(md5sum < /data | cut -c1-32)"',
  'dd if=/data of=/dev/nvme0n1 bs=1M oflag=direct conv=fsync 2>/dev/null || fail "write"',
  'echo 3 > /proc/sys/vm/drop_caches',
  `say "disk $(dd if=/dev/nvme0n1 bs=1M count=${MIB} iflag=direct 2>/dev/null | md5sum | cut -c1-32)"`,
  // 6.1: msi_irqs/IRQ holds "msi" or "msix" (older kernels: a directory with a mode file).
  'say "interrupt modes: $(for f in /sys/class/nvme/nvme0/device/msi_irqs/*; do if [ -d "$f" ]; then cat "$f/mode"; else cat "$f"; fi; done | sort -u | tr "\\n" " ")"',
  // " 25:  12  0  PCI-MSI 65536-edge  nvme0q0": the queue, the chip, the count summed over the CPUs.
  "grep nvme0q /proc/interrupts | awk '{ n = 0; for (i = 2; i <= NF - 3; i++) n += $i; print $NF, $(NF - 2), n }' > /irqs",
  'while read q chip n; do say "irq $q $chip $n"; done < /irqs',
  // The console shows errors only (scenarioInit: printk 4), so warnings are looked for in the whole log too.
  `dmesg | grep -E '${WARNING}' | while read l; do say "dmesg: $l"; done`,
  'poweroff -f',
];

const initrd = imageReason === null ? nvmeGuestImage('vfio-nvme', found.kernel!, body) : null;
const reason = vfioMissing('nvme') ?? linuxUserSpaceUnreachable() ?? imageReason;

/** The md5 of what the namespace's file on the rig's host holds (null: no such file here). */
function backingFileMd5(): string | null {
  const data = nvmeBackingFile(MIB << 20);
  return data && createHash('md5').update(data).digest('hex');
}

interface Judged {
  run: NvmeGuestRun;
  data: string;
  file: string | null;
}

const runs = new Map<Vmm, Promise<Judged>>();

/** One boot per VMM (tsvmm's test reuses QEMU's run), the device and the namespace's file held under its lock. */
function boot(vmm: Vmm): Promise<Judged> {
  let p = runs.get(vmm);
  if (!p) {
    p = withVfioDevice('nvme', async ({ bdf }) => {
      const run = await runNvmeGuest(vmm, { kernel: found.kernel!, initrd: initrd!, bdf, timeoutS: 600 });
      const data = /^data ([0-9a-f]{32})$/.exec(run.lines.find((l) => l.startsWith('data ')) ?? '')?.[1] ?? '';
      return { run, data, file: backingFileMd5() };
    });
    runs.set(vmm, p);
  }
  return p;
}

/** The lines with what differs between runs (checksums, interrupt counts) replaced by its shape. */
const comparable = (lines: string[]) =>
  lines.map((l) => l.replace(/^(data|disk) [0-9a-f]{32}$/, '$1 MD5').replace(/^(irq \S+ \S+) \d+$/, '$1 N'));

function judge(vmm: Vmm, { run, data, file }: Judged): void {
  const why = nvmeGuestReport(vmm, run);
  assert.is(run.status, 0, `power-off${why}`);
  assert.equal(kernelWarnings(run.serial), [], `kernel warnings${why}`);
  const l = run.lines;
  assert.is(l[0], `nvme0n1 ${(MIB << 20) / 512} sectors`, why);
  assert.ok(data, `no data line${why}`);
  assert.is(l[2], `disk ${data}`, `read back${why}`);
  assert.is(l[3].trim(), 'interrupt modes: msix', why);
  assert.equal(
    l.filter((x) => x.startsWith('dmesg: ')),
    [],
    `kernel warnings in dmesg${why}`,
  );
  const irqs = l.filter((x) => x.startsWith('irq ')).map((x) => /^irq nvme0q(\d+) (\S+) (\d+)$/.exec(x));
  assert.ok(irqs.length >= 2 && irqs.every(Boolean), `an admin and an I/O queue in /proc/interrupts${why}`);
  for (const m of irqs) assert.is(m![2], 'PCI-MSI', why);
  assert.ok(Number(irqs[0]![3]) > 0, `admin queue interrupts${why}`);
  assert.ok(irqs.slice(1).reduce((n, m) => n + Number(m![3]), 0) > 0, `I/O queue interrupts${why}`);
  if (process.env.TSVMM_IN_RIG === '1') assert.ok(file !== null, `TSVMM_RIG_NVME_IMAGE readable in the rig${why}`);
  if (file !== null) assert.is(file, data, `the namespace's file on the rig's host after power-off${why}`);
}

testIf(
  test,
  reason ?? qemuUnavailable(),
  `vfio-pci nvme under QEMU -accel kvm (reference): Linux's nvme driver writes and reads back ${MIB} MiB, MSI-X queues, the host's file holds the data`,
  async () => judge('qemu', await boot('qemu')),
);

testIf(
  test,
  reason,
  `vfio-pci nvme under tsvmm: the same as under QEMU — ${MIB} MiB written and read back, MSI-X queues on PCI-MSI, the host's file holds the data, no kernel warnings`,
  async () => {
    const t = await boot('tsvmm');
    judge('tsvmm', t);
    if (qemuUnavailable() === null) {
      const q = await boot('qemu');
      assert.equal(comparable(t.run.lines), comparable(q.run.lines), nvmeGuestReport('tsvmm', t.run));
    }
  },
);

test.run();
