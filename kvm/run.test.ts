// KvmRun over a plain buffer laid out like the kernel's kvm_run area: the getters read the right offsets, the data
// accessors stay inside the mapping whatever the page claims, and release() leaves nothing to touch.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KvmRun, exitReasonName } from './run.js';
import { offsetOf } from './bindings/structs.js';
import * as K from './bindings/constants.js';

const MAP = 3 * 4096;
const PIO = 4096; // KVM_PIO_PAGE_OFFSET * page size: where KVM puts the port I/O data

function page(): { run: KvmRun; d: DataView; b: Uint8Array } {
  const buffer = new ArrayBuffer(MAP);
  return { run: new KvmRun(buffer), d: new DataView(buffer), b: new Uint8Array(buffer) };
}

const at = (path: string) => offsetOf('kvm_run', path);

function ioExit(d: DataView, direction: number, size: number, port: number, count: number, dataOffset = PIO): void {
  d.setUint32(at('exit_reason'), K.KVM_EXIT_IO, true);
  d.setUint8(at('io.direction'), direction);
  d.setUint8(at('io.size'), size);
  d.setUint16(at('io.port'), port, true);
  d.setUint32(at('io.count'), count, true);
  d.setBigUint64(at('io.data_offset'), BigInt(dataOffset), true);
}

test('run: the exit reason sits at offset 8 and the io union at 32, as measured on the host', () => {
  assert.is(at('exit_reason'), 8);
  assert.is(at('io.direction'), 32);
  assert.is(at('io.data_offset'), 40);
});

test('run: an OUT exit reads port, size, count and the value from the data page', () => {
  const { run, d } = page();
  ioExit(d, K.KVM_EXIT_IO_OUT, 2, 0x1f0, 1);
  d.setUint16(PIO, 0xbeef, true);
  assert.is(run.exitReason, K.KVM_EXIT_IO);
  assert.is(run.io.direction, K.KVM_EXIT_IO_OUT);
  assert.is(run.io.port, 0x1f0);
  assert.is(run.io.size, 2);
  assert.is(run.io.count, 1);
  assert.is(run.io.dataOffset, PIO);
  assert.is(run.io.value, 0xbeef);
  assert.equal(run.decode(), {
    reason: 'io',
    direction: 'out',
    size: 2,
    port: 0x1f0,
    count: 1,
    data: new Uint8Array([0xef, 0xbe]),
  });
});

test('run: an IN exit stores each element of a string input at its place, truncated to the access size', () => {
  const { run, d, b } = page();
  ioExit(d, K.KVM_EXIT_IO_IN, 2, 0x60, 3);
  run.io.setValueAt(0, 0x1111);
  run.io.setValueAt(2, 0x12345);
  assert.equal(Array.from(b.subarray(PIO, PIO + 6)), [0x11, 0x11, 0, 0, 0x45, 0x23]);
  assert.is(run.io.data.byteLength, 6);
});

test('run: I/O data outside the mapping, odd sizes and out-of-range elements are refused', () => {
  const { run, d } = page();
  ioExit(d, K.KVM_EXIT_IO_OUT, 4, 0x80, 2, MAP - 4);
  assert.throws(() => run.io.data, RangeError);
  assert.throws(() => run.io.valueAt(1), RangeError);
  assert.is(run.io.valueAt(0), 0);
  ioExit(d, K.KVM_EXIT_IO_OUT, 4, 0x80, 1, 2 ** 40);
  assert.throws(() => run.io.value, RangeError);
  ioExit(d, K.KVM_EXIT_IO_OUT, 3, 0x80, 1);
  assert.throws(() => run.io.value, /io.size 3/);
  ioExit(d, K.KVM_EXIT_IO_OUT, 1, 0x80, 1);
  assert.throws(() => run.io.valueAt(1), /outside count/);
});

