// The virtio-pci transport driven the way Linux's virtio_pci_modern driver drives it: config-space probing
// (capabilities, BARs), then the common configuration, MSI-X, queues and notifications through BAR accesses — with
// a trivial echo back end over real rings. Two "threads" share the records: a vCPU thread's instance takes every
// guest access, an I/O thread's instance runs the notification watches, as in the machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, u32, recordBytes, type StateOf } from '../../cpr/vmstate/vmstate.js';
import { MmioBus, PioBus } from '../../src/bus/bus.js';
import { PciBus, type PciWindows } from '../pci/bus.js';
import { PciHostBridge, pciHostState } from '../pci/host-bridge.js';
import * as P from '../pci/constants.js';
import { FakeIoEvents, FakeIrqLines, FakeMsi } from '../pci/testing/fakes.js';
import { serveQueue } from './queue.js';
import { CheckedMemory } from './testing/checked-memory.js';
import { DriverQueue, GuestAllocator } from './testing/driver.js';
import { QueueAbandoned } from './queue.js';
import type { IoThreadHold } from '../registration.js';
import {
  readConfigImage,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_RNG,
  type VirtioBackend,
  type VirtioContext,
} from './types.js';
import * as V from './pci-transport.js';

const WINDOWS: PciWindows = {
  mmio32: { base: 0xc000_0000, size: 0x2000_0000 },
  mmio64: null,
  io: { base: 0xc000, size: 0x4000 },
};
const ECAM = 0xe000_0000;
const SLOT = 3;
const BARS = { msix: 0xc000_0000, modern: 0xc000_4000 };
const FEATURE_ECHO_UPPER = 0n; // the echo device's one feature bit: upper-case what it echoes

const echoState = { name: 'echo', version: 1, fields: [u32('echoed'), u32('scratch')] } as const;

/** A trivial device: each chain's readable bytes come back in its writable buffers. */
class EchoBackend implements VirtioBackend {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueMaxSizes = [16, 8];
  readonly deviceFeatures = 1n << FEATURE_ECHO_UPPER;
  readonly configSize = 8;
  activations = 0;
  /** Runs as each request's "host I/O", outside the machine lock (as virtio-blk's file I/O does). */
  duringIo: (() => void) | null = null;
  private context: VirtioContext | null = null;

  constructor(private readonly state: StateOf<typeof echoState>) {}

  readConfig(offset: number, size: 1 | 2 | 4): number {
    const image = new Uint8Array(8);
    new DataView(image.buffer).setUint32(0, this.state.echoed, true);
    new DataView(image.buffer).setUint32(4, this.state.scratch, true);
    return readConfigImage(image, offset, size);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset === 4 && size === 4) this.state.scratch = value;
  }

  activate(context: VirtioContext): void {
    this.context = context;
    this.activations++;
  }

  reset(): void {
    this.context = null;
    this.state.echoed = 0;
    this.state.scratch = 0;
  }

  notify(index: number): void {
    const context = this.context;
    if (!context) return;
    const upper = (context.features & (1n << FEATURE_ECHO_UPPER)) !== 0n;
    serveQueue(context, index, (chain, queue) => {
      if (!context.outsideLock(() => this.duringIo?.())) throw new QueueAbandoned('echo');
      let data = queue.readFrom(chain, 0, chain.readableBytes);
      if (upper) data = data.map((b) => (b >= 0x61 && b <= 0x7a ? b - 32 : b));
      this.state.echoed++;
      return queue.writeTo(chain, 0, data);
    });
  }
}

interface Thread {
  pio: PioBus;
  mmio: MmioBus;
  host: PciHostBridge;
  transport: V.VirtioPciTransport;
  backend: EchoBackend;
}

