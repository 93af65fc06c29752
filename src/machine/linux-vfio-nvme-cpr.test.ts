// Checkpoint/restart of a Linux guest doing I/O on a passed-through NVMe controller (issue 11, item 4): Debian's
// generic kernel with Linux's own nvme driver on QEMU's nvme bound to vfio-pci in the rig (q35 + intel-iommu,
// test/rig/), under tsvmm with `-device vfio-pci,host=BDF` and RAM on /dev/shm. The guest
// (test/support/linux-cpr-guest.ts, `readBack`) counts on hvc0 every 10 ms, appends checksummed 4 KiB blocks to
// /dev/nvme0n1 with O_DIRECT + fsync and re-reads random synced blocks past the page cache, checking each — device
// DMA both ways, all the time. ONE guest, booted once, crosses a cpr-transfer (container, group and device fds over
// SCM_RIGHTS, DMA re-pointed with the VADDR flags) and then a cpr-exec (the fds kept across the exec), and powers
// off; the tests below are steps of that one run, in order. Each hand-over: the counter goes on with no gap beyond
// the pause, the blocks synced before it are on the namespace's backing file on the rig's host, the pause's phases
// (the VFIO ones included) are printed. At the end the guest reads every block back, no read or write failed, the
// kernel logged no nvme time-out, reset or I/O error, and the backing file holds every block.
//
// Natively (no NVMe bound to vfio-pci) the file skips with vfio-devices.ts's reason and the runner reruns it in the
// rig; the device is held for the whole file (the rig runs two files at once).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busyboxMissing } from '../images/testing/host-tools.js';
import { linuxUserSpaceUnreachable } from '../../test/support/kvm-backend.js';
import {
  kernelWarnings,
  linuxGuestCmdline,
  linuxGuestKernel,
  SCENARIO_PREFIX,
} from '../../test/support/linux-guest.js';
import { BLOCK_BYTES, blocksMismatch, linuxCprBody, scenarioLines } from '../../test/support/linux-cpr-guest.js';
import { GuestChain, within } from '../../test/support/linux-cpr-session.js';
import {
  checkGap,
  type CycleResult,
  describeCycle,
  execCycle,
  letRun,
  transferCycle,
} from '../../test/support/linux-cpr-flows.js';
import { NVME_MODULES, nvmeBackingFile } from '../../test/support/linux-nvme-guest.js';
import { scenarioImage } from '../../test/support/linux-scenario-run.js';
import { testIf } from '../../test/support/skip.js';
import { holdVfioDevice, requireVfioDevice, vfioMissing } from '../../test/support/vfio-devices.js';

/** QEMU's nvme in the rig has a 64 MiB namespace. */
const DISK_BYTES = 64 << 20;
const DISK_BLOCKS = DISK_BYTES / 4096;

const found = linuxGuestKernel();
const skip =
  vfioMissing('nvme') ??
  linuxUserSpaceUnreachable() ??
  found.reason ??
  busyboxMissing() ??
  (existsSync('/dev/shm') ? null : 'no /dev/shm on this host');

const initrd =
  found.kernel && !busyboxMissing()
    ? scenarioImage(
        'vfio-nvme-cpr',
        found.kernel,
        linuxCprBody({ diskBlocks: DISK_BLOCKS, disk: '/dev/nvme0n1', net: false, readBack: true }),
        ['virtio_pci', 'virtio_console', ...NVME_MODULES],
      )
    : null;

let release: (() => Promise<void>) | undefined;
let chain: GuestChain | undefined;
const results: CycleResult[] = [];

const guest = (): GuestChain => GuestChain.running(chain);

/** What the namespace's backing file holds (in the rig; elsewhere there is none to read, and the test says so). */
function backingStore(): Buffer {
  const data = nvmeBackingFile(DISK_BYTES);
  if (!data) throw new Error('TSVMM_RIG_NVME_IMAGE: no backing file for the NVMe namespace here');
  return data;
}

/** The cycle's phases, printed, with the VFIO ones required in the process that does them. */
function checkPhases(r: CycleResult, expected: { process: string; phase: string }[]): void {
  console.log(`${r.flow} phases:\n${r.phases}`);
  for (const { process, phase } of expected)
    assert.ok(
      r.marks.some((m) => m.process === process && m.phase === phase),
      `${r.flow}: the ${process} process's ${phase} phase is in x-query-cpr-timings:\n${r.phases}`,
    );
}