test('run: an MMIO exit gives address, length, direction and a little-endian value in the page', () => {
  const { run, d, b } = page();
  d.setUint32(at('exit_reason'), K.KVM_EXIT_MMIO, true);
  d.setBigUint64(at('mmio.phys_addr'), 0xfee000b0n, true);
  d.setUint32(at('mmio.len'), 4, true);
  d.setUint8(at('mmio.is_write'), 1);
  d.setUint32(at('mmio.data'), 0x11223344, true);
  assert.is(run.mmio.physAddr, 0xfee000b0n);
  assert.is(run.mmio.len, 4);
  assert.ok(run.mmio.isWrite);
  assert.is(run.mmio.value, 0x11223344n);
  d.setUint8(at('mmio.is_write'), 0);
  d.setUint32(at('mmio.len'), 8, true);
  run.mmio.value = 0x0102030405060708n;
  assert.equal(Array.from(b.subarray(at('mmio.data'), at('mmio.data') + 8)), [8, 7, 6, 5, 4, 3, 2, 1]);
  d.setUint32(at('mmio.len'), 9, true);
  assert.throws(() => run.mmio.value, RangeError);
});

test('run: internal errors, failed entries and system events decode with their data', () => {
  const { run, d } = page();
  d.setUint32(at('exit_reason'), K.KVM_EXIT_INTERNAL_ERROR, true);
  d.setUint32(at('internal.suberror'), K.KVM_INTERNAL_ERROR_EMULATION, true);
  d.setUint32(at('internal.ndata'), 2, true);
  d.setBigUint64(at('internal.data'), 0xan, true);
  d.setBigUint64(at('internal.data') + 8, 0xbn, true);
  assert.equal(run.decode(), { reason: 'internal-error', suberror: 1, data: [0xan, 0xbn] });
  assert.is(run.describe(), 'internal error, suberror 1 data [0xa, 0xb]');
  d.setUint32(at('internal.ndata'), 1000, true);
  assert.is(run.internal.ndata, 16, 'ndata is clamped to the array');

  d.setUint32(at('exit_reason'), K.KVM_EXIT_FAIL_ENTRY, true);
  d.setBigUint64(at('fail_entry.hardware_entry_failure_reason'), 0x21n, true);
  d.setUint32(at('fail_entry.cpu'), 1, true);
  assert.equal(run.decode(), { reason: 'fail-entry', hardwareEntryFailureReason: 0x21n, cpu: 1 });

  d.setUint32(at('exit_reason'), K.KVM_EXIT_SYSTEM_EVENT, true);
  d.setUint32(at('system_event.type'), K.KVM_SYSTEM_EVENT_RESET, true);
  d.setUint32(at('system_event.ndata'), 0, true);
  d.setBigUint64(at('system_event.data'), 5n, true); // pre-KVM_CAP_SYSTEM_EVENT_DATA kernels: flags in data[0]
  assert.equal(run.decode(), { reason: 'system-event', type: K.KVM_SYSTEM_EVENT_RESET, data: [5n] });

  d.setUint32(at('exit_reason'), K.KVM_EXIT_SHUTDOWN, true);
  assert.equal(run.decode(), { reason: 'shutdown' });
  d.setUint32(at('exit_reason'), 99, true);
  assert.equal(run.decode(), { reason: 'other', exitReason: 99 });
  assert.is(exitReasonName(K.KVM_EXIT_INTERNAL_ERROR), 'internal-error');
  assert.is(exitReasonName(99), 'exit-99');
});

test('run: immediate_exit and request_interrupt_window write the input bytes of the page', () => {
  const { run, b } = page();
  run.immediateExit = 1;
  assert.is(b[at('immediate_exit')], 1);
  run.immediateExit = 0;
  assert.is(run.immediateExit, 0);
  run.requestInterruptWindow = 1;
  assert.is(b[at('request_interrupt_window')], 1);
});

test('run: after release every accessor throws instead of reading the old mapping', () => {
  const { run } = page();
  run.release();
  assert.ok(run.released);
  assert.throws(() => run.exitReason, RangeError);
  assert.throws(() => {
    run.immediateExit = 1;
  }, RangeError);
  assert.throws(() => run.io.value, RangeError);
  assert.throws(() => run.mmio.physAddr, RangeError);
  assert.is(run.mmio.data.byteLength, 0);
});

test.run();