class Machine {
  readonly memory: CheckedMemory;
  readonly allocator = new GuestAllocator(0x10000, 4 << 20);
  readonly irqs = new FakeIrqLines();
  readonly msi = new FakeMsi(3);
  readonly notify = new FakeIoEvents(2);
  readonly log: string[] = [];
  readonly hostState = newRecord(pciHostState);
  readonly vcpu: Thread;
  readonly io: Thread;
  /** The machine lock as the I/O thread's transport sees it: held while runIo() runs a watch. */
  readonly ioLock = {
    held: false,
    events: [] as string[],
    parkWanted: false,
    parkRequested() {
      return this.parkWanted;
    },
    lock() {
      this.held = true;
      this.events.push('lock');
    },
    unlock() {
      this.held = false;
      this.events.push('unlock');
    },
  };
  readonly record: V.VirtioPciRecord;
  readonly echo: StateOf<typeof echoState>;
  private readonly ioeventfd: boolean;

  /** A machine at power-on, or (reset: false) one over existing records and RAM, as a restarted tsvmm has them. */
  constructor({
    record = newRecord(V.virtioPciState),
    echo = newRecord(echoState),
    memory = new CheckedMemory(4 << 20),
    reset = true,
    ioeventfd = true,
  } = {}) {
    this.ioeventfd = ioeventfd;
    this.record = record;
    this.echo = echo;
    this.memory = memory;
    this.vcpu = this.thread();
    this.io = this.thread(this.ioLock);
    if (reset) {
      this.vcpu.host.reset();
      this.vcpu.transport.reset();
      this.vcpu.host.restored();
      this.vcpu.transport.restored();
    }
  }

  private thread(ioLock?: IoThreadHold): Thread {
    const bus = new PciBus(this.hostState, WINDOWS, this.irqs.line);
    const host = new PciHostBridge(this.hostState, { windows: WINDOWS, ecam: { base: ECAM, buses: 1 } }, bus);
    const backend = new EchoBackend(this.echo);
    const transport = new V.VirtioPciTransport(this.record, backend, {
      pci: bus,
      slot: SLOT,
      memory: this.memory,
      msi: this.msi,
      notify: this.notify,
      bars: BARS,
      name: 'echo',
      log: (l) => this.log.push(l),
      ioLock,
      ioeventfd: this.ioeventfd,
    });
    const pio = new PioBus();
    const mmio = new MmioBus();
    for (const r of host.regions()) (r.space === 'pio' ? pio : mmio).add(r);
    return { pio, mmio, host, transport, backend };
  }

  // ---- what the guest does (on a vCPU) ----
  cfgRead(reg: number, size: 1 | 2 | 4): number {
    return Number(this.vcpu.mmio.read(ECAM + (SLOT << 15) + reg, size));
  }
  cfgWrite(reg: number, size: 1 | 2 | 4, value: number): void {
    this.vcpu.mmio.write(ECAM + (SLOT << 15) + reg, size, value);
  }
  bar4 = BARS.modern;
  read(offset: number, size: 1 | 2 | 4): number {
    return Number(this.vcpu.mmio.read(this.bar4 + offset, size));
  }
  write(offset: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    this.vcpu.mmio.write(this.bar4 + offset, size, value);
  }
  common(reg: number, size: 1 | 2 | 4): number {
    return this.read(V.VIRTIO_PCI_COMMON_OFFSET + reg, size);
  }
  setCommon(reg: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    this.write(V.VIRTIO_PCI_COMMON_OFFSET + reg, size, value);
  }
  status(): number {
    return this.common(V.VIRTIO_PCI_COMMON_STATUS, 1);
  }
  addStatus(bits: number): void {
    this.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, this.status() | bits);
  }
  /** A guest's notification: KVM signals the bound eventfd without an exit; otherwise the write exits to the BAR. */
  kick(q: number): void {
    const address = this.bar4 + V.VIRTIO_PCI_NOTIFY_OFFSET + q * V.VIRTIO_PCI_NOTIFY_MULTIPLIER;
    const bound = [...this.notify.bindings].find(([, b]) => b.address === address && b.length === 2);
    if (bound) this.notify.signal(bound[0]);
    else this.write(V.VIRTIO_PCI_NOTIFY_OFFSET + q * V.VIRTIO_PCI_NOTIFY_MULTIPLIER, 2, q);
  }

  // ---- what the I/O thread does ----
  runIo(): void {
    const watches = this.io.transport.ioWatches();
    for (const slot of this.notify.take()) {
      this.ioLock.held = true; // as the I/O loop runs every watch
      try {
        watches[slot].ready();
      } finally {
        this.ioLock.held = false;
      }
    }
  }
}

