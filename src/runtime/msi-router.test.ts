import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as libc from '../sys/libc.js';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing, RealModeGuest } from '../../kvm/testing/test-guest.js';
import * as K from '../../kvm/bindings/constants.js';
import type { IrqRoute, Irqfd } from '../../kvm/bindings/types.js';
import { MsiRouter, defaultIrqchipRoutes, type MsiRoutingOps } from './msi-router.js';

const noKvm = kvmMissing();

class RecordingOps implements MsiRoutingOps {
  tables: IrqRoute[][] = [];
  irqfds: Irqfd[] = [];
  setGsiRouting(routes: readonly IrqRoute[]): void {
    this.tables.push([...routes]);
  }
  irqfd(f: Irqfd): void {
    this.irqfds.push(f);
  }
}

test("msi router: the default irqchip routes are KVM's: GSI 0-15 on the PICs and the IOAPIC, 16-23 on the IOAPIC", () => {
  const routes = defaultIrqchipRoutes();
  assert.is(routes.length, 16 + 24);
  assert.ok(
    routes.some((r) => r.gsi === 2 && r.type === 'irqchip' && r.irqchip === K.KVM_IRQCHIP_PIC_MASTER && r.pin === 2),
  );
  assert.ok(
    routes.some((r) => r.gsi === 9 && r.type === 'irqchip' && r.irqchip === K.KVM_IRQCHIP_PIC_SLAVE && r.pin === 1),
  );
  for (let gsi = 0; gsi < 24; gsi++) {
    assert.ok(
      routes.some((r) => r.gsi === gsi && r.type === 'irqchip' && r.irqchip === K.KVM_IRQCHIP_IOAPIC && r.pin === gsi),
      `IOAPIC pin ${gsi}`,
    );
  }
});

test('msi router: each route change hands KVM the whole table — irqchip pins kept — and only when something changed', () => {
  const ops = new RecordingOps();
  const router = MsiRouter.create(-1, { ops, maxVectors: 8 });
  try {
    const a = router.vectors(router.allocate(2));
    const b = router.vectors(router.allocate(3));
    assert.equal(
      ops.irqfds.map((f) => f.gsi),
      [24, 25, 26, 27, 28],
      'one irqfd per vector, consecutive GSIs from 24',
    );
    a.route(1, 0xfee0_0000n, 0x41);
    b.route(0, 0xfee0_1000n, 0x42);
    assert.is(ops.tables.length, 2);
    const last = ops.tables[1];
    assert.equal(last.slice(0, 40), defaultIrqchipRoutes(), 'irqchip entries first, unchanged');
    assert.equal(last.slice(40), [
      { gsi: 25, type: 'msi', addressLo: 0xfee0_0000, addressHi: 0, data: 0x41 },
      { gsi: 26, type: 'msi', addressLo: 0xfee0_1000, addressHi: 0, data: 0x42 },
    ]);
    a.route(1, 0xfee0_0000n, 0x41);
    assert.is(ops.tables.length, 2, 'same message: no ioctl');
    a.route(1, 0x1000n, 0x41); // not an interrupt address: the entry goes
    assert.equal(
      ops.tables[2].slice(40).map((r) => r.gsi),
      [26],
    );
    a.route(9, 0xfee0_0000n, 1); // outside the block: ignored
    assert.is(ops.tables.length, 3);
    assert.throws(() => router.allocate(4), /cannot allocate 4 vectors/);
  } finally {
    router.close();
  }
  assert.is(ops.irqfds.filter((f) => f.flags === K.KVM_IRQFD_FLAG_DEASSIGN).length, 5, 'irqfds unbound on close');
});

test('msi router: another thread attached to the same table sees and extends the same routes', () => {
  const opsMain = new RecordingOps();
  const main = MsiRouter.create(-1, { ops: opsMain, maxVectors: 4 });
  try {
    const block = main.allocate(2);
    const opsWorker = new RecordingOps();
    const worker = MsiRouter.attach(main.init, opsWorker);
    worker.vectors(block).route(0, 0xfee0_0000n, 0x50);
    assert.equal(main.routes().slice(40), [{ gsi: 24, type: 'msi', addressLo: 0xfee0_0000, addressHi: 0, data: 0x50 }]);
    main.vectors(block).route(1, 0xfee0_0000n, 0x51);
    assert.is(opsMain.tables[0].length, 42, "the main thread's table includes the worker's entry");
    assert.throws(() => worker.allocate(1), /main thread/);
  } finally {
    main.close();
  }
});

