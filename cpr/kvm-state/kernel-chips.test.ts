// KVM's in-kernel PICs, IOAPIC, PIT and kvmclock through their descriptors: state read from a VM round-trips
// through a record exactly, and set into a fresh VM it reads back equal (the PIT's load time and the clock are
// KVM's own time, so those are compared as times). Edge values and corrupt records without KVM.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { Kvm } from '../../kvm/kvm.js';
import type { Vm } from '../../kvm/vm.js';
import { encodeRedirEntry } from '../../kvm/bindings/codec-vm.js';
import * as K from '../../kvm/bindings/ioctls.js';
import type { IrqchipState, PitState2, ClockData } from '../../kvm/bindings/types.js';
import {
  picStateToRecord,
  recordToPicState,
  ioapicStateToRecord,
  recordToIoapicState,
  irqchipStateToRecord,
  recordToIrqchipState,
  type PicRecord,
} from './irqchip.js';
import { pitStateToRecord, recordToPitState } from './pit.js';
import { clockToRecord, recordToClock } from './clock.js';

const noKvm = kvmMissing();
const CHIPS = [K.KVM_IRQCHIP_PIC_MASTER, K.KVM_IRQCHIP_PIC_SLAVE, K.KVM_IRQCHIP_IOAPIC];

/** A VM with an in-kernel irqchip and PIT (no RAM, no vCPU needed for their state); closed after `fn`. */
function withVm(fn: (vm: Vm) => void): void {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  try {
    vm.createIrqchip();
    vm.createPit2(K.KVM_PIT_SPEAKER_DUMMY);
    fn(vm);
  } finally {
    vm.close();
    kvm.close();
  }
}

/** Moves every chip away from its reset state, as a guest that programmed them would. */
function programChips(vm: Vm): void {
  const master = vm.getIrqchip(K.KVM_IRQCHIP_PIC_MASTER);
  if (master.chipId !== 0) throw new Error('expected the master PIC');
  Object.assign(master.pic, { imr: 0xa5, irqBase: 0x20, elcr: 0x08, init4: 1, autoEoi: 1, readRegSelect: 1 });
  vm.setIrqchip(master);
  const slave = vm.getIrqchip(K.KVM_IRQCHIP_PIC_SLAVE);
  if (slave.chipId !== 1) throw new Error('expected the slave PIC');
  Object.assign(slave.pic, { imr: 0x5a, irqBase: 0x28, elcr: 0x0c, specialFullyNestedMode: 1 });
  vm.setIrqchip(slave);
  const io = vm.getIrqchip(K.KVM_IRQCHIP_IOAPIC);
  if (io.chipId !== 2) throw new Error('expected the IOAPIC');
  io.ioapic.id = 3;
  io.ioapic.ioregsel = 0x10;
  io.ioapic.redirtbl[2] = encodeRedirEntry({ vector: 0x30, mask: 0, dest_id: 0 }, io.ioapic.redirtbl[2]);
  io.ioapic.redirtbl[9] = encodeRedirEntry(
    { vector: 0x39, mask: 0, trig_mode: 1, polarity: 1, dest_id: 0xff },
    io.ioapic.redirtbl[9],
  );
  vm.setIrqchip(io);
  const pit = vm.getPit2();
  pit.channels[0] = { ...pit.channels[0], mode: 2, rwMode: 3, count: 1193, gate: 1 }; // 1 kHz rate generator
  pit.channels[2] = { ...pit.channels[2], mode: 3, rwMode: 3, count: 0x1234, gate: 0 };
  vm.setPit2(pit);
}

function roundTripIrqchip(s: IrqchipState): IrqchipState {
  return recordToIrqchipState(irqchipStateToRecord(s));
}

/** KVM stamps each counter with its own time when the PIT is set: compare everything else. */
const withoutLoadTime = (p: PitState2) => ({ ...p, channels: p.channels.map((c) => ({ ...c, countLoadTime: 0n })) });

testIf(
  test,
  noKvm,
  'kernel chips: PIC master, PIC slave and IOAPIC round-trip through records and restore into a fresh VM',
  () => {
    let saved: IrqchipState[] = [];
    withVm((vm) => {
      programChips(vm);
      const states = CHIPS.map((chip) => vm.getIrqchip(chip));
      saved = states.map(roundTripIrqchip);
      assert.equal(saved, states);
    });
    withVm((fresh) => {
      for (const s of saved) fresh.setIrqchip(s);
      assert.equal(
        CHIPS.map((chip) => fresh.getIrqchip(chip)),
        saved,
      );
    });
  },
);

testIf(test, noKvm, 'kernel chips: PIT2 round-trips through a record and restores into a fresh VM', () => {
  let saved: PitState2 | null = null;
  withVm((vm) => {
    programChips(vm);
    const pit = vm.getPit2();
    saved = recordToPitState(pitStateToRecord(pit));
    assert.equal(saved, pit);
  });
  withVm((fresh) => {
    fresh.setPit2(saved!);
    const back = fresh.getPit2();
    assert.equal(withoutLoadTime(back), withoutLoadTime(saved!));
    assert.is(back.channels[0].count, 1193);
  });
});