/** The vendor capabilities as Linux's virtio_pci_find_capability sees them: type → {bar, offset, length, mult}. */
function virtioCaps(m: Machine): Map<number, { bar: number; offset: number; length: number; mult?: number }> {
  const caps = new Map<number, { bar: number; offset: number; length: number; mult?: number }>();
  assert.ok(m.cfgRead(P.PCI_STATUS, 2) & P.PCI_STATUS_CAP_LIST);
  for (let at = m.cfgRead(P.PCI_CAPABILITY_LIST, 1), n = 0; at !== 0 && n < 48; at = m.cfgRead(at + 1, 1), n++) {
    if (m.cfgRead(at, 1) !== P.PCI_CAP_ID_VNDR) continue;
    const type = m.cfgRead(at + V.VIRTIO_PCI_CAP_CFG_TYPE, 1);
    caps.set(type, {
      bar: m.cfgRead(at + V.VIRTIO_PCI_CAP_BAR, 1),
      offset: m.cfgRead(at + V.VIRTIO_PCI_CAP_OFFSET, 4),
      length: m.cfgRead(at + V.VIRTIO_PCI_CAP_LENGTH, 4),
      mult: type === V.VIRTIO_PCI_CAP_NOTIFY_CFG ? m.cfgRead(at + V.VIRTIO_PCI_NOTIFY_CAP_MULT, 4) : undefined,
    });
  }
  return caps;
}

function findCap(m: Machine, id: number): number {
  for (let at = m.cfgRead(P.PCI_CAPABILITY_LIST, 1); at !== 0; at = m.cfgRead(at + 1, 1))
    if (m.cfgRead(at, 1) === id) return at;
  return 0;
}

/** virtio_pci_modern probe + virtio_dev_probe up to FEATURES_OK; returns the features the driver took. */
function negotiate(
  m: Machine,
  want = (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_RING_EVENT_IDX) | (1n << FEATURE_ECHO_UPPER),
): bigint {
  m.cfgWrite(P.PCI_COMMAND, 2, P.PCI_COMMAND_MEMORY | P.PCI_COMMAND_MASTER);
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  assert.is(m.status(), 0, 'reset completes at once');
  m.addStatus(V.VIRTIO_CONFIG_S_ACKNOWLEDGE);
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER);
  let offered = 0n;
  for (const select of [0, 1]) {
    m.setCommon(V.VIRTIO_PCI_COMMON_DFSELECT, 4, select);
    offered |= BigInt(m.common(V.VIRTIO_PCI_COMMON_DF, 4)) << BigInt(32 * select);
  }
  const take = offered & want;
  for (const select of [0, 1]) {
    m.setCommon(V.VIRTIO_PCI_COMMON_GFSELECT, 4, select);
    m.setCommon(V.VIRTIO_PCI_COMMON_GF, 4, Number((take >> BigInt(32 * select)) & 0xffffffffn));
  }
  m.addStatus(V.VIRTIO_CONFIG_S_FEATURES_OK);
  return take;
}

