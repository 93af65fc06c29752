// The edu guest (edu.c) against QEMU's emulated edu device: the reference for what the guest prints, runnable on any
// host with QEMU (TCG where /dev/kvm is missing, ~6 s). The same guest against the real device passed through, under
// QEMU and tsvmm, is edu-vfio.test.ts; both are judged by the lines edu-host.ts computes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { buildGuest, toolchainUnavailable } from './build.js';
import { EDU_PASSED, eduComparableLines, eduContext, eduExpectedLines, eduPlacement, runEdu } from './edu-host.js';
import { qemuAccel, qemuUnavailable } from './qemu-runner.js';

const withQemu = (await toolchainUnavailable()) ?? qemuUnavailable();

testIf(
  test,
  withQemu,
  `edu (qemu ${qemuAccel()} pc, -device edu): identity, BAR0 sized and moved twice by the guest, liveness, factorials, DMA both ways with checksums, MSI and INTx from every cause — the lines edu-host.ts computes`,
  async () => {
    const r = await runEdu('qemu', { kernel: (await buildGuest('edu')).path, device: 'emulated', timeoutS: 120 });
    assert.is(r.status, EDU_PASSED, `exit status${eduContext(r)}`);
    assert.equal(eduComparableLines(r.serial), eduExpectedLines(), eduContext(r));
    const at = eduPlacement(r.serial);
    assert.ok(at, `no "edu: at" line${eduContext(r)}`);
    // SeaBIOS assigned BAR0 and routed INTA# through a PIIX PIRQ link to ISA IRQ 10 or 11.
    assert.ok(at!.firmwareBar0 !== 0, `SeaBIOS left BAR0 unassigned${eduContext(r)}`);
    assert.ok(at!.line === 10 || at!.line === 11, `INTERRUPT_LINE ${at!.line}${eduContext(r)}`);
  },
);

testIf(test, withQemu, 'edu (qemu, -device edu): intx=0 leaves the INTx part out', async () => {
  const r = await runEdu('qemu', {
    kernel: (await buildGuest('edu')).path,
    device: 'emulated',
    intx: false,
    timeoutS: 120,
  });
  assert.is(r.status, EDU_PASSED, `exit status${eduContext(r)}`);
  assert.equal(eduComparableLines(r.serial), eduExpectedLines({ intx: false }), eduContext(r));
});

test.run();