testIf(test, noKvm, 'kernel chips: kvmclock round-trips through a record and a fresh VM resumes from it', () => {
  let saved: ClockData | null = null;
  withVm((vm) => {
    vm.setClock({ clock: 123_000_000_000n }); // a guest that has run for two minutes
    const clock = vm.getClock();
    saved = recordToClock(clockToRecord(clock));
    assert.equal(saved, clock);
  });
  withVm((fresh) => {
    assert.ok(fresh.getClock().clock < 10_000_000_000n, 'a new VM starts its clock near 0');
    fresh.setClock(saved!);
    const back = fresh.getClock();
    assert.ok(back.clock >= saved!.clock, `clock ${back.clock} behind the saved ${saved!.clock}`);
    assert.ok(back.clock - saved!.clock < 1_000_000_000n, 'and not more than a second past it');
  });
});

// ---- without KVM --------------------------------------------------------------------------------------------

test('kernel chips: extreme PIC, IOAPIC, PIT and clock values round-trip exactly', () => {
  const pic = {
    lastIrr: 255,
    irr: 255,
    imr: 0,
    isr: 255,
    priorityAdd: 7,
    irqBase: 0xf8,
    readRegSelect: 1,
    poll: 1,
    specialMask: 1,
    initState: 3,
    autoEoi: 1,
    rotateOnAutoEoi: 1,
    specialFullyNestedMode: 1,
    init4: 1,
    elcr: 0xff,
    elcrMask: 0xf8,
  };
  assert.equal(recordToPicState(picStateToRecord(1, pic)), { chipId: 1, pic });
  const ioapic = {
    baseAddress: 0xffff_ffff_ffff_f000n,
    ioregsel: 0xffff_ffff,
    id: 0xff,
    irr: 0xffffff,
    redirtbl: Array.from({ length: 24 }, (_, i) => (1n << BigInt(i * 2 + 16)) | BigInt(i)),
  };
  ioapic.redirtbl[23] = 0xffff_ffff_ffff_ffffn;
  assert.equal(recordToIoapicState(ioapicStateToRecord(ioapic)), ioapic);
  const channel = (count: number, t: bigint) => ({
    count,
    latchedCount: 0xffff,
    countLatched: 1,
    statusLatched: 1,
    status: 0xff,
    readState: 3,
    writeState: 3,
    writeLatch: 0xff,
    rwMode: 3,
    mode: 255,
    bcd: 1,
    gate: 1,
    countLoadTime: t,
  });
  const pit: PitState2 = {
    channels: [channel(0x10000, -1n), channel(0, -(1n << 63n)), channel(0xffff_ffff, (1n << 63n) - 1n)],
    flags: 3,
  };
  assert.equal(recordToPitState(pitStateToRecord(pit)), pit);
  const clock = { clock: 0xffff_ffff_ffff_ffffn, flags: 0xffff_ffff, realtime: 1n << 62n, hostTsc: 7n };
  assert.equal(recordToClock(clockToRecord(clock)), clock);
});

test('kernel chips: the chip id travels in a PIC record and a wrong one is refused', () => {
  const pic = recordToPicState(picStateToRecord(0, { ...zeroPic() }));
  assert.is(pic.chipId, 0);
  const r: PicRecord = picStateToRecord(1, zeroPic());
  r.chipId = 2;
  assert.throws(() => recordToPicState(r), /chip id 2/);
});

test('kernel chips: an IOAPIC state without 24 pins and a PIT without 3 channels are refused', () => {
  assert.throws(
    () => ioapicStateToRecord({ baseAddress: 0n, ioregsel: 0, id: 0, irr: 0, redirtbl: [0n] }),
    /1 redirection entries/,
  );
  const ch = recordToPitState(pitStateToRecord({ channels: [zeroChannel(), zeroChannel(), zeroChannel()], flags: 0 }))
    .channels[0];
  assert.throws(() => pitStateToRecord({ channels: [ch, ch] as any, flags: 0 }), /2 channels/);
});

test('kernel chips: a reused record is cleared before it is written', () => {
  const r = clockToRecord({ clock: 5n, flags: 4, realtime: 6n, hostTsc: 7n });
  const again = clockToRecord({ clock: 1n, flags: 0, realtime: 0n, hostTsc: 0n }, r);
  assert.is(again, r);
  assert.equal(recordToClock(r), { clock: 1n, flags: 0, realtime: 0n, hostTsc: 0n });
});

function zeroPic() {
  return {
    lastIrr: 0,
    irr: 0,
    imr: 0,
    isr: 0,
    priorityAdd: 0,
    irqBase: 0,
    readRegSelect: 0,
    poll: 0,
    specialMask: 0,
    initState: 0,
    autoEoi: 0,
    rotateOnAutoEoi: 0,
    specialFullyNestedMode: 0,
    init4: 0,
    elcr: 0,
    elcrMask: 0,
  };
}

function zeroChannel() {
  return {
    count: 0,
    latchedCount: 0,
    countLatched: 0,
    statusLatched: 0,
    status: 0,
    readState: 0,
    writeState: 0,
    writeLatch: 0,
    rwMode: 0,
    mode: 0,
    bcd: 0,
    gate: 0,
    countLoadTime: 0n,
  };
}

test.run();