/** MSI-X on: vector 0 for config changes, vector 1 + q for queue q (as vp_find_vqs_msix with one vector per queue). */
function setupMsix(m: Machine): void {
  const cap = findCap(m, P.PCI_CAP_ID_MSIX);
  for (let v = 0; v < 3; v++) {
    const at = BARS.msix + 16 * v;
    m.vcpu.mmio.write(at, 4, 0xfee0_0000);
    m.vcpu.mmio.write(at + 4, 4, 0);
    m.vcpu.mmio.write(at + 8, 4, 0x30 + v);
    m.vcpu.mmio.write(at + 12, 4, 0);
  }
  m.cfgWrite(cap + P.PCI_MSIX_FLAGS, 2, P.PCI_MSIX_FLAGS_ENABLE);
  m.setCommon(V.VIRTIO_PCI_COMMON_MSIX, 2, 0);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_MSIX, 2), 0);
}

/** vp_modern setup_vq: select, size, rings, vector, notify_off, enable. */
function setupQueue(m: Machine, q: number, size: number, vector: number | null): DriverQueue {
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
  const max = m.common(V.VIRTIO_PCI_COMMON_Q_SIZE, 2);
  assert.ok(max >= size, `queue ${q} max ${max}`);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
  const d = new DriverQueue(m.memory, m.allocator, size);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCLO, 4, d.desc);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_AVAILLO, 8, BigInt(d.avail)); // a 64-bit write, split by the bus
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_USEDLO, 4, d.used);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
  if (vector !== null) {
    m.setCommon(V.VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
    assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_MSIX, 2), vector);
  }
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_NOFF, 2), q);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
  return d;
}

const text = (s: string) => new TextEncoder().encode(s);
const str = (m: Machine, gpa: number, n: number) => new TextDecoder().decode(m.memory.read(gpa, n));

/** The usual driver start: features negotiated, MSI-X on, queue 0 (size 8) on vector 1, DRIVER_OK, activated. */
function startWithOneQueue(m: Machine) {
  negotiate(m);
  setupMsix(m);
  const q0 = setupQueue(m, 0, 8, 1);
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER_OK);
  m.runIo();
  return q0;
}

