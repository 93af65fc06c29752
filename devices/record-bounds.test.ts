// Every device record that holds an index, a count or a head is checked when a checkpoint is loaded, before the
// device changes: a record whose ring head lies past its ring is refused with the field named, and the device keeps
// the state it had (so a restore that refuses a file leaves the VM as it was).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeRecord, prepareDecode } from '../cpr/vmstate/stream.js';
import { newRecord, VmstateError, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import { serialState, FIFO_SIZE } from './serial.js';
import { i8042State } from './i8042.js';
import { rtcState } from './rtc.js';
import { virtqueueStateDescriptor } from './virtio/queue.js';
import { virtioPciState, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_MAX_VECTORS } from './virtio/pci-transport.js';

/** A record of `descriptor` changed by `spoil`, encoded as a checkpoint would carry it. */
function streamOf<D extends Descriptor>(descriptor: D, spoil: (s: StateOf<D>) => void): Uint8Array {
  const record = newRecord(descriptor, false);
  spoil(record);
  return encodeRecord(descriptor, record);
}

/** Loading the spoiled record is refused naming `field`, and the live record is left exactly as it was. */
function refused<D extends Descriptor>(descriptor: D, spoil: (s: StateOf<D>) => void, message: RegExp): void {
  const live = newRecord(descriptor, false) as StateOf<D> & { $buffer: ArrayBuffer };
  const before = new Uint8Array(live.$buffer).slice();
  const bytes = streamOf(descriptor, spoil);
  assert.throws(
    () => prepareDecode(descriptor, bytes, descriptor.version, live),
    (e: Error) => e instanceof VmstateError && message.test(e.message) && !e.message.includes('\n'),
    `${descriptor.name}: expected a refusal matching ${message}`,
  );
  assert.equal(new Uint8Array(live.$buffer), before, `${descriptor.name}: the live record is unchanged`);
}

function accepted<D extends Descriptor>(descriptor: D, set: (s: StateOf<D>) => void): void {
  const live = newRecord(descriptor, false);
  prepareDecode(descriptor, streamOf(descriptor, set), descriptor.version, live)();
}

test('serial: an RX FIFO head or count beyond the 16-byte FIFO is refused', () => {
  refused(
    serialState,
    (s) => (s.rxHead = FIFO_SIZE),
    /^vmstate serial-16550a: field 'rxHead' is 16, beyond 15 \(the FIFO holds 16 bytes\)$/,
  );
  refused(serialState, (s) => (s.rxCount = 17), /field 'rxCount' is 17, beyond 16/);
  accepted(serialState, (s) => {
    s.rxHead = 15;
    s.rxCount = 16;
  });
});

test('i8042: keyboard and mouse ring heads, counts and pending replies are bounded by their rings', () => {
  refused(i8042State, (s) => (s.kbdHead = 32), /field 'kbdHead' is 32, beyond 31/);
  refused(i8042State, (s) => (s.kbdCount = 200), /field 'kbdCount' is 200, beyond 32/);
  refused(
    i8042State,
    (s) => {
      s.kbdCount = 2;
      s.kbdReplies = 3;
    },
    /field 'kbdReplies' is 3, beyond 2 \(replies are bytes in the keyboard ring\)/,
  );
  refused(i8042State, (s) => (s.auxHead = 16), /field 'auxHead' is 16, beyond 15/);
  refused(i8042State, (s) => (s.auxCount = 17), /field 'auxCount' is 17, beyond 16/);
  accepted(i8042State, (s) => {
    s.kbdHead = 31;
    s.kbdCount = 32;
    s.kbdReplies = 32;
  });
});

test('rtc: a CMOS index past the 128 bytes is refused', () => {
  refused(rtcState, (s) => (s.index = 0x80), /^vmstate mc146818rtc: field 'index' is 128, beyond 127/);
  accepted(rtcState, (s) => (s.index = 0x7f));
});

test('virtqueue: an enabled queue needs a power-of-two size and no more chains in flight than the ring holds', () => {
  const enabled =
    (size: number, lastAvailIdx: number, usedIdx: number) => (s: StateOf<typeof virtqueueStateDescriptor>) => {
      s.ready = true;
      s.size = size;
      s.lastAvailIdx = lastAvailIdx;
      s.usedIdx = usedIdx;
    };
  refused(
    virtqueueStateDescriptor,
    enabled(100, 0, 0),
    /field 'size' is 100: an enabled queue's is a power of two ≤ 32768/,
  );
  refused(virtqueueStateDescriptor, enabled(0, 0, 0), /field 'size' is 0/);
  refused(virtqueueStateDescriptor, enabled(256, 300, 10), /field 'lastAvailIdx - usedIdx' is 290, beyond 256/);
  accepted(virtqueueStateDescriptor, enabled(256, 5, 0xfffb)); // 10 in flight across the u16 wrap
  accepted(virtqueueStateDescriptor, (s) => (s.size = 100)); // not enabled: the driver may be half-way through
});

test('virtio-pci: the transport refuses a queue inside it that breaks the queue rules, naming where', () => {
  refused(
    virtioPciState,
    (s) => {
      s.queues[3].ready = true;
      s.queues[3].size = 3;
    },
    /^vmstate virtio-pci at queues\.3: field 'size' is 3/,
  );
});

test('virtio-pci: MSI-X vectors are NO_VECTOR or within the MSI-X table', () => {
  refused(
    virtioPciState,
    (s) => (s.configMsixVector = VIRTIO_PCI_MAX_VECTORS),
    /field 'configMsixVector' is 33, beyond 32/,
  );
  refused(virtioPciState, (s) => (s.queueMsixVectors[5] = 1000), /field 'queueMsixVectors\[5\]' is 1000/);
  accepted(virtioPciState, (s) => {
    s.configMsixVector = VIRTIO_MSI_NO_VECTOR;
    s.queueMsixVectors.fill(VIRTIO_MSI_NO_VECTOR);
    s.queueMsixVectors[0] = VIRTIO_PCI_MAX_VECTORS - 1;
  });
});

test.run();
