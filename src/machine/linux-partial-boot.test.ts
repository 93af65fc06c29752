// A stock Debian kernel under tsvmm on a PVM host (slow: ~30 s). KVM's emulator cannot take Linux to user space
// here (it dies on int3 in the alternatives self-test; docs/linux.md, "On this host (PVM)"), so this checks what a
// correct VMM makes the kernel print before that wall — our e820 map, our command line, our ACPI tables, the CPU
// count, a working serial console — and that tsvmm then reports the emulation failure cleanly. On a VMX/SVM host the
// Linux scenario tests (linux-devices.test.ts, linux-acpi.test.ts) run instead.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { debianKernel } from '../../test/support/linux-kernel.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { e820FromRam, E820_RAM } from '../boot/e820.js';
import { x86RamLayout } from '../memory/x86-layout.js';
import { ExitStatus } from '../util/exit-status.js';
import { defaultPciHostConfig, ecamRange } from './pci-plan.js';

const pvm = existsSync('/sys/module/kvm_pvm');
const found = debianKernel();
const skip = kvmMissing() ?? (pvm ? null : 'this host has VMX/SVM: the full Linux boot test covers it') ?? found.reason;

const RAM = 512 << 20;
const CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0 noxsave nokaslr tsvmm.test=partial-boot';

/** The e820 lines Linux prints for our map (RAM and the PCI host's ECAM window). With the PVH entry the kernel itself
 * marks 0xa0000-0xfffff reserved, so the reserved pieces below 1 MiB merge into one. */
function expectedE820(): string[] {
  const ram = x86RamLayout(RAM).map((r) => ({ start: r.gpa, size: r.size }));
  const ecam = ecamRange(defaultPciHostConfig(RAM))!;
  const map = e820FromRam(ram, [{ start: ecam.base, size: ecam.size }]);
  const merged: { start: number; end: number; usable: boolean }[] = [];
  for (const e of map) {
    let start = e.addr;
    let end = e.addr + e.size;
    const usable = e.type === E820_RAM;
    if (!usable && start < 0x100000) {
      start = Math.min(start, 0xa0000);
      end = Math.max(end, 0x100000);
    }
    const last = merged[merged.length - 1];
    if (last && last.usable === usable && start <= last.end) last.end = Math.max(last.end, end);
    else merged.push({ start, end, usable });
  }
  const hex = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;
  return merged.map((m) => `BIOS-e820: [mem ${hex(m.start)}-${hex(m.end - 1)}] ${m.usable ? 'usable' : 'reserved'}`);
}

testIf(
  test,
  skip,
  "linux (slow): a Debian kernel sees our e820 map, command line, ACPI tables and 2 CPUs, then tsvmm reports the emulator's wall cleanly",
  async () => {
    const kernel = found.kernel!;
    const r = await runTsvmm(
      [
        'run',
        '-m',
        '512M',
        '-smp',
        '2',
        '-cpu',
        'pvm-safe',
        '-kernel',
        kernel.vmlinux,
        '-append',
        CMDLINE,
        '-no-reboot',
        '--timeout',
        '150',
      ],
      { timeoutMs: 180_000 },
    );
    const out = r.stdout;
    // The serial console works from the first line on.
    assert.match(out, /Linux version 6\.\d+/);
    assert.match(out, new RegExp(`Command line: ${CMDLINE}`));
    const printed = [...out.matchAll(/BIOS-e820: \[mem [^\]]+\] \w+/g)].map((m) => m[0]);
    assert.equal(printed, expectedE820());
    for (const table of ['RSDP 0x00000000000F0000', 'XSDT', 'FACP', 'DSDT', 'FACS', 'APIC', 'MCFG'])
      assert.match(out, new RegExp(`ACPI: ${table}`));
    assert.match(out, /ACPI: PM-Timer IO Port: 0x608/);
    assert.match(out, /IOAPIC\[0\]: apic_id 0, version \d+, address 0xfec00000, GSI 0-23/);
    assert.match(out, /smpboot: Allowing 2 CPUs, 0 hotplug CPUs/);
    // The emulator's wall: an emulation failure, reported with RIP, mode and the int3 at RIP.
    assert.is(r.status, ExitStatus.kvmInternalError, r.stderr);
    assert.match(r.stderr, /KVM internal error .*emulation failure/);
    assert.match(r.stderr, /long mode \(64-bit\)/);
    assert.match(r.stderr, /instruction bytes at RIP: cc/);
  },
);

test.run();
