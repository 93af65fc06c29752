// Which failures inside the rig are its nested SVM losing a guest's CPU state (a file that met one runs once more).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rigStateLoss } from './rig-state-loss.js';

// As cpr.test printed it in CI (2026-12-08): the migration's error-desc, inside an assertion's output.
const LOST =
  '{"status":"failed","error-desc":"vCPU 0: KVM_GET_SREGS answered with special registers KVM itself refuses (a 64-bit code segment (CS.L) outside long mode): cr0=0x80050033 cr3=0x1c0910000 cr4=0x0 efer=0x0 apic_base=0xfee00900 cs=0x10 l=1 db=0; asked again: …; the state was not saved"}';

test('rig state loss: the capture check refusing what KVM answered is recognised, and its line returned', () => {
  assert.is(rigStateLoss(`FAIL "cpr-transfer"\n${LOST}\n  at cprTransfer`), LOST);
});

test('rig state loss: any other failure is not (a triple fault, a refused restore, a timeout)', () => {
  for (const output of [
    'tsvmm: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not handle',
    'the restore was refused part-way (vcpu 1: KVM refused MSR 0x277); the VM is back in its state before the restore',
    '[runner] timed out after 1800000 ms, killed',
  ])
    assert.is(rigStateLoss(output), null, output);
});

test.run();