testIf(
  test,
  skip,
  'linux on passed-through nvme: the guest boots, counts on hvc0, writes checksummed blocks to /dev/nvme0n1 and reads them back in a loop',
  async () => {
    release = await holdVfioDevice('nvme');
    const { bdf } = requireVfioDevice('nvme');
    chain = new GuestChain({
      kernel: found.kernel!.bzImage,
      initrd: initrd!,
      cmdline: linuxGuestCmdline(),
      diskBytes: DISK_BYTES,
      ram: '256M',
      smp: 2,
      vfio: { host: bdf, image: backingStore },
    });
    await chain.boot();
    await letRun(chain, 20);
    assert.equal(
      scenarioLines(chain.serial).filter((l) => /FAILED/.test(l)),
      [],
    );
  },
);

testIf(
  test,
  skip,
  'linux on passed-through nvme, cpr-transfer: the new tsvmm takes the device (fds over SCM_RIGHTS, DMA re-pointed) while the guest does I/O — the counter goes on, no I/O error, the synced blocks are on the device',
  async () => {
    const c = guest();
    await letRun(c, 20);
    const r = await transferCycle(c);
    results.push(r);
    console.log(describeCycle(r));
    checkGap(c, r);
    checkPhases(r, [
      { process: 'old', phase: 'vfio-invalidate-vaddr' },
      { process: 'new', phase: 'vfio-update-vaddr' },
    ]);
    // The blocks synced before the hand-over, read from the backing file while the new process writes on.
    assert.is(blocksMismatch(c.diskContents(), r.before.blocks), null, `the ${r.before.blocks} blocks synced before`);
    await letRun(c, 20);
  },
);

testIf(
  test,
  skip,
  'linux on passed-through nvme, cpr-exec: the tsvmm execs a new image that keeps the device fds while the guest does I/O — the counter goes on, no I/O error, the synced blocks are on the device',
  async () => {
    const c = guest();
    await letRun(c, 20);
    const r = await execCycle(c, 'exec');
    results.push(r);
    console.log(describeCycle(r));
    checkGap(c, r);
    checkPhases(r, [{ process: 'new', phase: 'vfio-update-vaddr' }]);
    await letRun(c, 20);
  },
);

testIf(
  test,
  skip,
  'linux on passed-through nvme: after both hand-overs the guest reads every block back (as the backing file holds them) and powers off — no I/O error or nvme time-out, the backing file holds every block, tsvmm exits 0',
  async () => {
    const c = guest();
    c.hvc.send('finish');
    assert.is(await within(c.current.exited, 'tsvmm exits after the power-off', c.detail), 0, c.detail());
    const said = scenarioLines(c.serial);
    const blocks = Number(said.find((l) => l.startsWith('blocks '))?.slice(7));
    const reads = Number(said.find((l) => l.startsWith('reads '))?.slice(6));
    console.log(`nvme guest: ${blocks} blocks written, ${reads} random reads checked, all re-read at the end`);
    assert.ok(blocks > 0, `the guest reported its blocks${c.detail()}`);
    assert.ok(reads > 0, `the reader checked blocks${c.detail()}`);
    const disk = c.diskContents();
    const onDisk = createHash('md5')
      .update(disk.subarray(0, blocks * BLOCK_BYTES))
      .digest('hex');
    assert.ok(
      said.includes(`read back ${blocks} blocks, md5 ${onDisk}`),
      `the guest read every block back as the backing file holds it (md5 ${onDisk})${c.detail()}`,
    );
    assert.equal(
      said.filter((l) => /FAILED|^io trouble:/.test(l)),
      [],
      'no read, write or check failed; the kernel logged no nvme time-out, reset or I/O error',
    );
    // (The guest's own `scenario: kernel log:` report of its dmesg is left out here: this file's check is the console.)
    assert.equal(
      kernelWarnings(c.serial).filter((l) => !l.startsWith(SCENARIO_PREFIX)),
      [],
      'no kernel warning in the whole run',
    );
    assert.equal(c.hvc.other, [], 'hvc0 held only counter lines');
    assert.is(blocksMismatch(disk, blocks), null, `all ${blocks} blocks on the backing file`);
    for (const r of results) console.log(describeCycle(r));
  },
);

test.after(async () => {
  await chain?.dispose();
  await release?.();
});

test.run();
