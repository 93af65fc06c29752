import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as libc from '../sys/libc.js';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing, RealModeGuest } from '../../kvm/testing/test-guest.js';
import * as K from '../../kvm/bindings/constants.js';
import type { Ioeventfd } from '../../kvm/bindings/types.js';
import { IoEventRegistry, type IoEventOps } from './ioevent-registry.js';

const noKvm = kvmMissing();

class RecordingOps implements IoEventOps {
  calls: Ioeventfd[] = [];
  refuse = false;
  ioeventfd(e: Ioeventfd): void {
    if (this.refuse && !(e.flags! & K.KVM_IOEVENTFD_FLAG_DEASSIGN)) throw new Error('EEXIST');
    this.calls.push(e);
  }
}

test('ioeventfd registry: bind assigns, rebinding elsewhere deassigns exactly what was assigned, same place is a no-op', () => {
  const ops = new RecordingOps();
  const reg = IoEventRegistry.create(-1, { ops, maxSlots: 4 });
  try {
    const slots = reg.slots(reg.allocate(2));
    slots.bind(1, { address: 0xc000_3004, length: 2 });
    slots.bind(1, { address: 0xc000_3004, length: 2 });
    assert.is(ops.calls.length, 1);
    assert.equal(ops.calls[0], { fd: slots.fd(1), addr: 0xc000_3004n, len: 2, datamatch: 0n, flags: 0 });
    slots.bind(1, { address: 0xd000_0000, length: 4, datamatch: 7n });
    assert.equal(ops.calls[1], {
      fd: slots.fd(1),
      addr: 0xc000_3004n,
      len: 2,
      datamatch: 0n,
      flags: K.KVM_IOEVENTFD_FLAG_DEASSIGN,
    });
    assert.equal(ops.calls[2], {
      fd: slots.fd(1),
      addr: 0xd000_0000n,
      len: 4,
      datamatch: 7n,
      flags: K.KVM_IOEVENTFD_FLAG_DATAMATCH,
    });
    // Another thread unbinds it: it knows what to deassign from the shared table.
    const other = IoEventRegistry.attach(reg.init, ops);
    other.unbind(1);
    assert.equal(ops.calls[3], {
      fd: slots.fd(1),
      addr: 0xd000_0000n,
      len: 4,
      datamatch: 7n,
      flags: K.KVM_IOEVENTFD_FLAG_DATAMATCH | K.KVM_IOEVENTFD_FLAG_DEASSIGN,
    });
    assert.is(reg.binding(1), null);
    slots.unbind(1);
    assert.is(ops.calls.length, 4, 'unbinding an unbound slot does nothing');
    // A binding KVM refuses (the address is taken) leaves the slot unbound, without throwing.
    ops.refuse = true;
    slots.bind(0, { address: 0xc000_3000, length: 2 });
    assert.is(reg.binding(0), null);
    assert.is(reg.refused, 1);
    assert.throws(() => slots.fd(2), /outside its block/);
    assert.throws(() => slots.bind(0, { address: -1, length: 2 }), /bad binding/);
  } finally {
    reg.close();
  }
});

test("ioeventfd registry: signal counts on the slot's eventfd like a matching guest write", () => {
  const reg = IoEventRegistry.create(-1, { ops: new RecordingOps() });
  try {
    const slots = reg.slots(reg.allocate(1));
    slots.signal(0);
    slots.signal(0);
    const counter = new BigUint64Array(1);
    assert.is(libc.read(slots.fd(0), counter), 8);
    assert.is(counter[0], 2n);
  } finally {
    reg.close();
  }
});

testIf(
  test,
  noKvm,
  'ioeventfd registry: a guest mov to a bound MMIO address signals the eventfd without an exit; unbound, it exits',
  () => {
    // mov ax, 0xd000; mov ds, ax; mov word [0x10], 7; out 0x80, al; hlt   — 0xd0010 is not RAM (64 KiB guest).
    const code = [0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xc7, 0x06, 0x10, 0x00, 0x07, 0x00, 0xe6, 0x80, 0xf4];
    const g = new RealModeGuest(code);
    const reg = IoEventRegistry.create(g.vm.fd);
    try {
      const slots = reg.slots(reg.allocate(1));
      slots.bind(0, { address: 0xd0010, length: 2 });
      const run = g.runToExit();
      assert.is(run.exitReason, K.KVM_EXIT_IO, 'the MMIO write did not exit');
      assert.is(run.io.port, 0x80);
      const counter = new BigUint64Array(1);
      assert.is(libc.read(slots.fd(0), counter), 8);
      assert.is(counter[0], 1n);

      assert.is(g.runToExit().exitReason, K.KVM_EXIT_HLT);
      slots.unbind(0);
      g.vcpu.setRegs({ ...g.vcpu.getRegs(), rip: 0x1000n });
      const again = g.runToExit();
      assert.is(again.exitReason, K.KVM_EXIT_MMIO, 'unbound: the write exits to user space');
      assert.is(again.mmio.physAddr, 0xd0010n);
      assert.is(libc.read(slots.fd(0), counter), -11, 'and the eventfd stays quiet');
    } finally {
      reg.close();
      g.close();
    }
  },
);

test.run();
