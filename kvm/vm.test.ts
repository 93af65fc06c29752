// Real-KVM tests of the VM-level pieces: in-kernel irqchip and PIT state, the clock, interrupt lines and routes,
// irqfd/ioeventfd, MSI and dirty logging.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as libc from '../src/sys/libc.js';
import { testIf } from '../test/support/skip.js';
import { kvmMissing, RealModeGuest } from './testing/test-guest.js';
import { Kvm } from './kvm.js';
import { decodeRedirEntry, encodeRedirEntry } from './bindings/codec-vm.js';
import * as K from './bindings/ioctls.js';
import type { IrqRoute } from './bindings/types.js';

const noKvm = kvmMissing();

/** A bare VM (no RAM, no vCPU) with an in-kernel irqchip and PIT; closed after `fn`. */
function withIrqchipVm(fn: (vm: ReturnType<Kvm['createVm']>) => void): void {
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

testIf(test, noKvm, 'vm: irqchip and PIT2 creation give a reset PIC pair, an IOAPIC at 0xfec00000 and a PIT', () => {
  withIrqchipVm((vm) => {
    assert.ok(vm.hasIrqchip);
    const master = vm.getIrqchip(K.KVM_IRQCHIP_PIC_MASTER);
    assert.is(master.chipId, 0);
    const slave = vm.getIrqchip(K.KVM_IRQCHIP_PIC_SLAVE);
    assert.is(slave.chipId, 1);
    const io = vm.getIrqchip(K.KVM_IRQCHIP_IOAPIC);
    if (io.chipId !== 2) throw new Error('expected the IOAPIC');
    assert.is(io.ioapic.baseAddress, 0xfec00000n);
    assert.is(io.ioapic.redirtbl.length, 24);
    assert.ok(
      io.ioapic.redirtbl.every((e) => decodeRedirEntry(e).mask === 1),
      'every pin masked after reset',
    );
    const pit = vm.getPit2();
    assert.is(pit.channels.length, 3);
  });
});

testIf(test, noKvm, 'vm: PIC and IOAPIC state set with setIrqchip reads back unchanged', () => {
  withIrqchipVm((vm) => {
    const master = vm.getIrqchip(K.KVM_IRQCHIP_PIC_MASTER);
    if (master.chipId !== 0) throw new Error('expected the master PIC');
    master.pic.imr = 0xa5;
    master.pic.irqBase = 0x20;
    master.pic.elcr = 0x08;
    master.pic.init4 = 1;
    vm.setIrqchip(master);
    assert.equal(vm.getIrqchip(K.KVM_IRQCHIP_PIC_MASTER), master);

    const io = vm.getIrqchip(K.KVM_IRQCHIP_IOAPIC);
    if (io.chipId !== 2) throw new Error('expected the IOAPIC');
    io.ioapic.id = 3;
    io.ioapic.ioregsel = 0x10;
    io.ioapic.redirtbl[4] = encodeRedirEntry(
      { vector: 0x34, mask: 0, trig_mode: 0, dest_id: 1 },
      io.ioapic.redirtbl[4],
    );
    io.ioapic.redirtbl[9] = encodeRedirEntry(
      { vector: 0x39, mask: 0, trig_mode: 1, polarity: 1 },
      io.ioapic.redirtbl[9],
    );
    vm.setIrqchip(io);
    const back = vm.getIrqchip(K.KVM_IRQCHIP_IOAPIC);
    assert.equal(back, io);
    if (back.chipId === 2) {
      assert.equal(decodeRedirEntry(back.ioapic.redirtbl[4]), {
        vector: 0x34,
        delivery_mode: 0,
        dest_mode: 0,
        delivery_status: 0,
        polarity: 0,
        remote_irr: 0,
        trig_mode: 0,
        mask: 0,
        dest_id: 1,
      });
    }
  });
});

testIf(test, noKvm, "vm: PIT2 state set with setPit2 reads back (the load time is KVM's own clock)", () => {
  withIrqchipVm((vm) => {
    const pit = vm.getPit2();
    pit.channels[2] = { ...pit.channels[2], mode: 3, rwMode: 3, count: 0x1234, gate: 1, bcd: 0 };
    pit.flags = K.KVM_PIT_FLAGS_HPET_LEGACY;
    vm.setPit2(pit);
    const back = vm.getPit2();
    // KVM reloads each counter on SET, stamping count_load_time with the current time.
    const withoutTime = (p: typeof pit) => ({ ...p, channels: p.channels.map((c) => ({ ...c, countLoadTime: 0n })) });
    assert.equal(withoutTime(back), withoutTime(pit));
  });
});

testIf(test, noKvm, 'vm: setClock moves the kvmclock and getClock reads it back', () => {
  withIrqchipVm((vm) => {
    const before = vm.getClock();
    const target = before.clock + 10_000_000_000n; // ten seconds ahead
    vm.setClock({ clock: target });
    const after = vm.getClock();
    assert.ok(after.clock >= target, `clock ${after.clock} behind ${target}`);
    assert.ok(after.clock - target < 1_000_000_000n, 'and not more than a second past it');
    if (after.flags & K.KVM_CLOCK_REALTIME) assert.ok(after.realtime > 0n);
  });
});

testIf(
  test,
  noKvm,
  'vm: interrupt lines, GSI routes, irqfd, ioeventfd and MSI are accepted by the in-kernel irqchip',
  () => {
    withIrqchipVm((vm) => {
      const vcpu = vm.createVcpu(0); // a LAPIC to address MSIs to
      vm.irqLine(4, 1);
      vm.irqLine(4, 0);
      assert.type(vm.irqLineStatus(3, 1), 'number');
      vm.irqLineStatus(3, 0);

      const routes: IrqRoute[] = [];
      for (let gsi = 0; gsi < 16; gsi++) {
        if (gsi !== 2)
          routes.push({
            gsi,
            type: 'irqchip',
            irqchip: gsi < 8 ? K.KVM_IRQCHIP_PIC_MASTER : K.KVM_IRQCHIP_PIC_SLAVE,
            pin: gsi % 8,
          });
      }
      for (let gsi = 0; gsi < 24; gsi++)
        routes.push({ gsi, type: 'irqchip', irqchip: K.KVM_IRQCHIP_IOAPIC, pin: gsi === 0 ? 2 : gsi });
      routes.push({ gsi: 24, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x41 });
      vm.setGsiRouting(routes);

      const efd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      const resample = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      const notify = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
      try {
        vm.irqfd({ fd: efd, gsi: 24 });
        vm.irqfd({ fd: efd, gsi: 24, flags: K.KVM_IRQFD_FLAG_DEASSIGN });
        vm.irqfd({ fd: efd, gsi: 5, flags: K.KVM_IRQFD_FLAG_RESAMPLE, resampleFd: resample });
        vm.irqfd({ fd: efd, gsi: 5, flags: K.KVM_IRQFD_FLAG_DEASSIGN });
        const pio = K.KVM_IOEVENTFD_FLAG_PIO | K.KVM_IOEVENTFD_FLAG_DATAMATCH;
        vm.ioeventfd({ fd: notify, addr: 0x6000n, len: 2, datamatch: 7n, flags: pio });
        vm.ioeventfd({ fd: notify, addr: 0x6000n, len: 2, datamatch: 7n, flags: pio | K.KVM_IOEVENTFD_FLAG_DEASSIGN });
        vm.ioeventfd({ fd: notify, addr: 0xd0000000n, len: 4 });
        vm.ioeventfd({ fd: notify, addr: 0xd0000000n, len: 4, flags: K.KVM_IOEVENTFD_FLAG_DEASSIGN });
      } finally {
        libc.close(efd);
        libc.close(resample);
        libc.close(notify);
      }
      assert.ok(vm.signalMsi({ addressLo: 0xfee00000, addressHi: 0, data: 0x41 }) >= 0);
      vcpu.close();
    });
  },
);

testIf(test, noKvm, 'vm: an ioeventfd turns a guest port write into an eventfd count without an exit', () => {
  // out 0x6000, ax (ax = 7), then out 0x3f8 so we see the guest got past it, then hlt.
  const code = [0xba, 0x00, 0x60, 0xb8, 0x07, 0x00, 0xef, 0xba, 0xf8, 0x03, 0xee, 0xf4];
  const g = new RealModeGuest(code);
  const notify = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  try {
    g.vm.ioeventfd({
      fd: notify,
      addr: 0x6000n,
      len: 2,
      datamatch: 7n,
      flags: K.KVM_IOEVENTFD_FLAG_PIO | K.KVM_IOEVENTFD_FLAG_DATAMATCH,
    });
    const run = g.runToExit();
    assert.is(run.exitReason, K.KVM_EXIT_IO);
    assert.is(run.io.port, 0x3f8, 'the write to 0x6000 did not exit');
    const count = new BigUint64Array(1);
    assert.is(libc.read(notify, count), 8);
    assert.is(count[0], 1n);
  } finally {
    g.close();
    libc.close(notify);
  }
});

testIf(test, noKvm, 'vm: the dirty log of a logged slot marks exactly the pages the guest wrote', () => {
  // mov byte [0x3000], 1 ; mov byte [0x5004], 2 ; out 0x80, al ; hlt   (code at 0x1000 is read, not written)
  const code = [0xc6, 0x06, 0x00, 0x30, 0x01, 0xc6, 0x06, 0x04, 0x50, 0x02, 0xe6, 0x80, 0xf4];
  const g = new RealModeGuest(code, { slotFlags: K.KVM_MEM_LOG_DIRTY_PAGES });
  try {
    const bitmap = new Uint8Array(8); // 16 pages → one u64 word
    g.vm.getDirtyLog(0, bitmap); // clear whatever setup touched
    assert.is(g.runToExit().exitReason, K.KVM_EXIT_IO);
    g.vm.getDirtyLog(0, bitmap);
    const dirty = [...Array(16).keys()].filter((p) => bitmap[p >> 3] & (1 << (p & 7)));
    assert.ok(dirty.includes(3) && dirty.includes(5), `dirty pages ${dirty}`);
    assert.equal(g.ram[0x3000], 1);
  } finally {
    g.close();
  }
});

testIf(test, noKvm, 'vm: creating a vCPU id twice is refused with the request and errno named', () => {
  const g = new RealModeGuest([0xf4]);
  try {
    assert.throws(() => g.vm.createVcpu(0), /ioctl\(\d+, KVM_CREATE_VCPU\) failed: EEXIST/);
  } finally {
    g.close();
  }
});

testIf(
  test,
  noKvm,
  'vm: a second slot maps host memory at a new address, and deleting it turns that range into MMIO',
  () => {
    // mov ax, 0x2000 ; mov ds, ax ; (mov al, [0] ; out 0x80, al) twice ; hlt
    const read = [0xa0, 0x00, 0x00, 0xe6, 0x80];
    const g = new RealModeGuest([0xb8, 0x00, 0x20, 0x8e, 0xd8, ...read, ...read, 0xf4]);
    try {
      g.ram[0x2000] = 0x99;
      // Slot 1: guest-physical 0x20000 shows the host page behind guest RAM 0x2000.
      g.vm.setUserMemoryRegion({
        slot: 1,
        guestPhysAddr: 0x20000,
        memorySize: 0x1000,
        userspaceAddr: g.ramAddress + 0x2000n,
      });
      assert.is(g.runToExit().io.value, 0x99);
      g.vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x20000, memorySize: 0, userspaceAddr: 0 });
      const run = g.runToExit();
      assert.is(run.exitReason, K.KVM_EXIT_MMIO);
      assert.is(run.mmio.physAddr, 0x20000n);
      run.mmio.value = 0x55n;
      assert.is(g.runToExit().io.value, 0x55);
    } finally {
      g.close();
    }
  },
);

test.run();