/** LAPIC register page offsets (KVM_GET_LAPIC mirrors the xAPIC MMIO page). */
const APIC_SPIV = 0xf0; // spurious-interrupt vector register; bit 8 = APIC software enable
const APIC_IRR = 0x200; // interrupt request register, 8 dwords at 16-byte stride

function irrHas(lapic: Uint8Array, vector: number): boolean {
  const word = new DataView(lapic.buffer, lapic.byteOffset).getUint32(APIC_IRR + 0x10 * (vector >> 5), true);
  return (word & (1 << (vector & 31))) !== 0;
}

testIf(
  test,
  noKvm,
  'msi router: an irqfd write injects the routed MSI into a real-mode guest, which takes the interrupt',
  async () => {
    // 0x1000: sti; hlt; jmp hlt.  Handler (IVT vector 0x41 → 0000:2000): mov al, 0x41; out 0x80, al; hlt.
    const g = new RealModeGuest([0xfb, 0xf4, 0xeb, 0xfd], { irqchip: true });
    const router = MsiRouter.create(g.vm.fd);
    try {
      g.ram.set([0xb0, 0x41, 0xe6, 0x80, 0xf4], 0x2000);
      g.ram.set([0x00, 0x20, 0x00, 0x00], 0x41 * 4);
      const lapic = g.vcpu.getLapic();
      lapic[APIC_SPIV] = 0xff;
      lapic[APIC_SPIV + 1] |= 1; // software-enable the LAPIC: a disabled one drops fixed interrupts
      g.vcpu.setLapic(lapic);

      const vectors = router.vectors(router.allocate(2));
      vectors.route(1, 0xfee0_0000n, 0x41); // fixed delivery, physical destination APIC 0, vector 0x41
      vectors.fire(1);
      // KVM injects on its own (no exit, no ioctl of ours): the vector shows up in the LAPIC's IRR.
      let pending = false;
      for (let i = 0; i < 100 && !pending; i++) {
        pending = irrHas(g.vcpu.getLapic(), 0x41);
        if (!pending) await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(pending, 'vector 0x41 pending in the IRR after the eventfd write');
      const run = g.runToExit();
      assert.is(run.exitReason, K.KVM_EXIT_IO);
      assert.is(run.io.port, 0x80);
      assert.is(run.io.value, 0x41, 'the guest ran the vector 0x41 handler');
    } finally {
      router.close();
      g.close();
    }
  },
);

testIf(
  test,
  noKvm,
  'msi router: KVM accepts the full table (irqchip pins and MSI entries) and an IOAPIC line still works after it',
  () => {
    const g = new RealModeGuest([0xf4], { irqchip: true });
    const router = MsiRouter.create(g.vm.fd);
    try {
      const vectors = router.vectors(router.allocate(4));
      for (let v = 0; v < 4; v++) vectors.route(v, 0xfee0_0000n, 0x40 + v);
      assert.is(router.routes().length, 44);
      // GSI 4 still has its irqchip routes: KVM_IRQ_LINE_STATUS answers for a routed line (a GSI without routes
      // would make KVM report nothing delivered on every pin).
      assert.type(g.vm.irqLineStatus(4, 1), 'number');
      g.vm.irqLineStatus(4, 0);
    } finally {
      router.close();
      g.close();
    }
  },
);

test('msi router: a vector outside the block, or fire before allocation, does nothing', () => {
  const ops = new RecordingOps();
  const router = MsiRouter.create(-1, { ops, maxVectors: 2 });
  try {
    const block = router.allocate(1);
    const v = router.vectors(block);
    v.fire(3);
    router.fire(7);
    const counter = new BigUint64Array(1);
    assert.is(libc.read(router.init.fds[0], counter), -11, 'the eventfd was not written (EAGAIN)');
    v.fire(0);
    assert.is(libc.read(router.init.fds[0], counter), 8);
    assert.is(counter[0], 1n);
  } finally {
    router.close();
  }
});

test.run();