test('virtio-pci: identity, capabilities and BARs are what virtio_pci_modern probes for', () => {
  const m = new Machine();
  assert.is(m.cfgRead(P.PCI_VENDOR_ID, 2), 0x1af4);
  assert.is(m.cfgRead(P.PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
  assert.is(m.cfgRead(P.PCI_REVISION_ID, 1), 1);
  assert.is(m.cfgRead(P.PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
  assert.is(m.cfgRead(P.PCI_SUBSYSTEM_ID, 2), V.VIRTIO_PCI_SUBSYSTEM_ID);
  assert.is(m.cfgRead(P.PCI_REVISION_ID, 4) >>> 8, 0x00ff00, "class: unclassified (QEMU's virtio-rng)");
  assert.is(m.cfgRead(P.PCI_INTERRUPT_PIN, 1), 1);
  assert.is(m.cfgRead(P.PCI_BASE_ADDRESS_0 + 4, 4), BARS.msix, 'BAR 1 assigned as firmware would');
  assert.is(m.cfgRead(P.PCI_BASE_ADDRESS_0 + 16, 4), (BARS.modern | 0xc) >>> 0, 'BAR 4: 64-bit prefetchable');
  assert.is(m.cfgRead(P.PCI_BASE_ADDRESS_0 + 20, 4), 0);
  assert.ok(m.cfgRead(P.PCI_COMMAND, 2) & P.PCI_COMMAND_MEMORY, 'memory decoding on');
  const caps = virtioCaps(m);
  for (const [type, offset] of [
    [1, 0],
    [3, 0x1000],
    [4, 0x2000],
    [2, 0x3000],
  ] as const) {
    const cap = caps.get(type)!;
    assert.ok(cap, `capability type ${type}`);
    assert.is(cap.bar, 4);
    assert.is(cap.offset, offset);
    assert.ok(cap.offset + cap.length <= V.VIRTIO_PCI_MODERN_BAR_SIZE);
  }
  assert.ok(caps.get(1)!.length >= V.VIRTIO_PCI_COMMON_CFG_SIZE, 'Linux requires the whole common config');
  assert.is(caps.get(2)!.mult, 4);
  const msix = findCap(m, P.PCI_CAP_ID_MSIX);
  assert.is(m.cfgRead(msix + P.PCI_MSIX_FLAGS, 2) & P.PCI_MSIX_FLAGS_QSIZE, 2, 'three vectors: two queues + config');
  assert.is(m.cfgRead(msix + P.PCI_MSIX_TABLE, 4), 1, 'table in BAR 1 at 0');
  assert.is(m.cfgRead(msix + P.PCI_MSIX_PBA, 4), 0x800 | 1);
  // BAR sizing of BAR 4 reads back 16 KiB.
  m.cfgWrite(P.PCI_COMMAND, 2, 0);
  m.cfgWrite(P.PCI_BASE_ADDRESS_0 + 16, 4, 0xffffffff);
  assert.is(m.cfgRead(P.PCI_BASE_ADDRESS_0 + 16, 4), (0xffffc000 | 0xc) >>> 0);
});

test('virtio-pci: probe, negotiate, set up MSI-X and queues, DRIVER_OK; a kick is echoed with a queue interrupt', () => {
  const m = new Machine();
  const features = negotiate(m);
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_FEATURES_OK, 'FEATURES_OK stuck');
  setupMsix(m);
  const q0 = setupQueue(m, 0, 16, 1);
  setupQueue(m, 1, 8, 2);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_NUMQ, 2), 2);
  // Notifications bound where the notify capability says: one ioeventfd per queue, 16-bit writes.
  assert.equal(m.notify.bindings.get(0), { address: BARS.modern + 0x3000, length: 2 });
  assert.equal(m.notify.bindings.get(1), { address: BARS.modern + 0x3004, length: 2 });
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER_OK);
  assert.is(m.status(), 0x0f);
  m.runIo(); // the I/O thread wakes for the activation
  assert.is(m.io.backend.activations, 1, 'activated in the I/O thread');
  assert.is(m.vcpu.backend.activations, 0, 'never in the vCPU thread');

  const chain = q0.add([{ data: text('hello, virtio') }, { length: 64, write: true }]);
  m.kick(0);
  assert.equal(m.msi.fired, [], 'nothing before the I/O thread runs');
  m.runIo();
  assert.equal(q0.takeUsed(), [{ id: chain.head, len: 13 }]);
  assert.is(str(m, chain.buffers[1].gpa, 13), 'HELLO, VIRTIO', 'the negotiated device feature took effect');
  assert.equal(m.msi.fired, [1], 'queue 0 → its MSI-X vector');
  assert.equal(m.msi.routes.get(1), { address: 0xfee0_0000n, data: 0x31 });
  assert.is(features & (1n << VIRTIO_F_VERSION_1), 1n << VIRTIO_F_VERSION_1);
  // Device config through BAR 4.
  assert.is(m.read(V.VIRTIO_PCI_DEVICE_OFFSET, 4), 1, 'echoed one chain');
  m.write(V.VIRTIO_PCI_DEVICE_OFFSET + 4, 4, 0xabcd);
  assert.is(m.read(V.VIRTIO_PCI_DEVICE_OFFSET + 4, 2), 0xabcd);
  assert.is(m.read(V.VIRTIO_PCI_DEVICE_OFFSET + 8, 4), 0, 'past the device config: 0');
  assert.is(m.irqs.level(19), false, 'no INTx with MSI-X');
  assert.equal(m.memory.violations, []);
});

