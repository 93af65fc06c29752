// The last check on a captured vCPU state: special registers that KVM itself would refuse are never saved. KVM is
// asked once more; a good second answer is saved (and the bad one reported on stderr), a bad one fails the
// checkpoint before anything leaves the process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing, RealModeGuest } from '../../kvm/testing/test-guest.js';
import type { VcpuState } from '../../kvm/bindings/types.js';
import { vcpuStateToRecord, type VcpuRecord } from '../machine-state/index.js';
import { keptByKvmRules } from './capture-check.js';
import { CprError } from './cpr-error.js';

const noKvm = kvmMissing();

/** A real vCPU's power-on state (the record conversion wants every part KVM gives). */
function powerOnState(): VcpuState {
  const g = new RealModeGuest([0xf4]);
  try {
    return g.vcpu.getState();
  } finally {
    g.close();
  }
}

/** The soak's 116th capture: a 32-bit guest without paging read back with CR0.PG and a 64-bit CS. */
function asTheSoakSawIt(state: VcpuState): VcpuRecord {
  const bad = structuredClone(state);
  bad.sregs.cr0 = 0x80050033n;
  bad.sregs.cs.l = 1;
  return vcpuStateToRecord(bad);
}

function stderrOf(run: () => void): string {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    run();
  } finally {
    process.stderr.write = write;
  }
  return out;
}

testIf(test, noKvm, 'capture check: a state that keeps the rules is saved as captured, KVM not asked again', () => {
  const record = vcpuStateToRecord(powerOnState());
  let asked = 0;
  const kept = keptByKvmRules(0, record, () => {
    asked++;
    return record;
  });
  assert.is(kept, record);
  assert.is(asked, 0);
});

testIf(test, noKvm, 'capture check: a bad answer is replaced by a good second one, and reported', () => {
  const state = powerOnState();
  const good = vcpuStateToRecord(state);
  let kept: VcpuRecord | null = null;
  const said = stderrOf(() => {
    kept = keptByKvmRules(1, asTheSoakSawIt(state), () => good);
  });
  assert.is(kept, good);
  assert.match(said, /^tsvmm: vCPU 1: KVM_GET_SREGS answered with special registers KVM itself refuses/);
  assert.match(said, /a 64-bit code segment \(CS\.L\) outside long mode\): cr0=0x80050033 /);
  assert.match(said, /asked again: cr0=0x60000010 .*, which is saved\n$/);
});

testIf(test, noKvm, 'capture check: two bad answers fail the checkpoint with both named, nothing on stderr', () => {
  const state = powerOnState();
  const said = stderrOf(() => {
    assert.throws(
      () => keptByKvmRules(0, asTheSoakSawIt(state), () => asTheSoakSawIt(state)),
      (e: Error) =>
        e instanceof CprError &&
        /^vCPU 0: KVM_GET_SREGS answered .*cr0=0x80050033 .*; asked again: cr0=0x80050033 .*\(a 64-bit code segment \(CS\.L\) outside long mode\); the state was not saved$/.test(
          e.message,
        ),
    );
  });
  assert.is(said, '');
});

test.run();