test('virtio-pci: without MSI-X the interrupt is INTx with ISR bit 0; reading the ISR clears it and lowers the line', () => {
  const m = new Machine();
  negotiate(m);
  const q0 = setupQueue(m, 0, 8, null);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_MSIX, 2), V.VIRTIO_MSI_NO_VECTOR);
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER_OK);
  m.runIo();
  q0.add([{ data: text('x') }, { length: 4, write: true }]);
  m.kick(0);
  m.runIo();
  const gsi = 16 + ((SLOT + 0) % 8);
  assert.is(m.irqs.level(gsi), true, 'INTA# of slot 3 → GSI 19');
  assert.ok(m.cfgRead(P.PCI_STATUS, 2) & P.PCI_STATUS_INTERRUPT);
  assert.is(m.read(V.VIRTIO_PCI_ISR_OFFSET, 1), V.VIRTIO_PCI_ISR_QUEUE);
  assert.is(m.irqs.level(gsi), false);
  assert.is(m.read(V.VIRTIO_PCI_ISR_OFFSET, 1), 0, 'read-to-clear');
  assert.equal(m.msi.fired, []);
});

test('virtio-pci: a notification that exits (no ioeventfd bound) still reaches the back end through the eventfd', () => {
  const m = new Machine();
  const q0 = startWithOneQueue(m);
  m.notify.bindings.clear(); // as if KVM had refused the binding
  const c = q0.add([{ data: text('ab') }, { length: 2, write: true }]);
  m.kick(0);
  m.runIo();
  assert.equal(q0.takeUsed(), [{ id: c.head, len: 2 }]);
  m.write(V.VIRTIO_PCI_NOTIFY_OFFSET + 2, 2, 0); // not a queue's address
  m.write(V.VIRTIO_PCI_NOTIFY_OFFSET + 4 * 7, 2, 7); // no queue 7
  assert.equal(m.notify.take(), []);
});

test('virtio-pci: FEATURES_OK does not stick without VERSION_1 or with features never offered', () => {
  const m = new Machine();
  negotiate(m, 1n << VIRTIO_F_RING_EVENT_IDX);
  assert.is(m.status() & V.VIRTIO_CONFIG_S_FEATURES_OK, 0, 'a legacy-only driver is refused');
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  m.addStatus(V.VIRTIO_CONFIG_S_ACKNOWLEDGE | V.VIRTIO_CONFIG_S_DRIVER);
  m.setCommon(V.VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
  m.setCommon(V.VIRTIO_PCI_COMMON_GF, 4, 1 | 0x8000_0000); // VERSION_1 and bit 63
  m.addStatus(V.VIRTIO_CONFIG_S_FEATURES_OK);
  assert.is(m.status() & V.VIRTIO_CONFIG_S_FEATURES_OK, 0);
  // DRIVER_OK without FEATURES_OK: the device needs a reset.
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER_OK);
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.ok(m.log.some((l) => /DRIVER_OK without FEATURES_OK/.test(l)));
  // Words past the second feature word read 0 and ignore writes.
  m.setCommon(V.VIRTIO_PCI_COMMON_DFSELECT, 4, 7);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_DF, 4), 0);
});

test('virtio-pci: a queue size that is not a power of two, or rings outside RAM, set DEVICE_NEEDS_RESET — never a crash', () => {
  const m = new Machine();
  negotiate(m);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SIZE, 2, 12);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x20000);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_AVAILLO, 4, 0x21000);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_USEDLO, 4, 0x22000);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0, 'not enabled');
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.ok(m.log.some((l) => /size 12 is not a power of two/.test(l)));

  // Reset clears it; then a used ring beyond RAM (and a descriptor table at 2^52) is refused the same way.
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  assert.is(m.status(), 0);
  negotiate(m);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0x10_0000);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.ok(m.log.some((l) => /descriptor table at 0x10000000000000 .* outside guest RAM/.test(l)));
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  negotiate(m);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x20000);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_AVAILLO, 4, 0x21001); // misaligned
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_USEDLO, 4, (4 << 20) - 8);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  m.addStatus(V.VIRTIO_CONFIG_S_DRIVER_OK);
  m.runIo();
  assert.is(m.io.backend.activations, 0, 'a device that needs a reset is never activated');
  assert.equal(m.memory.violations, [], 'nothing outside RAM was touched');
});

test('virtio-pci: a malformed chain fails the device (NEEDS_RESET + config interrupt); a reset brings it back', () => {
  const m = new Machine();
  const q0 = startWithOneQueue(m);
  q0.add([{ gpa: (4 << 20) - 2, length: 64 }]); // a buffer running off the end of RAM
  m.kick(0);
  m.runIo();
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.equal(m.msi.fired, [0], 'the config vector tells the driver');
  const generation = m.common(V.VIRTIO_PCI_COMMON_CFGGENERATION, 1);
  assert.ok(generation > 0);
  // The driver cannot clear NEEDS_RESET by writing status; kicks are ignored meanwhile.
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0x0f);
  assert.ok(m.status() & V.VIRTIO_CONFIG_S_NEEDS_RESET);
  m.kick(0);
  m.runIo();
  // Reset and start again.
  m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  assert.is(m.status(), 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0, 'queues disabled by the reset');
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_SIZE, 2), 16, 'size back to the maximum');
  assert.is(m.common(V.VIRTIO_PCI_COMMON_MSIX, 2), V.VIRTIO_MSI_NO_VECTOR);
  const again = startWithOneQueue(m);
  const c = again.add([{ data: text('ok') }, { length: 2, write: true }]);
  m.kick(0);
  m.runIo();
  assert.equal(again.takeUsed(), [{ id: c.head, len: 2 }]);
  assert.is(m.io.backend.activations, 2);
  assert.equal(m.memory.violations, []);
});

test("virtio-pci: a request's host I/O runs with the machine lock released; one whose device is reset meanwhile is dropped", () => {
  const m = new Machine();
  const q0 = startWithOneQueue(m);
  let heldDuringIo: boolean | null = null;
  m.io.backend.duringIo = () => {
    heldDuringIo = m.ioLock.held;
  };
  m.ioLock.events.length = 0;
  const a = q0.add([{ data: text('one') }, { length: 3, write: true }]);
  m.kick(0);
  m.runIo();
  assert.is(heldDuringIo, false, 'the lock was released around the I/O');
  assert.equal(m.ioLock.events, ['unlock', 'lock']);
  assert.equal(q0.takeUsed(), [{ id: a.head, len: 3 }]);

  // A vCPU resets the device while the request's I/O runs: the request is not pushed, nothing breaks.
  m.io.backend.duringIo = () => m.setCommon(V.VIRTIO_PCI_COMMON_STATUS, 1, 0);
  q0.add([{ data: text('two') }, { length: 3, write: true }]);
  m.kick(0);
  m.runIo();
  assert.equal(q0.takeUsed(), [], 'the abandoned request was not completed');
  assert.is(m.status(), 0);
  assert.equal(m.log, []);
  // The driver starts over and the device works.
  m.io.backend.duringIo = null;
  const again = startWithOneQueue(m);
  const c = again.add([{ data: text('ok') }, { length: 2, write: true }]);
  m.kick(0);
  m.runIo();
  assert.equal(again.takeUsed(), [{ id: c.head, len: 2 }]);
  assert.equal(m.memory.violations, []);
});

test('virtio-pci: odd widths and offsets in the common config are merged per register; out-of-range selects read 0', () => {
  const m = new Machine();
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 1, 1); // a byte write to a u16 register
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_SIZE, 2), 8);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_SELECT, 4), (8 << 16) | 1, 'a dword read spans select and size');
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SELECT, 2, 9);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_SIZE, 2), 0, 'no queue 9');
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_SIZE, 2, 4);
  m.setCommon(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_Q_MSIX, 2), V.VIRTIO_MSI_NO_VECTOR);
  m.setCommon(V.VIRTIO_PCI_COMMON_MSIX, 2, 77); // beyond the table: NO_VECTOR reads back
  assert.is(m.common(V.VIRTIO_PCI_COMMON_MSIX, 2), V.VIRTIO_MSI_NO_VECTOR);
  assert.is(m.common(0x38, 4), 0, 'past the structure');
  assert.is(m.read(0x0ffc, 4), 0);
  m.setCommon(V.VIRTIO_PCI_COMMON_NUMQ, 2, 5); // read-only
  assert.is(m.common(V.VIRTIO_PCI_COMMON_NUMQ, 2), 2);
  m.write(V.VIRTIO_PCI_ISR_OFFSET, 1, 0xff); // read-only
  assert.is(m.read(V.VIRTIO_PCI_ISR_OFFSET, 1), 0);
  m.write(V.VIRTIO_PCI_DEVICE_OFFSET + 6, 4, 1); // runs past the device config: ignored
  assert.is(m.status(), 0);
});

test('virtio-pci: with ioeventfd=off no notification is bound; every kick exits to the notify region and still arrives', () => {
  const m = new Machine({ ioeventfd: false });
  const q0 = startWithOneQueue(m);
  assert.is(m.notify.bindings.size, 0, 'nothing bound in the kernel');
  const a = q0.add([{ data: text('hi') }, { length: 2, write: true }]);
  m.kick(0); // no binding: the write goes to the BAR handler, which signals the eventfd
  m.runIo();
  assert.equal(q0.takeUsed(), [{ id: a.head, len: 2 }]);
});

test('virtio-pci: moving BAR 4 moves the notification ioeventfds; disabling memory decoding unbinds them', () => {
  const m = new Machine();
  m.cfgWrite(P.PCI_BASE_ADDRESS_0 + 16, 4, 0xc800_0000 | 0xc);
  assert.equal(m.notify.bindings.get(1), { address: 0xc800_3004, length: 2 });
  m.bar4 = 0xc800_0000;
  assert.is(m.common(V.VIRTIO_PCI_COMMON_NUMQ, 2), 2, 'the registers follow');
  m.cfgWrite(P.PCI_COMMAND, 2, 0);
  assert.is(m.notify.bindings.size, 0);
  assert.is(m.common(V.VIRTIO_PCI_COMMON_NUMQ, 4), 0xffffffff, 'nothing decodes');
});

test('virtio-pci: a checkpoint restored into a new process resumes a running device where it was', () => {
  const m = new Machine();
  const q0 = startWithOneQueue(m);
  const first = q0.add([{ data: text('one') }, { length: 3, write: true }]);
  m.kick(0);
  m.runIo();
  assert.equal(q0.takeUsed(), [{ id: first.head, len: 3 }]);
  // The guest queues a chain and kicks, but the checkpoint happens before the I/O thread runs: the kick is lost.
  q0.setUsedEvent(1); // EVENT_IDX: interrupt me once the used index passes 1
  const pending = q0.add([{ data: text('two') }, { length: 3, write: true }]);
  m.kick(0);

  // "New process": records copied, RAM shared (as CPR maps the same memory), fresh threads, fresh KVM plumbing.
  const record = newRecord(V.virtioPciState);
  recordBytes(record).set(recordBytes(m.record));
  const echo = newRecord(echoState);
  recordBytes(echo).set(recordBytes(m.echo));
  const restored = new Machine({ record, echo, memory: m.memory, reset: false });
  restored.vcpu.host.restored();
  restored.vcpu.transport.restored();
  assert.equal(
    restored.notify.bindings.get(0),
    { address: BARS.modern + 0x3000, length: 2 },
    'ioeventfds re-registered',
  );
  assert.equal(restored.msi.routes.get(1), { address: 0xfee0_0000n, data: 0x31 }, 'MSI routes re-programmed');
  restored.runIo();
  assert.equal(q0.takeUsed(), [{ id: pending.head, len: 3 }], 'the lost kick is made up for on activation');
  assert.equal(restored.msi.fired, [1]);
  assert.is(str(m, pending.buffers[1].gpa, 3), 'TWO');
  assert.is(restored.status(), 0x0f);
  assert.is(restored.io.backend.activations, 1);
});

test.run();
